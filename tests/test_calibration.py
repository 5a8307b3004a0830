"""Tests of keras_ls.calibration against independent float64 loop references and peers."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ls_reference import run_python

from keras_ls.calibration import (
    bin_edges,
    brier_score,
    calibration_bins,
    classwise_calibration_error,
    ece_from_bins,
    expected_calibration_error,
    fit_temperature,
    maximum_calibration_error,
    mce_from_bins,
    nll,
    reliability_diagram,
)

# --------------------------------------------------------------------------
# Plain-loop references (written from the definitions, not from the module)
# --------------------------------------------------------------------------


def ref_bins(conf, hits, num_bins, weights=None):
    """Per-bin [count, conf sum, hit sum] with bins (j/M, (j+1)/M], 0 in bin 0; pure Python."""
    weights = [1.0] * len(conf) if weights is None else [float(w) for w in weights]
    bins = [[0.0, 0.0, 0.0] for _ in range(num_bins)]
    for c, h, w in zip(conf, hits, weights):
        c = float(c)
        b = 0
        for j in range(num_bins):
            if j / num_bins < c <= (j + 1) / num_bins:
                b = j
        bins[b][0] += w
        bins[b][1] += w * c
        bins[b][2] += w * float(h)
    return bins


def ref_ece_mce(conf, hits, num_bins, weights=None):
    """(ECE, MCE) of Guo et al. 2017 from the loop bins."""
    bins = ref_bins(conf, hits, num_bins, weights)
    total = sum(b[0] for b in bins)
    ece = sum(b[0] / total * abs(b[2] / b[0] - b[1] / b[0]) for b in bins if b[0] > 0)
    mce = max(abs(b[2] / b[0] - b[1] / b[0]) for b in bins if b[0] > 0)
    return ece, mce


def ref_top_label(labels, probs):
    """Top-label confidences and hits (first maximum wins ties); pure Python."""
    conf, hits = [], []
    for y, row in zip(labels, probs):
        row = [float(v) for v in row]
        conf.append(max(row))
        hits.append(float(row.index(max(row)) == int(y)))
    return conf, hits


def ref_ece(labels, probs, num_bins, weights=None):
    """Top-label ECE (Guo et al. 2017)."""
    return ref_ece_mce(*ref_top_label(labels, probs), num_bins, weights)[0]


def random_probs(rng, n, k, sharpness=3.0):
    z = rng.normal(size=(n, k)) * sharpness
    p = np.exp(z - z.max(1, keepdims=True))
    return z, p / p.sum(1, keepdims=True)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    logits, probs = random_probs(rng, 500, 6)
    labels = rng.integers(0, 6, size=500)
    return labels, logits, probs


# --------------------------------------------------------------------------
# ECE
# --------------------------------------------------------------------------


@pytest.mark.parametrize("num_bins", [1, 2, 10, 15, 37])
def test_ece_matches_loop_reference(data, num_bins):
    labels, _, probs = data
    got = expected_calibration_error(labels, probs, num_bins=num_bins)
    assert got == pytest.approx(ref_ece(labels, probs, num_bins), abs=1e-12)


def test_ece_hand_computed():
    # 0.9 -> bin (0.8, 0.9], correct; 0.8 -> bin (0.7, 0.8], wrong.
    assert expected_calibration_error([0, 1], [[0.9, 0.1], [0.8, 0.2]], 10) == pytest.approx(0.45)
    # A single bin: |mean acc - mean conf| = |0.5 - 0.85|.
    assert expected_calibration_error([0, 1], [[0.9, 0.1], [0.8, 0.2]], 1) == pytest.approx(0.35)
    # Perfectly calibrated: conf 0.5, half right, same bin.
    assert expected_calibration_error([0, 1], [[0.5, 0.5], [0.5, 0.5]], 10) == pytest.approx(0.0)


def test_label_formats_agree(data):
    labels, _, probs = data
    onehot = np.eye(6)[labels]
    soft = 0.9 * onehot + 0.1 / 6  # argmax unchanged
    want = expected_calibration_error(labels, probs)
    assert expected_calibration_error(labels[:, None], probs) == want
    assert expected_calibration_error(onehot, probs) == want
    assert expected_calibration_error(soft, probs) == want
    assert expected_calibration_error(labels.astype(np.float32), probs) == want


def test_from_logits_equals_softmax(data):
    labels, logits, probs = data
    got = expected_calibration_error(labels, logits, from_logits=True)
    assert got == pytest.approx(ref_ece(labels, probs, 15), abs=1e-12)
    # Stable softmax: huge logits do not overflow.
    big = np.array([[1000.0, 0.0], [0.0, 1000.0]])
    assert expected_calibration_error([0, 0], big, from_logits=True) == pytest.approx(0.5)


def test_sample_weight_equals_repetition(data):
    labels, _, probs = data
    w = np.random.default_rng(1).integers(0, 4, size=len(labels))
    rep = np.repeat(np.arange(len(labels)), w)
    got = expected_calibration_error(labels, probs, sample_weight=w)
    assert got == pytest.approx(ref_ece(labels[rep], probs[rep], 15), abs=1e-12)
    assert got == pytest.approx(ref_ece(labels, probs, 15, weights=w), abs=1e-12)


def test_bin_edges_rule():
    np.testing.assert_array_equal(bin_edges(5), [0.2, 0.4, 0.6, 0.8])
    assert bin_edges(1).shape == (0,)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_boundary_values(dtype):
    # M = 5: 0 -> bin 0, 0.2 -> bin 0 (right-closed), just above 0.2 -> bin 1,
    # 0.4 -> bin 1, 1.0 -> bin 4. Sigmoid output: p itself is binned.
    above = float(np.nextafter(dtype(0.2), dtype(1)))
    conf = np.array([0.0, 0.2, above, 0.4, 0.6, 0.8, 1.0], dtype=dtype)
    bins = calibration_bins(np.zeros(len(conf), int), conf, num_bins=5)
    np.testing.assert_array_equal(bins.counts, [2, 2, 1, 1, 1])
    np.testing.assert_allclose(
        bins.confidence_sums, [0.2, above + 0.4, 0.6, 0.8, 1.0], rtol=1e-6
    )
    # Softmax output: the top-label confidence on the edges 0.2 (five-way tie,
    # class 0 predicted) and 0.4 land in the bins below them.
    probs = np.array([[0.2] * 5, [0.4, 0.15, 0.15, 0.15, 0.15]], dtype=dtype)
    bins = calibration_bins([0, 1], probs, num_bins=5)
    np.testing.assert_array_equal(bins.counts, [1, 1, 0, 0, 0])
    np.testing.assert_array_equal(bins.correct_sums, [1, 0, 0, 0, 0])


def edge_neighbours(num_bins, dtype, ulps=3):
    """Every edge i/M in ``dtype`` and its neighbours up to ``ulps`` ulps away, in [0, 1]."""
    edges = (np.arange(num_bins + 1) / num_bins).astype(dtype)
    values = [edges]
    for direction in (0.0, 2.0):
        v = edges
        for _ in range(ulps):
            v = np.nextafter(v, dtype(direction))
            values.append(v)
    out = np.concatenate(values)
    return out[(out >= 0) & (out <= 1)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_uniform_bin_index_is_the_edge_rule(dtype):
    """The O(1) bin index equals ``number of edges (in dtype) strictly below c``."""
    for num_bins in [*range(1, 60), 97, 100, 128, 1000, 4096]:
        conf = edge_neighbours(num_bins, dtype)
        want = np.searchsorted(bin_edges(num_bins).astype(dtype), conf, side="left")
        got = calibration_bins(np.zeros(len(conf), int), conf, num_bins).counts
        np.testing.assert_array_equal(got, np.bincount(want, minlength=num_bins), num_bins)


def test_bins_sum_up(data):
    labels, _, probs = data
    b = calibration_bins(labels, probs, num_bins=7)
    assert b.counts.sum() == len(labels)
    assert b.confidence_sums.sum() == pytest.approx(probs.max(1).sum())
    assert b.correct_sums.sum() == (probs.argmax(1) == labels).sum()
    filled = b.counts > 0
    assert np.all(b.confidence[filled] > (np.flatnonzero(filled)) / 7)
    assert np.all(b.confidence[filled] <= (np.flatnonzero(filled) + 1) / 7)
    assert np.isnan(b.accuracy[~filled]).all()


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 60),
    k=st.integers(2, 5),  # one column is a sigmoid output (tested below)
    num_bins=st.integers(1, 20),
    cuts=st.lists(st.integers(0, 60), max_size=5),
)
def test_streaming_bins_invariant(seed, n, k, num_bins, cuts):
    """Summing the bins of any split equals the bins of the whole; ECE in [0, 1]."""
    rng = np.random.default_rng(seed)
    _, probs = random_probs(rng, n, k)
    labels = rng.integers(0, k, size=n)
    whole = calibration_bins(labels, probs, num_bins)
    parts = np.split(np.arange(n), sorted(c % (n + 1) for c in cuts))
    acc = [np.zeros(num_bins) for _ in range(3)]
    for idx in parts:
        part = calibration_bins(labels[idx], probs[idx], num_bins)
        acc = [a + p for a, p in zip(acc, part)]
    for a, w in zip(acc, whole):
        np.testing.assert_allclose(a, w, atol=1e-12)
    ece = expected_calibration_error(labels, probs, num_bins)
    assert 0.0 <= ece <= 1.0
    assert ece == pytest.approx(ref_ece(labels, probs, num_bins), abs=1e-12)


def test_empty_input_is_zero():
    assert expected_calibration_error(np.zeros(0, int), np.zeros((0, 3))) == 0.0


@pytest.mark.parametrize(
    "kwargs, exc, pattern",
    [
        (dict(num_bins=0), ValueError, r"`num_bins`.*>= 1.*received 0"),
        (dict(num_bins=2.5), TypeError, r"`num_bins`.*integer.*float"),
        (dict(num_bins=True), TypeError, r"`num_bins`"),
        (dict(y_true=[0, 1]), ValueError, r"same number of samples.*2 and 3"),
        (dict(y_prob=np.zeros((3, 2, 2))), ValueError, r"`y_prob` must have shape.*\(3, 2, 2\)"),
        (dict(y_prob=[[0.6, 0.6], [0.3, 0.7], [0.5, 0.5]]), ValueError,
         r"row 0 sums to 1\.2.*multi_label=True"),
        (dict(y_prob=[0.2, 0.3, 1.5]), ValueError, r"`y_prob`.*\[0, 1\]"),
        (dict(y_prob=[0.2, 0.3, 0.5], y_true=[0, 2, 1]), ValueError, r"0/1 labels.*received 2"),
        (dict(y_prob=[0.2, 0.3, 0.5], y_true=[[0, 1]] * 3), ValueError,
         r"binary output must have shape \(N,\) or \(N, 1\).*\(3, 2\)"),
        (dict(multi_label=True, y_true=[0, 1, 0]), ValueError,
         r"multi-label output must have shape \(N, 2\)"),
        (dict(multi_label="yes"), TypeError, r"`multi_label` must be a bool"),
        (dict(binning="equal"), ValueError, r"`binning` must be one of.*'equal'"),
        (dict(sample_weight=[1.0, -1.0, 1.0]), ValueError, r"`sample_weight`.*non-negative"),
        (dict(y_prob=[[1.2, -0.2]] * 3), ValueError, r"`y_prob`.*\[0, 1\].*from_logits"),
        (dict(y_prob=[[np.nan, 1.0]] * 3), ValueError, r"`y_prob` contains NaN"),
        (dict(y_true=[0, 1, 2]), ValueError, r"`y_true` labels.*\[0, 2\).*\[0, 2\]"),
        (dict(y_true=[0, -1, 1]), ValueError, r"`y_true` labels"),
        (dict(y_true=[0.5, 1, 0]), ValueError, r"`y_true`.*integers"),
        (dict(y_true=[0, np.nan, 1]), ValueError, r"`y_true` contains NaN"),
        (dict(y_true=np.zeros((3, 3))), ValueError, r"`y_true` must have shape.*\(N, 2\)"),
        (dict(from_logits="yes"), TypeError, r"`from_logits` must be a bool"),
        (dict(y_prob=[["a", "b"]] * 3), TypeError, r"`y_prob` must be a numeric"),
    ],
)
def test_bad_input(kwargs, exc, pattern):
    args = dict(y_true=[0, 1, 0], y_prob=[[0.6, 0.4], [0.3, 0.7], [0.5, 0.5]])
    args.update(kwargs)
    with pytest.raises(exc, match=pattern):
        expected_calibration_error(**args)


def test_logits_out_of_range_allowed_and_nan_refused():
    assert expected_calibration_error([0], [[5.0, -3.0]], from_logits=True) >= 0.0
    with pytest.raises(ValueError, match="NaN"):
        expected_calibration_error([0], [[np.nan, 0.0]], from_logits=True)


# --------------------------------------------------------------------------
# Sigmoid outputs: binary (positive class) and multi-label
# --------------------------------------------------------------------------


def random_binary(rng, n, num_labels=None):
    """Over-confident sigmoid probabilities (float32) and 0/1 labels from a softer model."""
    shape = (n,) if num_labels is None else (n, num_labels)
    z = rng.normal(size=shape) * 2.5
    p = (1.0 / (1.0 + np.exp(-z))).astype(np.float32)
    y = (rng.random(shape) < 1.0 / (1.0 + np.exp(-z / 2.0))).astype(np.int64)
    return z, p, y


@pytest.mark.parametrize("column", [False, True])
@pytest.mark.parametrize("num_bins", [1, 10, 15])
def test_binary_is_positive_class(column, num_bins):
    """(N,) / (N, 1): bin p, compare with the frequency of label 1 (weighted too)."""
    rng = np.random.default_rng(10)
    _, p, y = random_binary(rng, 600)
    w = rng.uniform(0, 2, size=600)
    y_prob, y_true = (p[:, None], y[:, None]) if column else (p, y)
    for weights in (None, w):
        ece, mce = ref_ece_mce(p, y, num_bins, weights)
        kw = dict(num_bins=num_bins, sample_weight=weights)
        assert expected_calibration_error(y_true, y_prob, **kw) == pytest.approx(ece, abs=1e-12)
        assert maximum_calibration_error(y_true, y_prob, **kw) == pytest.approx(mce, abs=1e-12)
        # Both classes mirror each other bin for bin: classwise = positive class.
        assert classwise_calibration_error(y_true, y_prob, **kw) == pytest.approx(ece, abs=1e-12)
    bins = calibration_bins(y_true, y_prob, num_bins)
    assert bins.counts.shape == (num_bins,)
    assert bins.correct_sums.sum() == y.sum()


def test_binary_from_logits_is_sigmoid():
    rng = np.random.default_rng(11)
    z, _, y = random_binary(rng, 500)
    p64 = 1.0 / (1.0 + np.exp(-z))
    got = expected_calibration_error(y, z, from_logits=True)
    assert got == pytest.approx(ref_ece_mce(p64, y, 15)[0], abs=1e-12)
    # Stable sigmoid: no overflow, p = 1 and 0 in the end bins.
    assert expected_calibration_error([1, 1], [1000.0, -1000.0], 2, from_logits=True) == 0.5


def test_binary_and_two_class_softmax_are_different_readings():
    """A 2-class softmax is read top-label, a sigmoid positive-class: both documented."""
    rng = np.random.default_rng(12)
    _, p, y = random_binary(rng, 400)
    two = np.stack([1.0 - p.astype(np.float64), p], axis=1)
    top = expected_calibration_error(y, two)
    assert top == pytest.approx(ref_ece_mce(*ref_top_label(y, two), 15)[0], abs=1e-12)
    positive = expected_calibration_error(y, p)
    assert positive == pytest.approx(ref_ece_mce(p, y, 15)[0], abs=1e-12)
    assert abs(top - positive) > 1e-3


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
def test_binary_matches_sklearn_calibration_curve(strategy):
    calibration = pytest.importorskip("sklearn.calibration")
    rng = np.random.default_rng(13)
    _, p, y = random_binary(rng, 2000)
    p = p.astype(np.float64)
    prob_true, prob_pred = calibration.calibration_curve(y, p, n_bins=10, strategy=strategy)
    bins = calibration_bins(y, p, 10, binning=strategy)
    filled = bins.counts > 0
    np.testing.assert_allclose(bins.accuracy[filled], prob_true, rtol=0, atol=1e-12)
    np.testing.assert_allclose(bins.confidence[filled], prob_pred, rtol=0, atol=1e-12)


def test_multi_label_is_the_mean_of_per_label_binary():
    rng = np.random.default_rng(14)
    z, p, y = random_binary(rng, 400, num_labels=4)
    w = rng.uniform(0, 2, size=400)
    for binning in ("uniform", "quantile"):
        for measure in (expected_calibration_error, maximum_calibration_error,
                        classwise_calibration_error):
            kw = dict(num_bins=8, sample_weight=w, binning=binning)
            per_label = [measure(y[:, j], p[:, j], **kw) for j in range(4)]
            got = measure(y, p, multi_label=True, **kw)
            assert got == pytest.approx(np.mean(per_label), abs=1e-12)
    loops = [ref_ece_mce(p[:, j], y[:, j], 8, w) for j in range(4)]
    got = expected_calibration_error(y, p, 8, sample_weight=w, multi_label=True)
    assert got == pytest.approx(np.mean([e for e, _ in loops]), abs=1e-12)
    got = maximum_calibration_error(y, p, 8, sample_weight=w, multi_label=True)
    assert got == pytest.approx(np.mean([m for _, m in loops]), abs=1e-12)
    got = expected_calibration_error(y, z, 8, from_logits=True, multi_label=True)
    p64 = 1.0 / (1.0 + np.exp(-z))
    want = np.mean([ref_ece_mce(p64[:, j], y[:, j], 8)[0] for j in range(4)])
    assert got == pytest.approx(want, abs=1e-12)
    bins = calibration_bins(y, p, 8, multi_label=True)
    assert bins.counts.shape == (4, 8)
    assert ece_from_bins(bins) == pytest.approx(expected_calibration_error(y, p, 8,
                                                                          multi_label=True))


def test_sigmoid_outputs_are_never_read_as_a_softmax():
    rng = np.random.default_rng(15)
    _, p, y = random_binary(rng, 50, num_labels=3)
    with pytest.raises(ValueError, match=r"softmax.*row \d+ sums to .*multi_label=True"):
        expected_calibration_error(y, p)
    with pytest.raises(ValueError, match=r"multi_label=True"):
        reliability_diagram(y.argmax(1), p)


# --------------------------------------------------------------------------
# MCE, classwise ECE
# --------------------------------------------------------------------------


@pytest.mark.parametrize("num_bins", [1, 2, 10, 15, 37])
def test_mce_matches_loop_reference(data, num_bins):
    labels, _, probs = data
    w = np.random.default_rng(2).uniform(0, 2, size=len(labels))
    conf, hits = ref_top_label(labels, probs)
    for weights in (None, w):
        want = ref_ece_mce(conf, hits, num_bins, weights)[1]
        got = maximum_calibration_error(labels, probs, num_bins, sample_weight=weights)
        assert got == pytest.approx(want, abs=1e-12)
    assert mce_from_bins(calibration_bins(labels, probs, num_bins)) == pytest.approx(
        ref_ece_mce(conf, hits, num_bins)[1], abs=1e-12
    )


def test_mce_hand_computed_and_empty_bins():
    # Bins (0.8, 0.9]: acc 1, conf 0.9; (0.7, 0.8]: acc 0, conf 0.8 -> MCE 0.8.
    assert maximum_calibration_error([0, 1], [[0.9, 0.1], [0.8, 0.2]], 10) == pytest.approx(0.8)
    # Zero-weight samples leave their bin empty: it no longer counts.
    got = maximum_calibration_error([0, 1], [[0.9, 0.1], [0.8, 0.2]], 10, sample_weight=[1, 0])
    assert got == pytest.approx(0.1)
    assert maximum_calibration_error(np.zeros(0, int), np.zeros((0, 3))) == 0.0


@pytest.mark.parametrize("num_bins", [1, 5, 15])
def test_classwise_matches_loop_reference(data, num_bins):
    labels, logits, probs = data
    w = np.random.default_rng(3).uniform(0, 2, size=len(labels))
    for weights in (None, w):
        want = np.mean([
            ref_ece_mce(probs[:, k], labels == k, num_bins, weights)[0] for k in range(6)
        ])
        got = classwise_calibration_error(labels, probs, num_bins, sample_weight=weights)
        assert got == pytest.approx(want, abs=1e-12)
    got = classwise_calibration_error(np.eye(6)[labels], logits, num_bins, from_logits=True)
    want = np.mean([ref_ece_mce(probs[:, k], labels == k, num_bins)[0] for k in range(6)])
    assert got == pytest.approx(want, abs=1e-12)
    bins = calibration_bins(labels, probs, num_bins, classwise=True)
    assert bins.counts.shape == (6, num_bins)
    np.testing.assert_array_equal(bins.correct_sums.sum(1), np.bincount(labels, minlength=6))


# --------------------------------------------------------------------------
# Adaptive (quantile) bins
# --------------------------------------------------------------------------


def test_quantile_bins_hold_equal_mass():
    rng = np.random.default_rng(16)
    _, p, y = random_binary(rng, 1000)
    bins = calibration_bins(y, p, 10, binning="quantile")
    assert set(bins.counts.tolist()) <= {99.0, 100.0, 101.0}
    assert bins.counts.sum() == 1000


@pytest.mark.parametrize("num_bins", [1, 4, 10])
def test_quantile_ece_matches_loop_reference(data, num_bins):
    labels, _, probs = data
    conf, hits = ref_top_label(labels, probs)
    edges = np.quantile(np.asarray(conf), np.arange(1, num_bins) / num_bins)
    # Loop reference with these edges: bin j holds (e_j, e_{j+1}], e_0 = -inf.
    lo, hi = [-np.inf, *edges], [*edges, np.inf]
    per_bin = [[0.0, 0.0, 0.0] for _ in range(num_bins)]
    for c, h in zip(conf, hits):
        j = next(j for j in range(num_bins) if lo[j] < c <= hi[j])
        per_bin[j] = [per_bin[j][0] + 1, per_bin[j][1] + c, per_bin[j][2] + h]
    want_ece = sum(abs(h - c) for _, c, h in per_bin) / len(conf)
    want_mce = max(abs(h - c) / n for n, c, h in per_bin if n > 0)
    kw = dict(num_bins=num_bins, binning="quantile")
    assert expected_calibration_error(labels, probs, **kw) == pytest.approx(want_ece, abs=1e-12)
    assert maximum_calibration_error(labels, probs, **kw) == pytest.approx(want_mce, abs=1e-12)


def test_quantile_ties_and_zero_weights():
    # All confidences equal: every edge sits on them, all samples share bin 0.
    b = calibration_bins([1, 0, 1, 1], [0.7] * 4, 4, binning="quantile")
    np.testing.assert_array_equal(b.counts, [4, 0, 0, 0])
    assert expected_calibration_error([1, 0, 1, 1], [0.7] * 4, 4, binning="quantile") == (
        pytest.approx(0.05)
    )
    # Zero-weight rows (padding) do not move the edges.
    rng = np.random.default_rng(17)
    _, p, y = random_binary(rng, 200)
    padded_p, padded_y = np.r_[p, np.full(50, 0.99, np.float32)], np.r_[y, np.zeros(50, int)]
    w = np.r_[np.ones(200), np.zeros(50)]
    got = expected_calibration_error(padded_y, padded_p, 5, binning="quantile", sample_weight=w)
    assert got == pytest.approx(expected_calibration_error(y, p, 5, binning="quantile"))


# --------------------------------------------------------------------------
# Peers: torchmetrics and netcal, computed in a fresh interpreter
# --------------------------------------------------------------------------

PEERS = r"""
import json, sys
import numpy as np, torch
from torchmetrics.functional.classification import (
    binary_calibration_error as bce, multiclass_calibration_error as mce)
