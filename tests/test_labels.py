"""The one label path (keras_ls/losses/_labels.py): every shape rule, tested once, and bad labels.

Bad labels never give a plausible loss: an eager call raises a ValueError naming the label
and K on every backend; inside a compiled step (where no backend can raise) the loss is NaN,
so TerminateOnNaN stops the run.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops
from keras.src.backend import get_keras_mask
from ls_reference import np_smoothed_ce, run_python

import keras_ls
from keras_ls.losses._labels import binary_targets, canonicalize

Z = np.zeros((2, 3, 5), "float32")  # (B, T, K)


# -- the shape rule ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "y_shape, axis, sparse",
    [
        ((2, 3), -1, True),  # y_pred without the class axis
        ((2, 3, 1), -1, True),  # ... with a size-1 class axis
        ((2, 3, 5), -1, False),  # y_pred's shape: one-hot / soft
        ((2, 5), 1, True),  # channels-first: class axis 1 of (2, 3, 5) is 3
    ],
)
def test_rule(y_shape, axis, sparse):
    y_pred = Z if axis == -1 else np.zeros((2, 3, 5), "float32")
    y = np.zeros(y_shape, "int32")
    got = canonicalize(y, y_pred, axis=axis)
    assert got.sparse is sparse
    k = 5 if axis == -1 else 3
    assert got.num_classes == k
    assert tuple(got.y_pred.shape)[-1] == k  # class axis moved last
    if sparse:
        assert tuple(got.labels.shape) == tuple(got.y_pred.shape)[:-1]
        assert keras.backend.standardize_dtype(got.labels.dtype) == "int32"
    else:
        assert tuple(got.target.shape) == tuple(got.y_pred.shape)


def test_rule_rejects_everything_else():
    with pytest.raises(ValueError, match=r"fits neither.*y_true.shape=\(2, 3, 5, 1\)"):
        canonicalize(np.zeros((2, 3, 5, 1)), Z)  # rank matches neither form
    with pytest.raises(ValueError, match=r"must match `y_pred` without its class axis"):
        canonicalize(np.zeros((2, 4), "int32"), Z)
    with pytest.raises(ValueError, match="takes integer labels"):
        canonicalize(np.zeros((2, 3, 5)), Z, dense=False)
    with pytest.raises(ValueError, match="`ignore_class` applies to integer labels"):
        canonicalize(np.zeros((2, 3, 5)), Z, ignore_class=0)
    with pytest.raises(ValueError, match="a class axis"):
        canonicalize(np.zeros(()), np.zeros(()))
    with pytest.raises(ValueError, match="a batch and a class axis"):
        canonicalize(np.zeros(()), np.zeros((3,)), min_rank=2)
    with pytest.raises(ValueError, match="`axis`=3 is out of range"):
        canonicalize(np.zeros((2, 3)), Z, axis=3)
    if keras.backend.backend() == "tensorflow":  # the one backend with string tensors
        with pytest.raises(TypeError, match="integer labels; received dtype string"):
            canonicalize(tf.constant([["a"] * 3] * 2), Z)


def test_k1_size_one_class_axis_is_dense():
    # (B, 1) labels for (B, 1) predictions cannot be integer labels of 1 class: dense.
    assert canonicalize(np.ones((4, 1)), np.ones((4, 1), "float32")).sparse is False


def test_ignore_class_mask():
    y = np.array([[1, -1, 4], [-1, -1, 0]])
    got = canonicalize(y, Z, ignore_class=-1)
    np.testing.assert_array_equal(ops.convert_to_numpy(got.valid), y != -1)
    np.testing.assert_array_equal(ops.convert_to_numpy(got.labels), np.where(y == -1, 0, y))
    loss = got.finish(ops.ones((2, 3)))
    np.testing.assert_array_equal(ops.convert_to_numpy(loss), (y != -1).astype("float32"))
    np.testing.assert_array_equal(get_keras_mask(loss), y != -1)


def test_binary_rule():
    t, p = binary_targets(np.array([1, 0]), np.zeros((2, 1), "float32"))
    assert tuple(t.shape) == (2, 1) and keras.backend.standardize_dtype(t.dtype) == "float32"
    t, _ = binary_targets(np.ones((2, 3)), np.zeros((2, 3), "float32"))
    assert tuple(t.shape) == (2, 3)
    with pytest.raises(ValueError, match=r"shape of `y_pred` .*y_true.shape=\(2,\)"):
        binary_targets(np.ones((2,)), np.zeros((2, 3), "float32"))


# -- label dtypes -----------------------------------------------------------------------
def test_float_labels_that_cannot_hold_the_classes_are_an_error():
    z = np.zeros((2, 300), "float32")
    with pytest.raises(ValueError, match=r"bfloat16.*only up to 256.*labels up to 299"):
        keras_ls.losses.smoothed_crossentropy(tf.constant([1, 299], tf.bfloat16), z)
    with pytest.raises(ValueError, match=r"float16.*only up to 2048"):
        keras_ls.losses.smoothed_crossentropy(
            tf.constant([1, 2], tf.float16), np.zeros((2, 3000), "float32")
        )
    # float32 holds every class id up to 2**24: fine
    keras_ls.losses.smoothed_crossentropy(tf.constant([1.0, 299.0]), z)


def test_integer_labels_stay_integers_under_a_bfloat16_loss():
    """Keras' Loss.__call__ casts labels to the loss dtype (299 -> 300 in bfloat16)."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=(4, 300)).astype("float32")
    y = np.array([299, 257, 3, 298])
    got = float(keras_ls.SmoothedCE(0.1, from_logits=True, dtype="bfloat16")(y, z))
    # bfloat16 logits (8 bits of mantissa), exact labels
    want = np_smoothed_ce(y, tf.cast(tf.cast(z, tf.bfloat16), tf.float32).numpy(), 0.1)
    assert got == pytest.approx(want, rel=2e-2)
    assert np.isfinite(got)


