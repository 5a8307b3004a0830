"""Tests of the streaming calibration metrics (TF in-process; JAX and torch in subprocesses)."""

from __future__ import annotations

import importlib.util
import json

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ls_reference import run_python

import keras_ls.metrics as km
from keras_ls.calibration import (
    bin_edges,
    calibration_bins,
    classwise_calibration_error,
    expected_calibration_error,
    maximum_calibration_error,
)
from keras_ls.metrics import (
    ClasswiseCalibrationError,
    ExpectedCalibrationError,
    MaximumCalibrationError,
)

ATOL = 1e-6  # float32 reading (softmax of float32 logits) and float32 result vs float64
METRICS = {
    ExpectedCalibrationError: expected_calibration_error,
    MaximumCalibrationError: maximum_calibration_error,
    ClasswiseCalibrationError: classwise_calibration_error,
}


def ops_tensor(x):
    return keras.ops.convert_to_tensor(x)


def make_data(seed=0, n=240, k=5):
    rng = np.random.default_rng(seed)
    logits = (rng.normal(size=(n, k)) * 3).astype(np.float32)
    z = logits - logits.max(1, keepdims=True)
    probs = (np.exp(z) / np.exp(z).sum(1, keepdims=True)).astype(np.float32)
    labels = rng.integers(0, k, size=n)
    weights = rng.uniform(0, 2, size=n).astype(np.float32)
    return labels, logits, probs, weights


def stream(metric, y_true, y_pred, weights=None, batch=64):
    for s in range(0, len(y_pred), batch):
        sw = None if weights is None else weights[s: s + batch]
        metric.update_state(y_true[s: s + batch], y_pred[s: s + batch], sample_weight=sw)
    return float(metric.result())


@pytest.mark.parametrize("label_format", ["sparse", "sparse_col", "onehot"])
@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_streamed_equals_numpy(label_format, from_logits, weighted):
    labels, logits, probs, weights = make_data()
    y_true = {
        "sparse": labels,
        "sparse_col": labels[:, None],
        "onehot": np.eye(5, dtype=np.float32)[labels],
    }[label_format]
    y_pred = logits if from_logits else probs
    w = weights if weighted else None
    m = ExpectedCalibrationError(num_bins=10, from_logits=from_logits)
    got = stream(m, y_true, y_pred, w, batch=50)
    want = expected_calibration_error(labels, probs.astype(np.float64), 10, sample_weight=w)
    assert got == pytest.approx(want, abs=ATOL)
    # The per-bin accumulators themselves, not just the scalar.
    b = calibration_bins(labels, probs, 10, sample_weight=w)
    for got_v, want_v in zip(m.bins(), b):
        np.testing.assert_allclose(got_v, want_v, atol=1e-4)


def sigmoid_data(seed=0, n=240, num_labels=None):
    rng = np.random.default_rng(seed)
    shape = (n,) if num_labels is None else (n, num_labels)
    logits = (rng.normal(size=shape) * 2.5).astype(np.float32)
    probs = (1.0 / (1.0 + np.exp(-logits.astype(np.float64)))).astype(np.float32)
    labels = (rng.random(shape) < 1.0 / (1.0 + np.exp(-logits / 2.0))).astype(np.float32)
    weights = rng.uniform(0, 2, size=n).astype(np.float32)
    return labels, logits, probs, weights


@pytest.mark.parametrize("cls", list(METRICS))
@pytest.mark.parametrize("layout", ["(B,)", "(B, 1)", "(B, 1) labels (B,)"])
@pytest.mark.parametrize("from_logits", [False, True])
def test_binary_output_is_positive_class(cls, layout, from_logits):
    """A sigmoid output: bin p against the frequency of label 1, as the function does."""
    labels, logits, probs, weights = sigmoid_data()
    y_pred = logits if from_logits else probs
    y_true, y_pred = {
        "(B,)": (labels, y_pred),
        "(B, 1)": (labels[:, None], y_pred[:, None]),
        "(B, 1) labels (B,)": (labels, y_pred[:, None]),
    }[layout]
    for w in (None, weights):
        m = cls(num_bins=10, from_logits=from_logits)
        got = stream(m, ops_tensor(y_true), ops_tensor(y_pred), w, batch=50)
        want = METRICS[cls](labels, probs.astype(np.float64), 10, sample_weight=w)
        assert got == pytest.approx(want, abs=ATOL)


