"""Tests of keras_ls.noise.flip_labels."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_ls.noise import flip_labels

N = 100_000
K = 10


@pytest.fixture(scope="module")
def labels():
    return np.random.default_rng(0).integers(0, K, size=N)


def binomial_tol(n, p, sigmas=5.0):
    """Tolerance on an observed fraction: 5 standard deviations of Binomial(n, p)/n.

    The outcome is fixed by the seed, so the test is deterministic; 5 sigma
    means a correct implementation would fail for fewer than 1 in 10^6 seeds.
    """
    return sigmas * math.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("mode", ["symmetric", "pair"])
def test_reproducible_and_input_untouched(labels, mode):
    before = labels.copy()
    a, ma = flip_labels(labels, 0.3, K, mode=mode, seed=123)
    b, mb = flip_labels(labels, 0.3, K, mode=mode, seed=123)
    c, _ = flip_labels(labels, 0.3, K, mode=mode, seed=124)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ma, mb)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(labels, before)
    assert a.dtype == np.int64 and ma.dtype == np.bool_
    assert a.shape == labels.shape == ma.shape


@pytest.mark.parametrize("rate", [0.1, 0.4, 0.8])
@pytest.mark.parametrize("mode", ["symmetric", "pair"])
def test_flip_fraction_and_consistency(labels, rate, mode):
    noisy, flipped = flip_labels(labels, rate, K, mode=mode, seed=1)
    assert abs(flipped.mean() - rate) <= binomial_tol(N, rate)
    # Flipped labels always change, the others never do.
    np.testing.assert_array_equal(noisy != labels, flipped)
    np.testing.assert_array_equal(noisy[~flipped], labels[~flipped])
    assert noisy.min() >= 0 and noisy.max() < K


def test_pair_mapping_exact(labels):
    noisy, flipped = flip_labels(labels, 0.5, K, mode="pair", seed=2)
    np.testing.assert_array_equal(noisy[flipped], (labels[flipped] + 1) % K)
    # rate 1 flips everything, including the wrap-around K-1 -> 0.
    noisy, flipped = flip_labels(np.arange(K), 1.0, K, mode="pair", seed=0)
    assert flipped.all()
    assert noisy.tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0]


def test_symmetric_targets_uniform_over_other_classes():
    # All labels 3: flipped ones must spread evenly over the 9 other classes.
    y = np.full(N, 3)
    noisy, flipped = flip_labels(y, 0.9, K, mode="symmetric", seed=5)
    targets = noisy[flipped]
    counts = np.bincount(targets, minlength=K)
    assert counts[3] == 0
    share = counts[np.arange(K) != 3] / targets.size
    assert np.all(np.abs(share - 1 / 9) <= binomial_tol(targets.size, 1 / 9))


def test_rate_edges_and_shapes():
    y = np.array([[0, 1, 2], [2, 1, 0]], dtype=np.int32)
    noisy, flipped = flip_labels(y, 0.0, 3, seed=0)
    np.testing.assert_array_equal(noisy, y)
    assert not flipped.any() and noisy.shape == (2, 3)
    noisy, flipped = flip_labels(y, 1.0, 3, seed=0)
    assert flipped.all() and np.all(noisy != y)
    # Binary symmetric noise has only one other class.
    noisy, _ = flip_labels([0, 1, 1, 0], 1.0, 2, seed=0)
    assert noisy.tolist() == [1, 0, 0, 1]
    # Lists and integer-valued floats are accepted; a Generator works as seed.
    noisy, _ = flip_labels([0.0, 1.0], 0.0, 2, seed=np.random.default_rng(0))
    assert noisy.tolist() == [0, 1]


def test_same_seed_same_flipped_samples_across_modes(labels):
    _, m_sym = flip_labels(labels, 0.2, K, mode="symmetric", seed=9)
    _, m_pair = flip_labels(labels, 0.2, K, mode="pair", seed=9)
    np.testing.assert_array_equal(m_sym, m_pair)


@pytest.mark.parametrize(
    "args, kwargs, exc, pattern",
    [
        (([0, 1], -0.1, 2), {}, ValueError, r"`rate`.*\[0, 1\].*-0.1"),
        (([0, 1], 1.5, 2), {}, ValueError, r"`rate`"),
        (([0, 1], float("nan"), 2), {}, ValueError, r"`rate`.*finite"),
        (([0, 1], "0.1", 2), {}, TypeError, r"`rate`"),
        (([0, 1], 0.1, 1), {}, ValueError, r"`num_classes`.*>= 2.*1"),
        (([0, 1], 0.1, 2.0), {}, TypeError, r"`num_classes`"),
        (([0, 2], 0.1, 2), {}, ValueError, r"`y` labels.*\[0, 2\).*\[0, 2\]"),
        (([-1, 0], 0.1, 2), {}, ValueError, r"`y` labels"),
        (([0.5, 1.0], 0.1, 2), {}, ValueError, r"`y`.*integer"),
        (([0, 1], 0.1, 2), {"mode": "asym"}, ValueError, r"`mode`.*symmetric.*pair.*asym"),
    ],
)
def test_errors(args, kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        flip_labels(*args, **kwargs)


@settings(max_examples=50, deadline=None)
@given(
    y=st.lists(st.integers(0, 4), min_size=0, max_size=50),
    rate=st.floats(0.0, 1.0),
    mode=st.sampled_from(["symmetric", "pair"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_properties(y, rate, mode, seed):
    y = np.array(y, dtype=np.int64)
    noisy, flipped = flip_labels(y, rate, 5, mode=mode, seed=seed)
    np.testing.assert_array_equal(noisy != y, flipped)
    assert np.all((noisy >= 0) & (noisy < 5))
    if mode == "pair":
        np.testing.assert_array_equal(noisy[flipped], (y[flipped] + 1) % 5)