import netcal, netcal.metrics, torchmetrics
d = np.load(sys.argv[1])
probs, labels, p, y = d["probs"], d["labels"], d["p"], d["y"]
k = probs.shape[1]
t = torch.from_numpy
out = {"versions": [torchmetrics.__version__, netcal.__version__]}
for m in (10, 15):
    out[f"tm_top_{m}"] = [float(mce(t(probs), t(labels), k, m, norm=n)) for n in ("l1", "max")]
    out[f"tm_bin_{m}"] = [float(bce(t(p), t(y), m, norm=n)) for n in ("l1", "max")]
    ECE, MCE = netcal.metrics.ECE, netcal.metrics.MCE
    out[f"nc_top_{m}"] = [float(ECE(m).measure(probs, labels)),
                          float(MCE(m).measure(probs, labels)),
                          float(ECE(m, equal_intervals=False).measure(probs, labels))]
    out[f"nc_bin_{m}"] = [float(ECE(m).measure(p, y)), float(MCE(m).measure(p, y))]
# Edge cases: a probability on an inner edge, and a probability of exactly 1.
edge_p, edge_y = np.array([0.5, 0.75], np.float32), np.array([1, 0])
one_p, one_y = np.array([0.95, 1.0], np.float32), np.array([1, 0])
out["edge"] = [float(bce(t(edge_p), t(edge_y), 2)), float(ECE(2).measure(edge_p, edge_y))]
out["one"] = [float(bce(t(one_p), t(one_y), 10)), float(ECE(10).measure(one_p, one_y))]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def peers(tmp_path_factory):
    """Data without values on bin edges or equal to 1, and the peers' numbers on it."""
    rng = np.random.default_rng(18)
    _, probs = random_probs(rng, 3000, 5, sharpness=2.0)
    probs = probs.astype(np.float32)
    probs /= probs.sum(1, keepdims=True, dtype=np.float32)
    labels = rng.integers(0, 5, size=3000)
    _, p, y = random_binary(rng, 3000)
    for v in (probs.max(1), p):
        for m in (10, 15):
            assert not np.isin(v, (np.arange(m + 1) / m).astype(np.float32)).any()
    path = tmp_path_factory.mktemp("peers") / "data.npz"
    np.savez(path, probs=probs, labels=labels, p=p, y=y)
    code = PEERS.replace("sys.argv[1]", repr(str(path)))
    out = json.loads(run_python(code).strip().splitlines()[-1])
    return dict(out, probs=probs, labels=labels, p=p, y=y)