@pytest.mark.parametrize("cls", list(METRICS))
@pytest.mark.parametrize("from_logits", [False, True])
def test_multi_label_is_the_mean_over_labels(cls, from_logits):
    labels, logits, probs, weights = sigmoid_data(num_labels=4)
    m = cls(num_bins=8, from_logits=from_logits, multi_label=True)
    assert m.bins().counts.shape == (0, 8)  # built at the first update
    y_pred = logits if from_logits else probs
    got = stream(m, ops_tensor(labels), ops_tensor(y_pred), weights, batch=64)
    want = METRICS[cls](labels, probs.astype(np.float64), 8, sample_weight=weights,
                        multi_label=True)
    assert got == pytest.approx(want, abs=ATOL)
    assert m.bins().counts.shape == (4, 8)
    per_label = [METRICS[cls](labels[:, j], probs[:, j], 8, sample_weight=weights)
                 for j in range(4)]
    assert got == pytest.approx(np.mean(per_label), abs=ATOL)


@pytest.mark.parametrize("cls", [MaximumCalibrationError, ClasswiseCalibrationError])
@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_mce_and_classwise_streamed_equal_numpy(cls, from_logits, weighted):
    labels, logits, probs, weights = make_data()
    w = weights if weighted else None
    m = cls(num_bins=10, from_logits=from_logits)
    got = stream(m, ops_tensor(np.eye(5, dtype="float32")[labels]),
                 ops_tensor(logits if from_logits else probs), w, batch=50)
    want = METRICS[cls](labels, probs.astype(np.float64), 10, sample_weight=w)
    assert got == pytest.approx(want, abs=ATOL)
    classwise = cls is ClasswiseCalibrationError
    b = calibration_bins(labels, probs, 10, sample_weight=w, classwise=classwise)
    for got_v, want_v in zip(m.bins(), b):
        np.testing.assert_allclose(got_v, want_v, atol=1e-5)


@pytest.mark.parametrize("cls", list(METRICS))
def test_empty_batch_adds_nothing(cls):
    m = cls(num_bins=5)
    m.update_state([0, 1], [[0.9, 0.1], [0.8, 0.2]])
    before = float(m.result())
    m.update_state(ops_tensor(np.zeros(0, "int32")), ops_tensor(np.zeros((0, 2), "float32")))
    m.update_state(np.zeros(0, "int32"), np.zeros((0, 2), "float32"))
    assert float(m.result()) == before


TF_ONLY = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TF backend only")


@TF_ONLY
@pytest.mark.parametrize("jit_compile", [False, True])
def test_inside_tf_function(jit_compile):
    """A plain TF graph gets the uncompiled kernels (bincount, top_k), XLA the static ones."""
    import tensorflow as tf

    import keras_ls.metrics as km

    labels, _, probs, weights = make_data(seed=5)
    m = ExpectedCalibrationError(num_bins=10)
    seen = []

    @tf.function(jit_compile=jit_compile)
    def step(y, p, w):
        seen.append(km._uncompiled_kernels())
        m.update_state(y, p, sample_weight=w)

    for s in range(0, 240, 80):
        step(labels[s: s + 80], probs[s: s + 80], weights[s: s + 80])
    assert seen and all(k is (not jit_compile) for k in seen)
    want = expected_calibration_error(labels, probs, 10, sample_weight=weights)
    assert float(m.result()) == pytest.approx(want, abs=ATOL)


