"""Models saved by keras-ls 0.2.0, the first public version, load and train on.

The files were written by ``tests/fixtures/make_v0_2.py`` at commit ad795aa (Keras 3.15.1,
TensorFlow, one CPU). Predictions are compared at ``rtol=1e-5, atol=1e-6``: a float32
``Dense`` layer's matmul differs between CPUs' BLAS/oneDNN kernels by a few ulps (2.9e-6
relative, 7e-8 absolute was seen between two AMD EPYC machines).
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

import keras_ls
from keras_ls.calibration import expected_calibration_error

FIX = Path(__file__).resolve().parent / "fixtures"
PRED_TOL = dict(rtol=1e-5, atol=1e-6)


def _data():
    """The data of make_v0_2.py, drawn again from the same generator."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 5)).astype("float32")
    y = rng.integers(0, 3, 64)
    yb = (rng.random((64, 2)) > 0.5).astype("float32")
    np.testing.assert_array_equal(x, np.load(FIX / "v0_2_x.npy"))
    return x, y, yb


@pytest.mark.slow
def test_multi_loss_model_loads_with_its_factors_and_trains_on():
    model = keras.saving.load_model(FIX / "v0_2_multi_loss.keras")
    ce, cp, bce = model.loss["a"], model.loss["b"], model.loss["c"]
    assert isinstance(ce, keras_ls.SmoothedCE) and isinstance(bce, keras_ls.SmoothedBCE)
    assert isinstance(cp, keras_ls.ConfidencePenaltyCE)
    # saved mid-schedule (0.2 -> 0 over 4 epochs, after epochs 0 and 1): float32 0.15
    assert ce.label_smoothing == pytest.approx(0.15) and bce.label_smoothing == pytest.approx(0.15)
    assert cp.beta == pytest.approx(0.3)
    assert ce.ignore_class == 2 and ce.prior.tolist() == [0.5, 0.25, 0.25]
    x, y, yb = _data()
    want = np.load(FIX / "v0_2_multi_loss_pred.npz")
    got = model.predict(x, verbose=0)
    for key in ("a", "b", "c"):
        np.testing.assert_allclose(got[key], want[key], **PRED_TOL)
    # The compiled ECE metric came back and measures what the functional core does.
    res = model.evaluate(x, {"a": y, "b": y, "c": yb}, batch_size=64, verbose=0,
                         return_dict=True)
    assert res["a_ece"] == pytest.approx(
        expected_calibration_error(y, got["a"], 10, from_logits=True), abs=1e-6
    )
    # Training continues the original schedule where it stopped: its clock is the saved
    # optimizer's iteration count (2 epochs of 2 steps), so the next epochs are 2 and 3.
    hist = model.fit(
        x, {"a": y, "b": y, "c": yb}, epochs=2, verbose=0,
        callbacks=[keras_ls.SmoothingScheduler(keras_ls.schedules.Linear(0.2, 0.0, steps=4),
                                               loss=[ce, bce])],
    )
    assert hist.history["label_smoothing"] == pytest.approx([0.1, 0.05])
    assert ce.label_smoothing == pytest.approx(0.05) and cp.beta == pytest.approx(0.3)


def test_online_model_loads_its_soft_labels_and_trains_on():
    model = keras.saving.load_model(FIX / "v0_2_online.keras")
    loss = model.loss
    assert isinstance(loss, keras_ls.OnlineSmoothedCE)
    want = np.load(FIX / "v0_2_online_soft_targets.npy")
    # Sums of softmax outputs of a float32 model: the same few-ulps tolerance as predictions.
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loss.targets.soft_targets), want, **PRED_TOL
    )
    x, y, _ = _data()
    model.fit(x, y, epochs=2, verbose=0, callbacks=[keras_ls.OnlineLabelSmoothing()])
    assert not np.allclose(keras.ops.convert_to_numpy(loss.targets.soft_targets), want)


def test_dice_model_loads():
    model = keras.saving.load_model(FIX / "v0_2_dice.keras")
    assert isinstance(model.loss, keras_ls.SmoothedDice)
    assert model.loss.ignore_class == 255 and model.loss.label_smoothing == pytest.approx(0.1)
    masks = np.zeros((2, 4, 4), "int32")
    masks[:, 1:3, 1:3] = 1
    hist = model.fit(np.ones((2, 4, 4, 2), "float32"), masks, epochs=1, verbose=0)
    assert np.isfinite(hist.history["loss"][0])