@pytest.mark.parametrize("m", [10, 15])
def test_matches_torchmetrics_and_netcal(peers, m):
    """Same numbers where the conventions agree (no value on an edge, none equal to 1).

    torchmetrics sums in float32 (agreement ~1e-7); netcal clips to [eps, 1 - eps].
    """
    probs, labels, p, y = (peers[k] for k in ("probs", "labels", "p", "y"))
    ece = expected_calibration_error(labels, probs, m)
    mce = maximum_calibration_error(labels, probs, m)
    assert peers[f"tm_top_{m}"] == pytest.approx([ece, mce], abs=1e-6)
    assert peers[f"nc_top_{m}"][:2] == pytest.approx([ece, mce], abs=1e-6)
    # netcal's adaptive bins: the same i/M quantiles (N - 1 = 2999: no edge on a sample).
    adaptive = expected_calibration_error(labels, probs, m, binning="quantile")
    assert peers[f"nc_top_{m}"][2] == pytest.approx(adaptive, abs=1e-6)
    binary = [expected_calibration_error(y, p, m), maximum_calibration_error(y, p, m)]
    assert peers[f"tm_bin_{m}"] == pytest.approx(binary, abs=1e-6)
    assert peers[f"nc_bin_{m}"] == pytest.approx(binary, abs=1e-6)