def test_float64_agreement_at_scale():
    """2e5 rows, in one update and in 20: within 1e-6 of the float64 function (float64 state)."""
    if km._accumulation_dtype() != "float64":
        pytest.skip("JAX without jax_enable_x64 has float32 accumulators only")
    labels, _, probs, weights = make_data(seed=4, n=200_000, k=10)
    yt, pt, wt = ops_tensor(labels), ops_tensor(probs), ops_tensor(weights)
    for cls, fn in METRICS.items():
        want = fn(labels, probs, 15, sample_weight=weights)
        one = cls(num_bins=15)
        one.update_state(yt, pt, sample_weight=wt)
        many = cls(num_bins=15)
        for s in range(0, 200_000, 10_000):
            many.update_state(yt[s: s + 10_000], pt[s: s + 10_000], sample_weight=wt[s: s + 10_000])
        assert float(one.result()) == pytest.approx(want, abs=ATOL), cls.__name__
        assert float(many.result()) == pytest.approx(want, abs=ATOL), cls.__name__
        # float64 sums: the bins of the function, up to the order of float64 additions.
        classwise = cls is ClasswiseCalibrationError
        bins = calibration_bins(labels, probs, 15, sample_weight=weights, classwise=classwise)
        for m in (one, many):
            for got_v, want_v in zip(m.bins(), bins):
                np.testing.assert_allclose(got_v, want_v, rtol=1e-10, atol=1e-9)
    # A worst case for float32 sums: 2e5 equal confidences in one bin, one update.
    same = np.tile(np.float32([[0.71, 0.29]]), (200_000, 1))
    m = ExpectedCalibrationError(num_bins=15)
    m.update_state(ops_tensor(labels % 2), ops_tensor(same))
    want = 200_000 * float(np.float32(0.71))
    assert m.bins().confidence_sums.sum() == pytest.approx(want, rel=1e-7)  # one rounding
    want = expected_calibration_error(labels % 2, same, 15)
    assert float(m.result()) == pytest.approx(want, abs=ATOL)


@TF_ONLY
def test_xla_reading_of_large_eager_updates(monkeypatch):
    """Eager TF reads large updates in one XLA kernel: same sums, same host errors."""
    monkeypatch.setattr(km, "_XLA_MIN_VALUES", 1)  # every update takes that path
    labels, logits, probs, weights = make_data(seed=6, n=120, k=4)
    for cls, fn in METRICS.items():
        for from_logits, w in ((False, None), (True, weights)):
            m = cls(num_bins=7, from_logits=from_logits)
            m.update_state(labels, logits if from_logits else probs, sample_weight=w)
            want = fn(labels, probs, 7, sample_weight=w)
            assert float(m.result()) == pytest.approx(want, abs=ATOL), cls.__name__
    yb, zb, _, _ = sigmoid_data(num_labels=3)
    m = ExpectedCalibrationError(num_bins=7, from_logits=True, multi_label=True)
    m.update_state(ops_tensor(yb), ops_tensor(zb))
    want = expected_calibration_error(yb, zb, 7, from_logits=True, multi_label=True)
    assert float(m.result()) == pytest.approx(want, abs=ATOL)
    m = ExpectedCalibrationError(num_bins=7)
    bad = probs.copy()
    bad[3] = 0.5  # a row that does not sum to 1
    with pytest.raises(ValueError, match="row 3 sums to 2"):
        m.update_state(labels, bad)
    assert m.bins().counts.sum() == 0.0  # nothing was accumulated
    m.update_state(ops_tensor(labels), ops_tensor(bad))
    assert np.isnan(float(m.result()))


def test_hand_computed_and_lifecycle():
    m = ExpectedCalibrationError(num_bins=10)
    assert float(m.result()) == 0.0  # no data: 0, not NaN
    m.update_state([0, 1], [[0.9, 0.1], [0.8, 0.2]])
    assert float(m.result()) == pytest.approx(0.45, abs=1e-6)
    m.reset_state()
    assert float(m.result()) == 0.0
    np.testing.assert_array_equal(m.bins().counts, np.zeros(10))
    # __call__ = update + result; scalar sample_weight scales everything.
    assert float(m([0, 1], [[0.9, 0.1], [0.8, 0.2]], sample_weight=3.0)) == pytest.approx(0.45)
    assert m.bins().counts.sum() == pytest.approx(6.0)


