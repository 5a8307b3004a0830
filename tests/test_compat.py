"""Models saved by keras-ls 0.1 (tests/fixtures/v0_1_*, see make_v0_1.py) load and train on."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

import keras_ls

FIX = Path(__file__).resolve().parent / "fixtures"


def test_multi_loss_model_loads_with_its_factors_and_predicts_the_same():
    model = keras.saving.load_model(FIX / "v0_1_multi_loss.keras")
    ce, cp, bce = model.loss["a"], model.loss["b"], model.loss["c"]
    assert isinstance(ce, keras_ls.SmoothedCE) and isinstance(bce, keras_ls.SmoothedBCE)
    assert isinstance(cp, keras_ls.ConfidencePenaltyCE)
    # saved mid-schedule (0.2 -> 0 over 4 epochs, after 2): float32 0.15
    assert ce.label_smoothing == pytest.approx(0.15) and cp.beta == pytest.approx(0.15)
    assert bce.label_smoothing == pytest.approx(0.15)
    assert ce.ignore_class == 2 and ce.prior.tolist() == [0.5, 0.25, 0.25]
    x = np.load(FIX / "v0_1_x.npy")
    want = np.load(FIX / "v0_1_multi_loss_pred.npz")
    got = model.predict(x, verbose=0)
    for key in ("a", "b", "c"):
        np.testing.assert_allclose(got[key], want[key], rtol=1e-6)
    # The compiled ECE metric came back too. Training continues the original schedule
    # (0.2 -> 0 over 4 epochs) where it stopped: its clock is the saved optimizer's
    # iteration count (2 epochs of 2 steps), so the next epochs are 2 and 3.
    y = np.random.default_rng(0).integers(0, 3, len(x))
    yb = (np.random.default_rng(1).random((len(x), 2)) > 0.5).astype("float32")
    hist = model.fit(
        x,
        {"a": y, "b": y, "c": yb},
        epochs=2,
        verbose=0,
        callbacks=[keras_ls.SmoothingScheduler(keras_ls.schedules.Linear(0.2, 0.0, steps=4))],
    )
    assert "a_ece" in hist.history
    assert hist.history["label_smoothing"] == pytest.approx([0.1, 0.05])
    assert hist.history["beta"] == pytest.approx([0.1, 0.05])
    assert ce.label_smoothing == pytest.approx(0.05) and cp.beta == pytest.approx(0.05)


def test_online_model_loads_its_soft_labels_and_trains_on():
    model = keras.saving.load_model(FIX / "v0_1_online.keras")
    loss = model.loss
    assert isinstance(loss, keras_ls.OnlineSmoothedCE)
    want = np.load(FIX / "v0_1_online_soft_targets.npy")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loss.targets.soft_targets), want)
    x = np.load(FIX / "v0_1_x.npy")
    y = np.random.default_rng(0).integers(0, 3, len(x))
    model.fit(x, y, epochs=2, verbose=0, callbacks=[keras_ls.OnlineLabelSmoothing()])
    # compiled with metrics=[loss.targets] (0.1): the callback re-linked the loss to it
    assert any(m is loss.targets for m in model.metrics[1].metrics), (
        "the loss must drive the compiled metric"
    )
    assert not np.allclose(keras.ops.convert_to_numpy(loss.targets.soft_targets), want)


def test_dice_model_loads():
    model = keras.saving.load_model(FIX / "v0_1_dice.keras")
    assert isinstance(model.loss, keras_ls.SmoothedDice)
    assert model.loss.ignore_class == 255 and model.loss.label_smoothing == pytest.approx(0.1)
    masks = np.zeros((2, 4, 4), "int32")
    masks[:, 1:3, 1:3] = 1
    hist = model.fit(np.ones((2, 4, 4, 2), "float32"), masks, epochs=1, verbose=0)
    assert np.isfinite(hist.history["loss"][0])