def test_where_the_peers_differ(peers):
    """Documented differences, as observed with the installed versions.

    p = 0.5 with 2 bins: ours (Guo, ``(lo, hi]``) puts it in bin 0, torchmetrics
    and netcal (left-closed) in bin 1. p = 1.0 with 10 bins: ours and netcal
    count it in the last bin; torchmetrics (issue #3510) in an extra 11th bin.
    """
    assert expected_calibration_error([1, 0], [0.5, 0.75], 2) == pytest.approx(0.625)
    assert peers["edge"] == pytest.approx([0.125, 0.125], abs=1e-6)
    assert expected_calibration_error([1, 0], [0.95, 1.0], 10) == pytest.approx(0.475)
    assert peers["one"] == pytest.approx([0.525, 0.475], abs=1e-6)


# --------------------------------------------------------------------------
# NLL, Brier
# --------------------------------------------------------------------------


def ref_nll(labels, probs):
    return sum(-math.log(float(probs[i][labels[i]])) for i in range(len(labels))) / len(labels)


def ref_brier(labels, probs):
    total = 0.0
    for i in range(len(labels)):
        for k in range(len(probs[i])):
            total += (float(probs[i][k]) - (1.0 if k == labels[i] else 0.0)) ** 2
    return total / len(labels)


def test_nll_matches_reference(data):
    labels, logits, probs = data
    want = ref_nll(labels, probs)
    assert nll(labels, probs) == pytest.approx(want, rel=1e-12)
    assert nll(np.eye(6)[labels], probs) == pytest.approx(want, rel=1e-12)
    assert nll(labels, logits, from_logits=True) == pytest.approx(want, rel=1e-10)
    assert nll([0], [[0.5, 0.5]]) == pytest.approx(math.log(2))