def test_sequence_inputs_are_flattened():
    """(B, T, K) predictions: every position is a sample; (B,) weights broadcast over T."""
    labels, _, probs, weights = make_data(n=240, k=5)
    w_bt = np.repeat(weights[:60, None], 4, axis=1)  # (60, 4): per-sequence weights
    m = ExpectedCalibrationError(num_bins=6)
    m.update_state(labels.reshape(60, 4), probs.reshape(60, 4, 5), sample_weight=weights[:60])
    want = expected_calibration_error(labels, probs, 6, sample_weight=w_bt.reshape(-1))
    assert float(m.result()) == pytest.approx(want, abs=ATOL)
    m.reset_state()
    m.update_state(labels.reshape(60, 4, 1), probs.reshape(60, 4, 5), sample_weight=w_bt)
    assert float(m.result()) == pytest.approx(want, abs=ATOL)


def test_boundaries_bin_like_numpy():
    """Values exactly on bin edges (0, 0.2, 0.4, 1.0) land in the same bins."""
    above = float(np.nextafter(np.float32(0.2), np.float32(1)))
    conf = np.array([0.0, 0.2, above, 0.4, 0.6, 0.8, 1.0], dtype=np.float32)
    labels = np.array([0, 1, 0, 1, 0, 1, 0])
    m = ExpectedCalibrationError(num_bins=5)
    m.update_state(labels, conf[:, None])  # sigmoid output: p itself is binned
    want = calibration_bins(labels, conf, 5)
    np.testing.assert_array_equal(m.bins().counts, [2, 2, 1, 1, 1])
    np.testing.assert_array_equal(m.bins().counts, want.counts)
    np.testing.assert_array_equal(m.bins().correct_sums, want.correct_sums)
    want_ece = expected_calibration_error(labels, conf, 5)
    assert float(m.result()) == pytest.approx(want_ece, abs=1e-6)
    # Top-label confidence on the edges 0.2 (five-way tie) and 0.4.
    probs = np.array([[0.2] * 5, [0.4, 0.15, 0.15, 0.15, 0.15]], dtype=np.float32)
    m = ExpectedCalibrationError(num_bins=5)
    m.update_state([0, 1], probs)
    np.testing.assert_array_equal(m.bins().counts, calibration_bins([0, 1], probs, 5).counts)
    # Ties: the first maximum is the prediction (a hit for label 0, a miss for label 2).
    ties = np.array([[0.2] * 5, [0.2] * 5], dtype=np.float32)
    m = ExpectedCalibrationError(num_bins=5)
    m.update_state(ops_tensor(np.array([0, 2])), ops_tensor(ties))
    want = calibration_bins([0, 2], ties, 5)
    np.testing.assert_array_equal(m.bins().correct_sums, want.correct_sums)
    assert want.correct_sums.sum() == 1.0


@pytest.mark.parametrize("num_bins", [1, 2, 3, 7, 10, 15, 30, 97, 100, 1000])
def test_bin_index_is_the_edge_rule(num_bins):
    """Every float32 edge i/M and its neighbours (3 ulps) bin as in numpy."""
    edges = (np.arange(num_bins + 1) / num_bins).astype(np.float32)
    values = [edges]
    for direction in (0.0, 2.0):
        v = edges
        for _ in range(3):
            v = np.nextafter(v, np.float32(direction))
            values.append(v)
    conf = np.concatenate(values)
    conf = conf[(conf >= 0) & (conf <= 1)]
    m = ExpectedCalibrationError(num_bins=num_bins)
    m.update_state(ops_tensor(np.zeros(len(conf), "float32")), ops_tensor(conf[:, None]))
    want = np.searchsorted(bin_edges(num_bins).astype(np.float32), conf, side="left")
    np.testing.assert_array_equal(m.bins().counts, np.bincount(want, minlength=num_bins))


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    cuts=st.lists(st.integers(1, 99), max_size=4, unique=True),
    num_bins=st.integers(1, 20),
)
def test_streaming_invariance_over_random_splits(seed, cuts, num_bins):
    labels, _, probs, weights = make_data(seed, n=100, k=3)
    m = ExpectedCalibrationError(num_bins=num_bins)
    for idx in np.split(np.arange(100), sorted(cuts)):
        m.update_state(labels[idx], probs[idx], sample_weight=weights[idx])
    want = expected_calibration_error(labels, probs, num_bins, sample_weight=weights)
    assert float(m.result()) == pytest.approx(want, abs=ATOL)


