"""Tests of the streaming keras_ls.ExpectedCalibrationError metric."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_ls.calibration import calibration_bins, expected_calibration_error
from keras_ls.metrics import ExpectedCalibrationError

ATOL = 2e-6  # float32 accumulators vs the float64 numpy reference


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
    """Confidences exactly on bin edges (0, 0.2, 0.4, 1.0) land in the same bins."""
    above = float(np.nextafter(np.float32(0.2), np.float32(1)))
    conf = [0.0, 0.2, above, 0.4, 0.6, 0.8, 1.0]
    probs = np.array([[c, 0.0] for c in conf], dtype=np.float32)
    labels = np.array([0, 1, 0, 1, 0, 1, 0])
    m = ExpectedCalibrationError(num_bins=5)
    m.update_state(labels, probs)
    want = calibration_bins(labels, probs, 5)
    np.testing.assert_array_equal(m.bins().counts, [2, 2, 1, 1, 1])
    np.testing.assert_array_equal(m.bins().counts, want.counts)
    np.testing.assert_array_equal(m.bins().correct_sums, want.correct_sums)
    want_ece = expected_calibration_error(labels, probs, 5)
    assert float(m.result()) == pytest.approx(want_ece, abs=1e-6)


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
    assert cfg == {"name": "cal", "dtype": "float32", "num_bins": 7, "from_logits": True}
    m2 = keras.metrics.deserialize(keras.metrics.serialize(m))
    assert type(m2) is ExpectedCalibrationError
    assert (m2.num_bins, m2.from_logits, m2.name) == (7, True, "cal")
    assert [v.shape for v in m2.variables] == [(7,)] * 3


@pytest.mark.parametrize(
    "kwargs, exc, pattern",
    [
        (dict(num_bins=0), ValueError, r"`num_bins`.*received 0"),
        (dict(num_bins=2.5), TypeError, r"`num_bins`"),
        (dict(from_logits=1), TypeError, r"`from_logits` must be a bool"),
    ],
)
def test_bad_constructor_args(kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        ExpectedCalibrationError(**kwargs)


def test_bad_shapes():
    m = ExpectedCalibrationError()
    with pytest.raises(ValueError, match="`y_pred` must have shape"):
        m.update_state([0, 1], [0.3, 0.7])
    with pytest.raises(ValueError, match="`y_true` must be sparse labels"):
        m.update_state(np.zeros((2, 3, 1)), np.full((2, 3), 1 / 3))


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
        metrics=[ExpectedCalibrationError(num_bins=10, from_logits=from_logits)],
        # Keras passes sample_weight to `weighted_metrics` only.
        weighted_metrics=[
            ExpectedCalibrationError(num_bins=10, from_logits=from_logits, name="ece_w")
        ],
        jit_compile=jit_compile,
    )
    hist = model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert np.isfinite(hist.history["ece"][0])
    got = model.evaluate(x, y, batch_size=40, verbose=0, return_dict=True)["ece"]
    out = model.predict(x, batch_size=96, verbose=0)
    want = expected_calibration_error(y, out, 10, from_logits=from_logits)
    assert got == pytest.approx(want, abs=1e-5)
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


_BACKEND_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import keras
    from keras_ls.metrics import ExpectedCalibrationError
    assert keras.backend.backend() == sys.argv[1], keras.backend.backend()
    rng = np.random.default_rng(7)
    logits = (rng.normal(size=(90, 4)) * 3).astype("float32")
    labels = rng.integers(0, 4, size=90)
    w = rng.uniform(0, 2, size=90).astype("float32")
    out = {}
    m = ExpectedCalibrationError(num_bins=8, from_logits=True)
    for s in range(0, 90, 40):
        m.update_state(labels[s:s + 40], logits[s:s + 40], sample_weight=w[s:s + 40])
    out["streamed"] = float(m.result())
    # Inside the backend's compiled train/eval loop (jax.jit / torch).
    model = keras.Sequential([keras.Input((4,)), keras.layers.Identity()])
    model.compile(loss="categorical_crossentropy",
                  metrics=[ExpectedCalibrationError(num_bins=8, from_logits=True)])
    out["evaluate"] = model.evaluate(logits, np.eye(4, dtype="float32")[labels],
                                     batch_size=32, verbose=0, return_dict=True)["ece"]
    print("RESULT" + json.dumps(out))
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_other_backends(backend):
    pytest.importorskip(backend)
    env = dict(os.environ, KERAS_BACKEND=backend, CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(
        [sys.executable, "-c", _BACKEND_SCRIPT, backend],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1]
    out = json.loads(line[len("RESULT"):])
    rng = np.random.default_rng(7)
    logits = (rng.normal(size=(90, 4)) * 3).astype("float32")
    labels = rng.integers(0, 4, size=90)
    w = rng.uniform(0, 2, size=90).astype("float32")
    want_w = expected_calibration_error(labels, logits, 8, from_logits=True, sample_weight=w)
    want = expected_calibration_error(labels, logits, 8, from_logits=True)
    assert out["streamed"] == pytest.approx(want_w, abs=1e-5)
    assert out["evaluate"] == pytest.approx(want, abs=1e-5)