def test_nll_soft_targets_and_clipping():
    # Soft target: cross-entropy -sum t log p.
    t = np.array([[0.25, 0.75]])
    p = np.array([[0.5, 0.5]])
    assert nll(t, p) == pytest.approx(math.log(2))
    # A zero probability on the true class costs -log(eps), not inf.
    assert nll([1], [[1.0, 0.0]]) == pytest.approx(-math.log(1e-12))
    # Exact log-softmax for logits: no clipping, no overflow.
    assert nll([1], [[800.0, 0.0]], from_logits=True) == pytest.approx(800.0)


def test_brier_matches_reference(data):
    labels, logits, probs = data
    want = ref_brier(labels, probs)
    assert brier_score(labels, probs) == pytest.approx(want, rel=1e-12)
    assert brier_score(np.eye(6)[labels], probs) == pytest.approx(want, rel=1e-12)
    assert brier_score(labels, logits, from_logits=True) == pytest.approx(want, rel=1e-10)
    assert brier_score([0], [[0.75, 0.25]]) == pytest.approx(0.125)
    assert brier_score([0], [[0.0, 1.0]]) == pytest.approx(2.0)  # the maximum


def test_nll_brier_errors():
    with pytest.raises(ValueError, match="same number of samples"):
        nll([0, 1], [[0.5, 0.5]])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        brier_score([0], [[2.0, -1.0]])
    with pytest.raises(ValueError, match="at least one sample"):
        brier_score(np.zeros(0, int), np.zeros((0, 2)))