def test_public_names():
    import keras_ls

    assert keras_ls.ExpectedCalibrationError is ExpectedCalibrationError
    name = keras.saving.get_registered_name(ExpectedCalibrationError)
    assert name == "keras_ls>ExpectedCalibrationError"


def test_config_and_serialization():
    m = ExpectedCalibrationError(num_bins=7, from_logits=True, name="cal")
    cfg = m.get_config()
    assert cfg == {
        "name": "cal", "dtype": "float32", "num_bins": 7, "from_logits": True,
        "multi_label": False,
    }
    m2 = keras.metrics.deserialize(keras.metrics.serialize(m))
    assert type(m2) is ExpectedCalibrationError
    assert (m2.num_bins, m2.from_logits, m2.name) == (7, True, "cal")
    assert [v.shape for v in m2.variables[:3]] == [(7,)] * 3
    assert [v.name for v in m2.variables[:3]] == ["counts", "confidence_sums", "correct_sums"]
    # A config of keras-ls 0.1.0 (no multi_label key) still deserializes.
    old = ExpectedCalibrationError.from_config(
        {"name": "ece", "dtype": "float32", "num_bins": 10, "from_logits": True}
    )
    assert (old.num_bins, old.from_logits, old.multi_label) == (10, True, False)


@pytest.mark.parametrize("cls", list(METRICS))
def test_new_classes_serialize(cls):
    m = cls(num_bins=6, from_logits=True, multi_label=True, name="x")
    assert keras.saving.get_registered_name(cls) == f"keras_ls>{cls.__name__}"
    m2 = keras.metrics.deserialize(keras.metrics.serialize(m))
    assert type(m2) is cls
    assert (m2.num_bins, m2.from_logits, m2.multi_label, m2.name) == (6, True, True, "x")
    assert cls().name == {"ExpectedCalibrationError": "ece", "MaximumCalibrationError": "mce",
                          "ClasswiseCalibrationError": "classwise_ece"}[cls.__name__]


@pytest.mark.parametrize(
    "kwargs, exc, pattern",
    [
        (dict(num_bins=0), ValueError, r"`num_bins`.*received 0"),
        (dict(num_bins=2.5), TypeError, r"`num_bins`"),
        (dict(from_logits=1), TypeError, r"`from_logits` must be a bool"),
        (dict(multi_label=None), TypeError, r"`multi_label` must be a bool"),
    ],
)
def test_bad_constructor_args(kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        ExpectedCalibrationError(**kwargs)


def test_bad_shapes():
    m = ExpectedCalibrationError()
    with pytest.raises(ValueError, match="`y_pred` must have shape"):
        m.update_state(0, 0.5)
    with pytest.raises(ValueError, match="`y_true` must be sparse labels"):
        m.update_state(ops_tensor(np.zeros((2, 3, 1))), ops_tensor(np.full((2, 3), 1 / 3)))
    with pytest.raises(ValueError, match=r"binary \(sigmoid\) output must hold 0/1 labels"):
        m.update_state(ops_tensor(np.zeros((2, 3))), ops_tensor(np.full((2, 1), 0.5)))
    ml = ExpectedCalibrationError(multi_label=True)
    ml.update_state(np.zeros((2, 3)), np.full((2, 3), 0.5))
    with pytest.raises(ValueError, match="must keep its 3 columns"):
        ml.update_state(np.zeros((2, 4)), np.full((2, 4), 0.5))


@pytest.mark.parametrize(
    "y_true, y_pred, kwargs, pattern",
    [
        ([0, 1], [[0.7, 0.7], [0.2, 0.8]], {}, r"row 0 sums to 1\.4.*multi_label=True"),
        ([0, 3], [[0.3, 0.7], [0.2, 0.8]], {}, r"labels must be in \[0, 2\)"),
        ([0, 2], [[0.3], [0.8]], {}, r"0/1 labels; received 2"),
        ([[0, 1]], [[0.3, 1.2]], dict(multi_label=True), r"\[0, 1\].*from_logits"),
        ([0, 1], [[0.3, 0.7], [0.2, 0.8]], dict(sample_weight=[1.0, -2.0]), r"non-negative"),
        ([0, 1], [[np.nan, 0.0], [0.2, 0.8]], dict(from_logits=True), r"contains NaN"),
    ],
)
def test_bad_host_values_raise(y_true, y_pred, kwargs, pattern):
    """NumPy inputs are checked on the host: a clear error, not a wrong number."""
    sample_weight = kwargs.pop("sample_weight", None)
    m = ExpectedCalibrationError(num_bins=5, **kwargs)
    with pytest.raises(ValueError, match=pattern):
        m.update_state(y_true, y_pred, sample_weight=sample_weight)
    assert float(m.result()) == 0.0  # nothing was accumulated


@pytest.mark.parametrize(
    "cls, y_true, y_pred, kwargs",
    [
        (ExpectedCalibrationError, [0, 1], [[0.7, 0.7], [0.2, 0.8]], {}),  # sigmoid rows
        (MaximumCalibrationError, [0, 3], [[0.3, 0.7], [0.2, 0.8]], {}),
        (ClasswiseCalibrationError, [0, 1], [[-0.3, 1.3], [0.2, 0.8]], {}),
        (ExpectedCalibrationError, [0, 2], [[0.3], [0.8]], {}),
        (ExpectedCalibrationError, [[0, 1]], [[0.3, np.nan]], dict(multi_label=True)),
        (ExpectedCalibrationError, [0, 1], [[np.nan, 0.0], [0.2, 0.8]], dict(from_logits=True)),
    ],
)
def test_bad_tensor_values_make_the_result_nan(cls, y_true, y_pred, kwargs):
    """Tensors cannot be checked without a host sync (or inside a compiled step): NaN."""
    m = cls(num_bins=5, **kwargs)
    good_true = [[0, 1], [1, 1]] if kwargs.get("multi_label") else [0, 1]
    good = (ops_tensor(np.asarray(good_true)), ops_tensor([[0.3, 0.7], [0.2, 0.8]]))
    m.update_state(*good)
    assert np.isfinite(float(m.result()))
    m.update_state(ops_tensor(np.asarray(y_true)), ops_tensor(np.asarray(y_pred, "float32")))
    assert np.isnan(float(m.result()))
    m.reset_state()
    m.update_state(*good)
    assert np.isfinite(float(m.result()))


def _tiny_problem():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(96, 4)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1).astype(np.int64)
    return x, y