# -- out-of-range and non-integer labels ------------------------------------------------
LOSSES = {
    "ce": lambda: keras_ls.SmoothedCE(0.1, from_logits=True),
    "cp": lambda: keras_ls.ConfidencePenaltyCE(0.1, from_logits=True),
    "online": lambda: keras_ls.OnlineSmoothedCE(10, from_logits=True),
}


@pytest.mark.parametrize("kind", sorted(LOSSES))
@pytest.mark.parametrize("label", [99, 10, -1])
def test_eager_call_names_the_label_and_k(kind, label):
    z = np.zeros((3, 10), "float32")
    with pytest.raises(ValueError, match=rf"label {label} at index \(1,\), outside \[0, 10\)"):
        LOSSES[kind]()([0, label, 1], z)


def test_eager_errors_for_dice_and_non_integer_labels():
    with pytest.raises(ValueError, match=r"label 7 .*outside \[0, 3\) or 255"):
        keras_ls.SmoothedDice(ignore_class=255)(np.full((1, 2, 2), 7), np.zeros((1, 2, 2, 3)))
    with pytest.raises(ValueError, match=r"label 1.5 "):
        keras_ls.SmoothedCE()(np.array([0.0, 1.5]), np.full((2, 3), 1 / 3, "float32"))
    # ignore_class may lie outside [0, K): those positions are fine
    keras_ls.SmoothedCE(ignore_class=-1)(np.array([0, -1]), np.full((2, 3), 1 / 3, "float32"))


@pytest.mark.parametrize("jit_compile", [False, True])
def test_compiled_step_gives_nan(jit_compile):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("tf.function case (jax.jit and torch.compile: test_traced_inputs.py)")
    loss = keras_ls.SmoothedCE(0.1, from_logits=True)
    fn = tf.function(lambda y, z: loss(y, z), jit_compile=jit_compile)
    z = tf.zeros((3, 10))
    assert np.isnan(float(fn(tf.constant([0, 99, 1]), z)))
    assert np.isnan(float(fn(tf.constant([0, -1, 1]), z)))
    assert np.isfinite(float(fn(tf.constant([0, 9, 1]), z)))


BACKEND_SCRIPT = r"""
import json, numpy as np, keras, keras_ls
BACKEND = keras.backend.backend()
out = {}
z = np.zeros((3, 10), "float32")
for label in (99, -1):
    try:
        keras_ls.SmoothedCE(from_logits=True)([0, label, 1], z)
        out[f"eager_{label}"] = "no error"
    except ValueError as e:
        out[f"eager_{label}"] = str(e)
loss = keras_ls.SmoothedCE(from_logits=True)
if BACKEND == "jax":
    import jax
    fn = jax.jit(lambda y, p: loss(y, p))
else:
    import torch
    fn = torch.compile(lambda y, p: loss(y, p), fullgraph=True)
T = keras.ops.convert_to_tensor  # a compiled step sees backend tensors
out["compiled"] = [float(keras.ops.convert_to_numpy(fn(T(np.array(y)), T(z))))
                   for y in ([0, 99, 1], [0, -1, 1], [0, 9, 1])]
# in fit: the loss turns NaN and TerminateOnNaN stops the run at the first bad batch
x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
y = np.arange(32) % 10
y[20] = 99
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(10)])
model.compile("sgd", keras_ls.SmoothedCE(from_logits=True), jit_compile=True)
seen = []
class Spy(keras.callbacks.Callback):
    def on_train_batch_end(self, b, logs=None): seen.append(float(logs["loss"]))
model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0,
          callbacks=[Spy(), keras.callbacks.TerminateOnNaN()])
out["fit"] = seen
# run eagerly (torch's default), the step raises the eager error instead
model.compile("sgd", keras_ls.SmoothedCE(from_logits=True), run_eagerly=True)
try:
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    out["eager_fit"] = "no error"
except ValueError as e:
    out["eager_fit"] = str(e)
print("RESULT" + json.dumps(out))
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_bad_labels_other_backends(backend):
    raw = run_python(BACKEND_SCRIPT, env={"KERAS_BACKEND": backend})
    out = json.loads(next(ln for ln in raw.splitlines() if ln.startswith("RESULT"))[6:])
    assert "label 99 at index (1,), outside [0, 10)" in out["eager_99"]
    assert "label -1 at index (1,), outside [0, 10)" in out["eager_-1"]
    bad99, bad_neg, good = out["compiled"]
    assert np.isnan(bad99) and np.isnan(bad_neg) and np.isfinite(good)
    # batches 0-1 are fine, batch 2 holds label 99: NaN there, then TerminateOnNaN stops
    assert np.all(np.isfinite(out["fit"][:2])) and np.isnan(out["fit"][2])
    assert len(out["fit"]) == 3
    assert "label 99 at index (4,), outside [0, 10)" in out["eager_fit"]


def test_terminate_on_nan_stops_a_tf_fit():
    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    y = np.arange(32) % 10
    y[20] = 99
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(10)])
    model.compile("sgd", keras_ls.SmoothedCE(from_logits=True), jit_compile=True)
    hist = model.fit(
        x,
        y,
        batch_size=8,
        epochs=3,
        shuffle=False,
        verbose=0,
        callbacks=[keras.callbacks.TerminateOnNaN()],
    )
    assert len(hist.history["loss"]) == 1 and np.isnan(hist.history["loss"][0])