# --------------------------------------------------------------------------
# Temperature scaling
# --------------------------------------------------------------------------


def ref_nll_at(logits, labels, t):
    total = 0.0
    for row, y in zip(logits, labels):
        z = [v / t for v in row]
        m = max(z)
        total += -(z[y] - m - math.log(sum(math.exp(v - m) for v in z)))
    return total / len(labels)


def test_fit_temperature_matches_grid_search():
    rng = np.random.default_rng(3)
    z, _ = random_probs(rng, 200, 4, sharpness=1.0)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    labels = np.array([rng.choice(4, p=row) for row in p])
    logits = 2.5 * z  # over-confident
    t = fit_temperature(logits, labels)
    grid = np.exp(np.linspace(np.log(0.5), np.log(10.0), 401))
    losses = [ref_nll_at(logits, labels, g) for g in grid]
    best = grid[int(np.argmin(losses))]
    step = np.log(grid[1]) - np.log(grid[0])
    assert abs(math.log(t) - math.log(best)) <= step
    assert ref_nll_at(logits, labels, t) <= min(losses) + 1e-12
    assert t > 1.0


def test_fit_temperature_recovers_scale():
    # Labels drawn from softmax(z); the model reports 3 z, so T ~ 3.
    rng = np.random.default_rng(4)
    z = rng.normal(size=(20000, 5)) * 1.5
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    labels = (p.cumsum(1) > rng.random((20000, 1))).argmax(1)
    t = fit_temperature(3.0 * z, labels)
    assert t == pytest.approx(3.0, rel=0.05)
    assert nll(labels, 3.0 * z / t, from_logits=True) < nll(labels, 3.0 * z, from_logits=True)