def _tiny_model(from_logits):
    keras.utils.set_random_seed(0)
    act = None if from_logits else "softmax"
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation=act)])


@pytest.mark.slow
@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("from_logits", [False, True])
def test_compile_fit_evaluate(jit_compile, from_logits):
    x, y = _tiny_problem()
    model = _tiny_model(from_logits)
    model.compile(
        optimizer="sgd",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits),
        metrics=[cls(num_bins=10, from_logits=from_logits) for cls in METRICS],
        # Keras passes sample_weight to `weighted_metrics` only.
        weighted_metrics=[
            ExpectedCalibrationError(num_bins=10, from_logits=from_logits, name="ece_w")
        ],
        jit_compile=jit_compile,
    )
    hist = model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert np.isfinite(hist.history["ece"][0])
    got = model.evaluate(x, y, batch_size=40, verbose=0, return_dict=True)
    out = model.predict(x, batch_size=96, verbose=0)
    for cls, fn in METRICS.items():
        want = fn(y, out, 10, from_logits=from_logits)
        assert got[cls().name] == pytest.approx(want, abs=1e-6), cls.__name__
    want = expected_calibration_error(y, out, 10, from_logits=from_logits)
    w = np.linspace(0.0, 2.0, len(y)).astype(np.float32)
    got_w = model.evaluate(x, y, sample_weight=w, batch_size=40, verbose=0, return_dict=True)
    want_w = expected_calibration_error(y, out, 10, from_logits=from_logits, sample_weight=w)
    assert got_w["ece_w"] == pytest.approx(want_w, abs=1e-5)
    assert got_w["ece"] == pytest.approx(want, abs=1e-5)
    assert want_w != pytest.approx(want, abs=1e-4)  # the weights do matter here


