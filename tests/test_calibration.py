"""Tests of keras_ls.calibration against independent float64 loop references."""

from __future__ import annotations

import math
import re
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_ls.calibration import (
    bin_edges,
    brier_score,
    calibration_bins,
    expected_calibration_error,
    fit_temperature,
    nll,
    reliability_diagram,
)

# --------------------------------------------------------------------------
# Plain-loop references (written from the definitions, not from the module)
# --------------------------------------------------------------------------


def ref_ece(labels, probs, num_bins, weights=None):
    """Guo et al. 2017 ECE with bins (i/M, (i+1)/M], 0 in bin 0; pure Python."""
    n = len(labels)
    weights = [1.0] * n if weights is None else list(weights)
    cnt = [0.0] * num_bins
    conf_sum = [0.0] * num_bins
    acc_sum = [0.0] * num_bins
    for i in range(n):
        row = [float(v) for v in probs[i]]
        conf = max(row)
        pred = row.index(conf)
        b = 0
        for j in range(num_bins):
            if j / num_bins < conf <= (j + 1) / num_bins:
                b = j
        cnt[b] += weights[i]
        conf_sum[b] += weights[i] * conf
        acc_sum[b] += weights[i] * (pred == int(labels[i]))
    total = sum(cnt)
    ece = 0.0
    for b in range(num_bins):
        if cnt[b] > 0:
            ece += cnt[b] / total * abs(acc_sum[b] / cnt[b] - conf_sum[b] / cnt[b])
    return ece


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
    # 0.4 -> bin 1, 1.0 -> bin 4.
    above = float(np.nextafter(dtype(0.2), dtype(1)))
    conf = [0.0, 0.2, above, 0.4, 0.6, 0.8, 1.0]
    probs = np.array([[c, 0.0] for c in conf], dtype=dtype)
    bins = calibration_bins(np.zeros(len(conf), int), probs, num_bins=5)
    np.testing.assert_array_equal(bins.counts, [2, 2, 1, 1, 1])
    np.testing.assert_allclose(
        bins.confidence_sums, [0.2, above + 0.4, 0.6, 0.8, 1.0], rtol=1e-6
    )


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
    k=st.integers(1, 5),
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
        (dict(y_prob=[0.2, 0.3, 0.5]), ValueError, r"`y_prob` must be 2-D.*\(3,\)"),
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
    out = tmp_path / "rel.png"
    fig.savefig(out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


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
        "bad = [m for m in ('tensorflow', 'keras', 'matplotlib', 'torch', 'jax') "
        "if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