def test_fit_temperature_agrees_with_scipy():
    optimize = pytest.importorskip("scipy.optimize")
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(300, 3)) * 4
    labels = rng.integers(0, 3, size=300)
    t = fit_temperature(logits, labels)
    res = optimize.minimize_scalar(
        lambda lt: ref_nll_at(logits, labels, math.exp(lt)),
        bounds=(math.log(0.01), math.log(100.0)), method="bounded",
        options={"xatol": 1e-8},
    )
    assert math.log(t) == pytest.approx(res.x, abs=1e-4)


def test_fit_temperature_bounds_and_errors():
    # Always right and confident: NLL keeps falling as T -> 0, so T hits the lower bound.
    logits = np.array([[2.0, 0.0], [0.0, 2.0]])
    assert fit_temperature(logits, [0, 1], bounds=(0.1, 10.0)) == pytest.approx(0.1, rel=1e-5)
    with pytest.raises(ValueError, match="`bounds`"):
        fit_temperature(logits, [0, 1], bounds=(0.0, 1.0))
    with pytest.raises(ValueError, match="`logits` must be 2-D"):
        fit_temperature([1.0, 2.0], [0, 1])
    with pytest.raises(ValueError, match="finite"):
        fit_temperature([[np.inf, 0.0]], [0])


