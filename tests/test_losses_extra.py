"""ConfidencePenaltyCE and SmoothedDice against float64 numpy references."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_ls
from keras_ls.losses import ConfidencePenaltyCE, SmoothedDice

RTOL = 2e-5
ATOL = 2e-5


# -- independent numpy references (float64) ------------------------------------
def np_log_softmax(z, axis=-1):
    z = np.asarray(z, np.float64)
    m = z.max(axis=axis, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=axis, keepdims=True))


def np_confidence_penalty(labels, logits, beta, ignore_class=None, dense=False):
    """Per-position CE - beta * H(p) (class axis last)."""
    logp = np_log_softmax(logits)
    p = np.exp(logp)
    entropy = -(p * logp).sum(-1)
    if dense:
        return -(np.asarray(labels, np.float64) * logp).sum(-1) - beta * entropy
    labels = np.asarray(labels)
    safe = labels if ignore_class is None else np.where(labels == ignore_class, 0, labels)
    nll = -np.take_along_axis(logp, safe[..., None], -1)[..., 0]
    out = nll - beta * entropy
    if ignore_class is not None:
        out = np.where(labels == ignore_class, 0.0, out)
    return out


def np_dice(masks, probs, a, eps=1.0, prior=None, ignore_class=None, dense=False):
    """Per-sample 1 - mean_k dice_k with smoothed one-hot targets."""
    probs = np.asarray(probs, np.float64)
    k = probs.shape[-1]
    if dense:
        onehot = np.asarray(masks, np.float64)
        valid = np.ones(probs.shape[:-1] + (1,))
    else:
        masks = np.asarray(masks)
        valid = np.ones(masks.shape + (1,))
        if ignore_class is not None:
            valid = (masks != ignore_class)[..., None].astype(np.float64)
            masks = np.where(masks == ignore_class, 0, masks)
        onehot = np.eye(k)[masks]
    pri = np.full(k, 1.0 / k) if prior is None else np.asarray(prior, np.float64)
    t = ((1 - a) * onehot + a * pri) * valid
    p = probs * valid
    axes = tuple(range(1, probs.ndim - 1))
    inter = (p * t).sum(axes)
    denom = p.sum(axes) + t.sum(axes)
    return 1.0 - ((2 * inter + eps) / (denom + eps)).mean(-1)


def np_softmax(z):
    return np.exp(np_log_softmax(z))


def rng_data(seed=0, shape=(6,), k=5, scale=3.0):
    rng = np.random.default_rng(seed)
    logits = (rng.normal(size=shape + (k,)) * scale).astype(np.float32)
    labels = rng.integers(0, k, size=shape)
    return labels, logits


# -- ConfidencePenaltyCE ---------------------------------------------------------
@pytest.mark.parametrize("label_format", ["sparse", "sparse_col", "onehot", "soft"])
@pytest.mark.parametrize("beta", [0.0, 0.3, 1.0])
def test_cp_matches_numpy(label_format, beta):
    labels, logits = rng_data()
    soft = np.random.default_rng(1).dirichlet(np.ones(5), size=6).astype(np.float32)
    y = {
        "sparse": labels,
        "sparse_col": labels[:, None],
        "onehot": np.eye(5, dtype=np.float32)[labels],
        "soft": soft,
    }[label_format]
    dense = label_format in ("onehot", "soft")
    want = np_confidence_penalty(y if dense else labels, logits, beta, dense=dense)
    loss = ConfidencePenaltyCE(beta, from_logits=True, reduction=None)
    np.testing.assert_allclose(loss(y, logits), want, rtol=RTOL, atol=ATOL)
    mean = ConfidencePenaltyCE(beta, from_logits=True)(y, logits)
    assert float(mean) == pytest.approx(want.mean(), rel=RTOL, abs=ATOL)


def test_cp_beta0_is_keras_ce_and_probabilities_input():
    labels, logits = rng_data(2)
    ref = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, logits)
    got = ConfidencePenaltyCE(0.0, from_logits=True)(labels, logits)
    assert float(got) == pytest.approx(float(ref), rel=1e-6)
    probs = np_softmax(logits).astype(np.float32)
    want = np_confidence_penalty(labels, logits, 0.4).mean()
    got_p = ConfidencePenaltyCE(0.4, from_logits=False)(labels, probs)
    assert float(got_p) == pytest.approx(want, rel=1e-4)


def test_cp_sequences_axis_ignore_class_and_weights():
    labels, logits = rng_data(3, shape=(3, 7), k=4)
    labels[0, :3] = -1
    labels[2, :] = -1  # a fully ignored sequence
    per_pos = np_confidence_penalty(labels, logits, 0.2, ignore_class=-1)
    valid = labels != -1
    loss = ConfidencePenaltyCE(0.2, from_logits=True, ignore_class=-1)
    assert float(loss(labels, logits)) == pytest.approx(per_pos.sum() / valid.sum(), rel=RTOL)
    # per-position weights combine with the mask as with Keras' own ignore_class
    w = np.random.default_rng(9).uniform(0, 2, size=(3, 7)).astype(np.float32)
    want_w = (per_pos * w).sum() / valid.sum()
    assert float(loss(labels, logits, sample_weight=w)) == pytest.approx(want_w, rel=RTOL)
    # class axis in the middle: (B, K, T)
    moved = np.moveaxis(logits, -1, 1)
    got = ConfidencePenaltyCE(0.2, from_logits=True, axis=1, reduction=None)(
        np.where(valid, labels, 0), moved
    )
    want = np_confidence_penalty(np.where(valid, labels, 0), logits, 0.2)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_cp_gradient_matches_analytic():
    labels, logits = rng_data(4)
    beta = 0.35
    z = tf.Variable(logits)
    with tf.GradientTape() as tape:
        loss = ConfidencePenaltyCE(beta, from_logits=True, reduction="sum")(labels, z)
    grad = tape.gradient(loss, z).numpy()
    # d CE/dz = p - onehot ; d(-beta H)/dz = beta * p * (log p + H)
    logp = np_log_softmax(logits)
    p = np.exp(logp)
    h = -(p * logp).sum(-1, keepdims=True)
    want = p - np.eye(5)[labels] + beta * p * (logp + h)
    np.testing.assert_allclose(grad, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_cp_finite_on_extreme_logits(dtype):
    big = 6e4 if dtype == "float16" else 1e30
    logits = np.array([[big, -big, 0.0], [-big, -big, big], [0.0, 0.0, 0.0]], dtype)
    labels = np.array([0, 0, 2])
    z = tf.Variable(logits)
    with tf.GradientTape() as tape:
        loss = ConfidencePenaltyCE(0.5, from_logits=True, reduction=None)(labels, z)
    grad = tape.gradient(loss, z)
    assert np.all(np.isfinite(loss.numpy())) and np.all(np.isfinite(grad.numpy()))
    # Row 0 is a certain, correct prediction: CE 0 and entropy 0.
    assert float(loss[0]) == pytest.approx(0.0, abs=1e-6)
    # Row 2 is uniform: CE = log 3, H = log 3 -> (1 - beta) log 3.
    assert float(loss[2]) == pytest.approx(0.5 * np.log(3), rel=1e-3)


def test_cp_bad_input_names_the_argument():
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="`beta`"):
            ConfidencePenaltyCE(bad)
    with pytest.raises(TypeError, match="`beta`"):
        ConfidencePenaltyCE("0.1")
    with pytest.raises(ValueError, match="`beta`"):
        ConfidencePenaltyCE(0.1).beta = 2.0
    with pytest.raises(TypeError, match="`ignore_class`"):
        ConfidencePenaltyCE(ignore_class=1.5)
    with pytest.raises(TypeError, match="`axis`"):
        ConfidencePenaltyCE(axis="last")
    with pytest.raises(ValueError, match="`axis`"):
        ConfidencePenaltyCE(axis=3, from_logits=True)([0], [[1.0, 2.0]])
    with pytest.raises(ValueError, match="`ignore_class`"):
        ConfidencePenaltyCE(ignore_class=0, from_logits=True)([[0.0, 1.0]], [[1.0, 2.0]])
    with pytest.raises(ValueError, match="y_true"):
        ConfidencePenaltyCE(from_logits=True)(np.zeros((2, 3)), np.zeros((2, 4)))


def test_cp_beta_serialization_and_keras_save(tmp_path):
    loss = ConfidencePenaltyCE(0.2, from_logits=True, ignore_class=3, axis=-1)
    loss.beta = 0.4
    assert not hasattr(loss, "label_smoothing")  # beta is the one name (0.1's alias is gone)
    cfg = keras.losses.serialize(loss)
    back = keras.losses.deserialize(json.loads(json.dumps(cfg)))
    assert isinstance(back, ConfidencePenaltyCE)
    assert back.beta == pytest.approx(0.4) and back.ignore_class == 3 and back.from_logits
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile("sgd", loss)
    path = tmp_path / "m.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    assert isinstance(reloaded.loss, ConfidencePenaltyCE)
    assert reloaded.loss.beta == pytest.approx(0.4)


# -- SmoothedDice -------------------------------------------------------------------
def seg_data(seed=0, shape=(2, 6, 5), k=4):
    rng = np.random.default_rng(seed)
    masks = rng.integers(0, k, size=shape)
    masks[0][masks[0] == 3] = 0  # class 3 absent from the first image
    logits = (rng.normal(size=shape + (k,)) * 2).astype(np.float32)
    return masks, logits


@pytest.mark.parametrize("a", [0.0, 0.1, 0.5])
@pytest.mark.parametrize("label_format", ["sparse", "sparse_col", "onehot"])
def test_dice_matches_numpy(a, label_format):
    masks, logits = seg_data()
    y = {
        "sparse": masks,
        "sparse_col": masks[..., None],
        "onehot": np.eye(4, dtype=np.float32)[masks],
    }[label_format]
    probs = np_softmax(logits)
    want = np_dice(masks, probs, a)
    got = SmoothedDice(a, from_logits=True, reduction=None)(y, logits)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    got_p = SmoothedDice(a, reduction=None)(y, probs.astype(np.float32))
    np.testing.assert_allclose(got_p, want, rtol=RTOL, atol=ATOL)


def test_dice_other_ranks_prior_eps_weights_ignore():
    # 3-D volumes (B, D, H, W, K)
    masks, logits = seg_data(1, shape=(2, 3, 4, 5), k=3)
    want = np_dice(masks, np_softmax(logits), 0.2, eps=1e-3)
    got = SmoothedDice(0.2, from_logits=True, epsilon=1e-3, reduction=None)(masks, logits)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    # (B, K) classification-shaped input: per-sample Dice over classes
    labels, logits2 = rng_data(5, shape=(7,), k=3)
    want2 = np_dice(labels, np_softmax(logits2), 0.1)
    got2 = SmoothedDice(0.1, from_logits=True, reduction=None)(labels, logits2)
    np.testing.assert_allclose(got2, want2, rtol=RTOL, atol=ATOL)
    # prior, sample weight and ignore_class (void = 255)
    masks, logits = seg_data(2)
    masks[1, :2] = 255
    prior = [0.4, 0.3, 0.2, 0.1]
    want3 = np_dice(masks, np_softmax(logits), 0.3, prior=prior, ignore_class=255)
    loss = SmoothedDice(0.3, from_logits=True, prior=prior, ignore_class=255)
    w = np.array([1.0, 3.0], np.float32)
    assert float(loss(masks, logits, sample_weight=w)) == pytest.approx(
        (want3 * w).mean(), rel=RTOL
    )


def test_dice_smoothing_gives_empty_classes_a_target():
    """A perfect one-hot prediction has loss ~0 unsmoothed; smoothing moves mass."""
    masks, _ = seg_data()
    perfect = np.eye(4, dtype=np.float32)[masks]
    assert float(SmoothedDice(0.0, epsilon=1e-6)(masks, perfect)) == pytest.approx(0, abs=1e-5)
    # Class 3 is absent from image 0: unsmoothed its Dice term is eps/eps = 1
    # for a zero prediction; smoothed, its target is a/K everywhere, so a
    # prediction of exactly zero for it is now penalised.
    per_class = lambda a: np_dice(masks[:1], perfect[:1], a, eps=1e-6)  # noqa: E731
    assert per_class(0.0)[0] == pytest.approx(0.0, abs=1e-6)
    assert per_class(0.2)[0] > 0.05
    got = SmoothedDice(0.2, epsilon=1e-6, reduction=None)(masks[:1], perfect[:1])
    np.testing.assert_allclose(got, per_class(0.2), rtol=1e-4)


def test_dice_bad_input():
    for bad in (0.0, -1.0, float("inf"), "1"):
        with pytest.raises(ValueError, match="`epsilon`"):
            SmoothedDice(epsilon=bad)
    with pytest.raises(ValueError, match="`label_smoothing`"):
        SmoothedDice(1.2)
    with pytest.raises(ValueError, match="`prior`"):
        SmoothedDice(prior=[0.5, 0.5])(np.zeros((1, 2, 2), "int32"), np.ones((1, 2, 2, 3)))
    with pytest.raises(ValueError, match="`ignore_class`"):
        SmoothedDice(ignore_class=0)(np.ones((1, 2, 2, 3)), np.ones((1, 2, 2, 3)))
    with pytest.raises(ValueError, match="batch and a class axis"):
        SmoothedDice()(np.zeros(3), np.ones(3))
    # extreme logits stay finite
    logits = np.array([[[[1e30, -1e30, 0.0]]]], np.float32)
    z = tf.Variable(logits)
    with tf.GradientTape() as tape:
        val = SmoothedDice(0.1, from_logits=True)(np.array([[[1]]]), z)
    assert np.isfinite(float(val)) and np.all(np.isfinite(tape.gradient(val, z).numpy()))


def test_dice_serialization():
    loss = SmoothedDice(0.15, from_logits=True, epsilon=0.5, ignore_class=255, prior=[0.5, 0.5])
    back = keras.losses.deserialize(json.loads(json.dumps(keras.losses.serialize(loss))))
    assert isinstance(back, SmoothedDice)
    assert back.get_config() == loss.get_config()


# -- scheduling with the core SmoothingScheduler -----------------------------------
def test_scheduler_drives_beta_and_dice_factor():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4, 4, 3)).astype(np.float32)
    y = rng.integers(0, 3, size=(32, 4, 4))
    inp = keras.Input((4, 4, 3))
    out = keras.layers.Conv2D(3, 1)(inp)
    model = keras.Model(inp, {"ce": out, "dice": keras.layers.Identity()(out)})
    cp, dice = ConfidencePenaltyCE(0.5, from_logits=True), SmoothedDice(0.5, from_logits=True)
    model.compile("sgd", loss={"ce": cp, "dice": dice})
    linear = keras_ls.schedules.Linear(0.4, 0.0, steps=2)
    # beta and label_smoothing are different hyperparameters: which one is ambiguous
    with pytest.raises(ValueError, match=r"different hyperparameters.*beta.*label_smoothing"):
        model.fit(x, {"ce": y, "dice": y}, epochs=1, batch_size=16, verbose=0,
                  callbacks=[keras_ls.SmoothingScheduler(linear)])
    hist = model.fit(x, {"ce": y, "dice": y}, epochs=3, batch_size=16, verbose=0, callbacks=[
        keras_ls.SmoothingScheduler(linear, hyperparameter="beta"),
        keras_ls.SmoothingScheduler(linear, loss=dice),
    ])
    # Each driven hyperparameter is logged under its name.
    assert hist.history["label_smoothing"] == pytest.approx([0.4, 0.2, 0.0])
    assert hist.history["beta"] == pytest.approx([0.4, 0.2, 0.0])
    assert cp.beta == 0.0 and dice.label_smoothing == 0.0


# -- other backends -----------------------------------------------------------------
_BACKEND_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import keras
    import keras_ls
    assert keras.backend.backend() == sys.argv[1]
    rng = np.random.default_rng(0)
    logits = (rng.normal(size=(6, 5)) * 3).astype("float32")
    labels = rng.integers(0, 5, size=6)
    cp = keras_ls.ConfidencePenaltyCE(0.3, from_logits=True, reduction=None)
    masks = rng.integers(0, 3, size=(2, 4, 5))
    seg = (rng.normal(size=(2, 4, 5, 3)) * 2).astype("float32")
    dice = keras_ls.SmoothedDice(0.2, from_logits=True, reduction=None)
    out = {"cp": keras.ops.convert_to_numpy(cp(labels, logits)).tolist(),
           "dice": keras.ops.convert_to_numpy(dice(masks, seg)).tolist()}
    # compiled fit with a schedule on beta
    x = rng.normal(size=(16, 4)).astype("float32"); y = rng.integers(0, 3, size=16)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    loss = keras_ls.ConfidencePenaltyCE(0.2, from_logits=True)
    model.compile("sgd", loss)
    h = model.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[
        keras_ls.SmoothingScheduler(keras_ls.schedules.Linear(0.2, 0.0, steps=1))])
    out["sched"] = h.history["beta"]
    out["finite"] = bool(np.all(np.isfinite(h.history["loss"])))
    sys.path.insert(0, sys.argv[2])
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_other_backends(backend):
    pytest.importorskip(backend)
    env = dict(os.environ, KERAS_BACKEND=backend, CUDA_VISIBLE_DEVICES="")
    # One subprocess per backend also runs OnlineSmoothedCE's reference
    # training (tests/test_online.py), as backend start-up dominates.
    from test_online import BACKEND_RUN, check_backend_run

    script = _BACKEND_SCRIPT + BACKEND_RUN + '\nprint("RESULT" + json.dumps(out))\n'
    proc = subprocess.run(
        [sys.executable, "-c", script, backend, os.path.dirname(__file__)],
        env=env, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(s for s in proc.stdout.splitlines() if s.startswith("RESULT"))
    out = json.loads(line[len("RESULT"):])
    rng = np.random.default_rng(0)
    logits = (rng.normal(size=(6, 5)) * 3).astype(np.float32)
    labels = rng.integers(0, 5, size=6)
    masks = rng.integers(0, 3, size=(2, 4, 5))
    seg = (rng.normal(size=(2, 4, 5, 3)) * 2).astype(np.float32)
    np.testing.assert_allclose(
        out["cp"], np_confidence_penalty(labels, logits, 0.3), rtol=RTOL, atol=ATOL
    )
    np.testing.assert_allclose(out["dice"], np_dice(masks, np_softmax(seg), 0.2), rtol=RTOL)
    assert out["sched"] == pytest.approx([0.2, 0.0]) and out["finite"]
    check_backend_run(out["online"], out["resumed"], out["with_metric"])
