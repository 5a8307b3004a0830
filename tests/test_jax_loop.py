"""keras-io's "Writing a training loop from scratch in JAX", with keras-ls losses.

The documented way to change the factor in a hand-written ``jax.jit`` step is the functional
loss with the factor as an argument of the step (traced: no retrace when it changes). A loss
*object* whose factor was compiled in as a constant refuses a new value instead of being
silently ignored. Runs under ``KERAS_BACKEND=jax`` (scripts/test.sh runs it so).
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import keras_ls
from keras_ls.losses import smoothed_crossentropy

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "jax", reason="a hand-written jax.jit loop needs the JAX backend"
)


def _setup():
    import jax

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8)).astype("float32")
    y = rng.integers(0, 4, 64)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    optimizer = keras.optimizers.SGD(0.0)  # lr 0: the logits stay fixed, the loss is exact
    optimizer.build(model.trainable_variables)
    state = (
        [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables],
        optimizer.variables,
    )
    return jax, x, y, model, optimizer, state


def test_functional_loss_with_a_traced_factor_is_the_documented_way():
    jax, x, y, model, optimizer, (tv, ntv, ov) = _setup()
    traces = []

    def loss_and_updates(tv, ntv, x, y, a):
        logits, ntv = model.stateless_call(tv, ntv, x)
        traces.append(1)
        return keras.ops.mean(smoothed_crossentropy(y, logits, a, from_logits=True)), ntv

    grad_fn = jax.value_and_grad(loss_and_updates, has_aux=True)

    @jax.jit
    def train_step(state, x, y, a):
        tv, ntv, ov = state
        (loss, ntv), grads = grad_fn(tv, ntv, x, y, a)
        tv, ov = optimizer.stateless_apply(ov, grads, tv)
        return loss, (tv, ntv, ov)

    state = (tv, ntv, [v.value for v in ov])
    seen = []
    for a in (0.1, 0.0, 0.3):  # a schedule evaluated by the loop, passed as an argument
        loss, state = train_step(state, x, y, np.float32(a))
        seen.append(float(loss))
    logits = keras.ops.convert_to_numpy(model(x))
    want = [
        float(np.mean(keras.ops.convert_to_numpy(
            keras.losses.categorical_crossentropy(np.eye(4)[y], logits, from_logits=True,
                                                  label_smoothing=a))))
        for a in (0.1, 0.0, 0.3)
    ]
    np.testing.assert_allclose(seen, want, rtol=1e-6)
    assert len(traces) == 1  # the factor is traced: one compilation for every value


def test_loss_object_refuses_a_change_it_would_silently_ignore():
    jax, x, y, model, optimizer, (tv, ntv, ov) = _setup()
    loss_fn = keras_ls.SmoothedCE(0.1, from_logits=True)

    @jax.jit
    def compute_loss(tv, ntv, x, y):
        logits, _ = model.stateless_call(tv, ntv, x)
        return loss_fn(y, logits)

    first = float(compute_loss(tv, ntv, x, y))
    want = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)(
        np.eye(4)[y], model(x)
    )
    assert first == pytest.approx(float(want), rel=1e-6)
    with pytest.raises(RuntimeError, match="jax.jit function as a constant"):
        loss_fn.label_smoothing = 0.0
    assert loss_fn.label_smoothing == pytest.approx(0.1)  # unchanged, and still true in the step
    assert float(compute_loss(tv, ntv, x, y)) == pytest.approx(first)