@pytest.mark.slow
def test_keras_save_load_round_trip(tmp_path):
    x, y = _tiny_problem()
    model = _tiny_model(False)
    model.compile(
        optimizer="sgd",
        loss="sparse_categorical_crossentropy",
        metrics=[ExpectedCalibrationError(num_bins=12)],
    )
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    before = model.evaluate(x, y, verbose=0, return_dict=True)["ece"]
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    after = loaded.evaluate(x, y, verbose=0, return_dict=True)["ece"]
    assert after == pytest.approx(before, abs=1e-7)
    restored = [m for m in loaded.metrics if isinstance(m, ExpectedCalibrationError)]
    if not restored:  # compiled metrics are nested in a CompileMetrics container
        restored = [
            m for c in loaded.metrics for m in getattr(c, "metrics", [])
            if isinstance(m, ExpectedCalibrationError)
        ]
    assert len(restored) == 1 and restored[0].num_bins == 12


@pytest.mark.slow
@pytest.mark.parametrize("jit_compile", [False, True])
def test_binary_and_multi_label_models(jit_compile):
    """A sigmoid classifier (SmoothedBCE) and a multi-label head, inside fit / evaluate."""
    from keras_ls import SmoothedBCE

    x, y = _tiny_problem()
    y_bin = (y > 0).astype("float32")[:, None]
    y_multi = np.stack([y == 0, y == 1, y == 2, x[:, 3] > 0], axis=1).astype("float32")
    keras.utils.set_random_seed(0)
    inp = keras.Input((4,))
    binary = keras.layers.Dense(1, name="binary")(inp)  # logits
    multi = keras.layers.Dense(4, activation="sigmoid", name="multi")(inp)
    model = keras.Model(inp, {"binary": binary, "multi": multi})
    model.compile(
        "sgd",
        loss={"binary": SmoothedBCE(0.1, from_logits=True), "multi": "binary_crossentropy"},
        metrics={
            "binary": [cls(10, from_logits=True) for cls in METRICS],
            "multi": [cls(10, multi_label=True) for cls in METRICS],
        },
        jit_compile=jit_compile,
    )
    data = {"binary": y_bin, "multi": y_multi}
    model.fit(x, data, batch_size=32, epochs=1, verbose=0)
    got = model.evaluate(x, data, batch_size=32, verbose=0, return_dict=True)
    out = model.predict(x, verbose=0)
    for cls, fn in METRICS.items():
        name = cls().name
        want = fn(y_bin, out["binary"], 10, from_logits=True)
        assert got[f"binary_{name}"] == pytest.approx(want, abs=1e-6)
        want = fn(y_multi, out["multi"], 10, multi_label=True)
        assert got[f"multi_{name}"] == pytest.approx(want, abs=1e-6)