# --------------------------------------------------------------------------
# Reliability diagram
# --------------------------------------------------------------------------


def test_reliability_diagram_figure(data, tmp_path):
    from matplotlib.figure import Figure

    labels, _, probs = data
    fig = reliability_diagram(labels, probs, num_bins=10, title="baseline")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    ece = ref_ece(labels, probs, 10)
    assert ax.get_title() == f"baseline\nECE = {100 * ece:.2f}%"
    bins = calibration_bins(labels, probs, 10)
    filled = bins.counts > 0
    heights = [p.get_height() for p in ax.patches]
    # First the accuracy bars, then the gap bars (conf - acc).
    n = int(filled.sum())
    assert len(heights) == 2 * n
    np.testing.assert_allclose(heights[:n], bins.accuracy[filled])
    np.testing.assert_allclose(heights[n:], (bins.confidence - bins.accuracy)[filled])
    assert ax.get_xlabel().startswith("Confidence (top-label")
    assert ax.get_ylabel() == "Accuracy"
    # One count per bar, above it.
    assert [t.get_text() for t in ax.texts] == [f"{c:.0f}" for c in bins.counts[filled]]
    out = tmp_path / "rel.png"
    fig.savefig(out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_reliability_diagram_binary_and_quantile():
    rng = np.random.default_rng(19)
    _, p, y = random_binary(rng, 300)
    fig = reliability_diagram(y, p, num_bins=5, binning="quantile", show_counts=False)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "Predicted probability of class 1"
    assert ax.get_ylabel() == "Observed frequency of class 1"
    ece = expected_calibration_error(y, p, 5, binning="quantile")
    assert ax.get_title() == f"ECE = {100 * ece:.2f}%"
    assert len(ax.texts) == 0
    bins = calibration_bins(y, p, 5, binning="quantile")
    bars = ax.patches[:5]
    # Bars as wide as the equal-mass bins: they tile [0, 1].
    assert sum(b.get_width() for b in bars) == pytest.approx(1.0)
    np.testing.assert_allclose([b.get_height() for b in bars], bins.accuracy)
    edges = np.r_[0.0, np.quantile(p.astype(np.float64), np.arange(1, 5) / 5)]
    np.testing.assert_allclose([b.get_x() for b in bars], edges, rtol=1e-6)
    with pytest.raises(ValueError, match=r"one per label.*y_prob\[:, j\]"):
        reliability_diagram(y[:, None], p[:, None], multi_label=True)


def test_reliability_diagram_into_given_axes(data):
    from matplotlib.figure import Figure

    labels, logits, _ = data
    fig = Figure()
    axes = fig.subplots(1, 2)
    got = reliability_diagram(labels, logits, ax=axes[1], from_logits=True, show_histogram=False)
    assert got is fig
    assert re.fullmatch(r"ECE = \d+\.\d\d%", axes[1].get_title())
    assert len(axes[1].patches) > 0 and len(axes[0].patches) == 0
    assert len(fig.axes) == 2  # no histogram twin axis


def test_import_is_light():
    code = (
        "import sys, keras_ls.calibration\n"
        "from keras_ls.calibration import expected_calibration_error as f\n"
        "assert f([1, 0], [0.8, 0.3], 2) > 0\n"
        "bad = [m for m in ('tensorflow', 'keras', 'matplotlib', 'torch', 'jax') "
        "if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