_BACKEND_SCRIPT = r"""
import json
import numpy as np
import keras
from keras_ls.metrics import (
    ClasswiseCalibrationError, ExpectedCalibrationError, MaximumCalibrationError)

assert keras.backend.backend() == BACKEND, keras.backend.backend()
CLASSES = [ExpectedCalibrationError, MaximumCalibrationError, ClasswiseCalibrationError]
rng = np.random.default_rng(7)
logits = (rng.normal(size=(96, 4)) * 3).astype("float32")
labels = rng.integers(0, 4, size=96)
onehot = np.eye(4, dtype="float32")[labels]
w = rng.uniform(0, 2, size=96).astype("float32")
zb = (rng.normal(size=(96, 3)) * 2).astype("float32")
yb = (rng.random((96, 3)) < 0.5).astype("float32")
out = {}

def stream(m, y, p, w):
    for s in range(0, 96, 40):
        m.update_state(y[s:s + 40], p[s:s + 40], sample_weight=w[s:s + 40])
    return float(m.result())

for cls in CLASSES:
    name = cls.__name__
    out[name + " top"] = stream(cls(8, from_logits=True), labels, logits, w)
    out[name + " binary"] = stream(cls(8, from_logits=True), yb[:, :1], zb[:, :1], w)
    out[name + " multi"] = stream(cls(8, from_logits=True, multi_label=True), yb, zb, w)
bad = ExpectedCalibrationError(8)
bad.update_state(keras.ops.convert_to_tensor(labels),
                 keras.ops.convert_to_tensor(np.full((96, 4), 0.5, "float32")))
out["bad rows give NaN"] = bool(np.isnan(float(bad.result())))
for cls in CLASSES:  # an empty batch adds nothing (and does not fail)
    m = cls(8)
    m.update_state(np.zeros(0, "int32"), np.zeros((0, 4), "float32"))
    out[cls.__name__ + " empty"] = float(m.result())

def fit_evaluate(metrics):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4)])
    model.compile("sgd", keras.losses.CategoricalCrossentropy(from_logits=True),
                  metrics=metrics, jit_compile=True)
    model.fit(logits, onehot, batch_size=32, epochs=2, verbose=0)
    got = model.evaluate(logits, onehot, batch_size=32, verbose=0, return_dict=True)
    return got, model.predict(logits, verbose=0).tolist()

if BACKEND == "torch":
    import torch
    import torch._dynamo
    from torch._dynamo.utils import counters

    def graphs(metrics):
        torch._dynamo.reset()
        counters.clear()
        got, pred = fit_evaluate(metrics)
        return got, pred, [sum(counters["graph_break"].values()),
                           counters["stats"]["unique_graphs"]]

    _, _, out["graphs without"] = graphs([])
    out["evaluate"], out["pred"], out["graphs with"] = graphs([c(8, True) for c in CLASSES])
    # update_state alone: one full graph per metric, no recompiles over 3 batches.
    torch._dynamo.config.error_on_recompile = True
    for cls in CLASSES:
        torch._dynamo.reset()  # one code object (update_state) for three classes
        counters.clear()
        m = cls(8, from_logits=True)
        m.update_state(labels[:32], logits[:32])  # builds (classwise) outside the graph
        m.reset_state()
        step = torch.compile(m.update_state, fullgraph=True)
        for s in range(0, 96, 32):
            step(torch.tensor(labels[s:s + 32]), torch.tensor(logits[s:s + 32]))
        out["compiled " + cls.__name__] = [float(m.result()), counters["stats"]["unique_graphs"]]
else:
    out["evaluate"], out["pred"] = fit_evaluate([c(8, True) for c in CLASSES])
print(json.dumps(out))
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_other_backends(backend):
    """Streamed values, fit/evaluate with jit_compile=True; torch: no graph break, no recompile."""
    if importlib.util.find_spec(backend) is None:  # not importorskip: torch after TF
        pytest.skip(f"{backend} is not installed")
    code = f"BACKEND = {backend!r}\n" + _BACKEND_SCRIPT
    env = {"KERAS_BACKEND": backend, "CUDA_VISIBLE_DEVICES": ""}
    out = json.loads(run_python(code, env=env).strip().splitlines()[-1])
    rng = np.random.default_rng(7)
    logits = (rng.normal(size=(96, 4)) * 3).astype("float32")
    labels = rng.integers(0, 4, size=96)
    w = rng.uniform(0, 2, size=96).astype("float32")
    zb = (rng.normal(size=(96, 3)) * 2).astype("float32")
    yb = (rng.random((96, 3)) < 0.5).astype("float32")
    pred = np.asarray(out["pred"], dtype="float32")
    for cls, fn in METRICS.items():
        name = cls.__name__
        kw = dict(num_bins=8, from_logits=True, sample_weight=w)
        assert out[name + " top"] == pytest.approx(fn(labels, logits, **kw), abs=ATOL)
        assert out[name + " binary"] == pytest.approx(fn(yb[:, 0], zb[:, 0], **kw), abs=ATOL)
        want = fn(yb, zb, multi_label=True, **kw)
        assert out[name + " multi"] == pytest.approx(want, abs=ATOL)
        want = fn(labels, pred, 8, from_logits=True)
        assert out["evaluate"][cls().name] == pytest.approx(want, abs=ATOL)
        if backend == "torch":
            value, graphs = out["compiled " + name]
            assert value == pytest.approx(fn(labels, logits, 8, from_logits=True), abs=ATOL)
            assert graphs == 1
    assert out["bad rows give NaN"] is True
    assert all(out[cls.__name__ + " empty"] == 0.0 for cls in METRICS)
    if backend == "torch":
        # fit + evaluate: Keras' own graph breaks (backward, ...) and nothing more.
        assert out["graphs with"] == out["graphs without"]
