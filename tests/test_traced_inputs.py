"""Any mix of traced and concrete inputs, on the Keras backend of this process (issue 17).

Every loss of ``keras_ls.losses`` (classes and functional forms) is called inside the
backend's compiled or transformed functions -- ``jax.jit``/``grad``/``vmap``/``checkpoint``,
``tf.function`` (graph and XLA), ``torch.compile`` (and ``torch.func.grad`` for the losses
that do not use the fused kernel) -- with the labels,
the predictions or both as traced arguments and the others closed over as concrete
arrays, and must give its eager value. Out-of-range labels keep the documented
behaviour: a ``ValueError`` eagerly, NaN inside a compiled step.

One backend per process: ``KERAS_BACKEND=jax pytest tests/test_traced_inputs.py`` (and
``tensorflow``, ``torch``); the other backends' cases skip, naming the reason.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
import pytest
from keras import ops

from keras_ls import losses as L

BACKEND = keras.backend.backend()
B, K = 4, 5
_rng = np.random.default_rng(0)
LOGITS = _rng.normal(size=(B, K)).astype("float32")
LABELS = np.array([1, 0, 4, 2], "int32")
ONE_HOT = np.eye(K, dtype="float32")[LABELS]
MULTI = (_rng.random((B, K)) > 0.5).astype("float32")
SEG_LOGITS = _rng.normal(size=(2, 3, 3, K)).astype("float32")
SEG_LABELS = _rng.integers(0, K, size=(2, 3, 3)).astype("int32")
SOFT = L.initial_soft_targets(K, 0.1)


def _mean(fn: Callable) -> Callable:
    """A functional loss reduced to a scalar (as a Keras reduction would)."""
    return lambda y, z: ops.mean(fn(y, z))


# name -> (make the loss: () -> (y, z) -> scalar, labels, predictions). A class is made
# fresh for every call site, as a user's step would hold it.
CASES: dict[str, tuple[Callable[[], Callable], np.ndarray, np.ndarray]] = {
    "SmoothedCE": (lambda: L.SmoothedCE(0.1, from_logits=True), LABELS, LOGITS),
    "SmoothedCE-onehot": (lambda: L.SmoothedCE(0.1, from_logits=True), ONE_HOT, LOGITS),
    "SmoothedCE-ignore": (
        lambda: L.SmoothedCE(0.1, from_logits=True, ignore_class=0),
        LABELS,
        LOGITS,
    ),
    "SmoothedCE-prior": (
        lambda: L.SmoothedCE(0.2, prior=np.arange(1, K + 1) / (K * (K + 1) / 2), from_logits=True),
        LABELS,
        LOGITS,
    ),
    "SmoothedCE-probs": (
        lambda: L.SmoothedCE(0.1),
        LABELS,
        np.exp(LOGITS) / np.exp(LOGITS).sum(-1, keepdims=True),
    ),
    "smoothed_crossentropy": (
        lambda: _mean(lambda y, z: L.smoothed_crossentropy(y, z, 0.1, from_logits=True)),
        LABELS,
        LOGITS,
    ),
    "SmoothedBCE": (lambda: L.SmoothedBCE(0.1, from_logits=True), MULTI, LOGITS),
    "smoothed_binary_crossentropy": (
        lambda: _mean(lambda y, z: L.smoothed_binary_crossentropy(y, z, 0.1, from_logits=True)),
        MULTI,
        LOGITS,
    ),
    "ConfidencePenaltyCE": (lambda: L.ConfidencePenaltyCE(0.1, from_logits=True), LABELS, LOGITS),
    "confidence_penalty_crossentropy": (
        lambda: _mean(
            lambda y, z: L.confidence_penalty_crossentropy(y, z, 0.1, from_logits=True)
        ),
        LABELS,
        LOGITS,
    ),
    "SmoothedDice": (lambda: L.SmoothedDice(0.1, from_logits=True), SEG_LABELS, SEG_LOGITS),
    "smoothed_dice": (
        lambda: _mean(lambda y, z: L.smoothed_dice(y, z, 0.1, from_logits=True)),
        SEG_LABELS,
        SEG_LOGITS,
    ),
    "OnlineSmoothedCE": (lambda: L.OnlineSmoothedCE(K, 0.5, from_logits=True), LABELS, LOGITS),
    "online_smoothed_crossentropy": (
        lambda: _mean(
            lambda y, z: L.online_smoothed_crossentropy(y, z, SOFT, 0.5, from_logits=True)
        ),
        LABELS,
        LOGITS,
    ),
}
# The losses whose integer labels go through the shared label check (bad-label cases).
SPARSE = [
    "SmoothedCE",
    "SmoothedCE-ignore",
    "smoothed_crossentropy",
    "ConfidencePenaltyCE",
    "SmoothedDice",
    "OnlineSmoothedCE",
    "online_smoothed_crossentropy",
]
# float32 losses of a few ops: XLA/Inductor may fuse and reorder the reductions.
RTOL, ATOL = 2e-5, 1e-6


def _eager(name: str) -> float:
    make, y, z = CASES[name]
    return float(ops.convert_to_numpy(make()(y, z)))


def _bad(name: str) -> np.ndarray:
    """The case's labels with one out of range (K)."""
    y = np.array(CASES[name][1])
    y.reshape(-1)[1] = K
    return y


def _only(backend: str) -> None:
    if BACKEND != backend:
        pytest.skip(f"{backend} case; this process runs KERAS_BACKEND={BACKEND}")


def test_eager_bad_labels_are_an_error():
    for name in SPARSE:
        make, _, z = CASES[name]
        with pytest.raises(ValueError, match=f"label {K}"):
            make()(_bad(name), z)


# ----------------------------------------------------------------------------------- JAX


def _jax_modes() -> dict[str, Callable]:
    """mode -> (loss, y, z) -> the loss value computed that way."""
    import jax

    def value_and_grad(f, y, z, wrap=lambda g: g):
        return jax.value_and_grad(wrap(lambda z: f(y, z)))(z)[0]

    return {
        "jit-logits": lambda f, y, z: jax.jit(lambda z: f(y, z))(z),  # labels closed over
        "jit-labels": lambda f, y, z: jax.jit(lambda y: f(y, z))(y),  # logits closed over
        "jit-both": lambda f, y, z: jax.jit(f)(y, z),
        "grad": value_and_grad,
        "jit-grad": lambda f, y, z: jax.jit(lambda y, z: value_and_grad(f, y, z))(y, z),
        "checkpoint": lambda f, y, z: value_and_grad(f, y, z, jax.checkpoint),
        "jit-checkpoint": lambda f, y, z: jax.jit(
            lambda z: value_and_grad(f, y, z, jax.checkpoint)
        )(z),
        # Two copies along a new leading axis: each must give the eager value.
        "vmap-logits": lambda f, y, z: jax.vmap(lambda z: f(y, z))(np.stack([z, z]))[1],
        "vmap-both": lambda f, y, z: jax.vmap(f)(np.stack([y, y]), np.stack([z, z]))[1],
    }


JAX_MODES = [
    "jit-logits",
    "jit-labels",
    "jit-both",
    "grad",
    "jit-grad",
    "checkpoint",
    "jit-checkpoint",
    "vmap-logits",
    "vmap-both",
]


def _stateless(make: Callable) -> Callable:
    """The loss called as Keras' JAX trainer calls it: state (the factor variable,
    OnlineSmoothedCE's statistics) read from and written to a StatelessScope."""

    def call(y, z):
        loss = make()
        variables = [v for v in getattr(loss, "variables", [])]
        state = getattr(loss, "hyperparameter_state", None)
        if state is not None:
            variables += list(state.variables)
        targets = getattr(loss, "targets", None)
        if targets is not None:
            variables += list(targets.variables)
        with keras.StatelessScope(state_mapping=[(v, v.value) for v in variables]):
            return loss(y, z)

    return call


@pytest.mark.parametrize("mode", JAX_MODES)
@pytest.mark.parametrize("name", list(CASES))
def test_jax(name, mode):
    _only("jax")
    import jax.numpy as jnp

    make, y, z = CASES[name]
    # jax arrays, as a user's step holds them: numpy closures stay numpy under jit.
    got = _jax_modes()[mode](_stateless(make), jnp.asarray(y), jnp.asarray(z))
    np.testing.assert_allclose(np.asarray(got), _eager(name), rtol=RTOL, atol=ATOL)


def test_jax_issue_17_labels_closed_over():
    """The reported case, as written: no StatelessScope, labels a concrete closure."""
    _only("jax")
    import jax
    import jax.numpy as jnp

    loss, labels = L.SmoothedCE(0.1, from_logits=True), jnp.asarray(LABELS)
    got = jax.jit(lambda z: loss(labels, z))(LOGITS)
    np.testing.assert_allclose(np.asarray(got), _eager("SmoothedCE"), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", SPARSE)
def test_jax_bad_labels_are_nan_when_compiled(name):
    _only("jax")
    import jax
    import jax.numpy as jnp

    make, _, z = CASES[name]
    f, y, z = _stateless(make), jnp.asarray(_bad(name)), jnp.asarray(z)
    assert np.isnan(np.asarray(jax.jit(lambda z: f(y, z))(z)))  # labels closed over
    assert np.isnan(np.asarray(jax.jit(f)(y, z)))
    with pytest.raises(ValueError, match=f"label {K}"):  # concrete labels, no staging
        jax.grad(lambda z: f(y, z))(z)


# ---------------------------------------------------------------------------- TensorFlow


def _tf_modes() -> dict[str, Callable]:
    import tensorflow as tf

    def with_grad(f, y, z):
        z = tf.convert_to_tensor(z)
        with tf.GradientTape() as tape:
            tape.watch(z)
            value = f(y, z)
        grad = tape.gradient(value, z)
        return value + 0.0 * tf.reduce_sum(grad)

    return {
        "function-logits": lambda f, y, z: tf.function(lambda z: f(y, z))(z),
        "function-labels": lambda f, y, z: tf.function(lambda y: f(y, z))(y),
        "function-both": lambda f, y, z: tf.function(f)(y, z),
        "function-grad": lambda f, y, z: tf.function(lambda y, z: with_grad(f, y, z))(y, z),
        "xla-logits": lambda f, y, z: tf.function(lambda z: f(y, z), jit_compile=True)(z),
        "xla-grad": lambda f, y, z: tf.function(
            lambda y, z: with_grad(f, y, z), jit_compile=True
        )(y, z),
    }


TF_MODES = ["function-logits", "function-labels", "function-both", "function-grad"]
TF_MODES += ["xla-logits", "xla-grad"]


@pytest.mark.parametrize("mode", TF_MODES)
@pytest.mark.parametrize("name", list(CASES))
def test_tensorflow(name, mode):
    _only("tensorflow")
    import tensorflow as tf

    make, y, z = CASES[name]
    got = _tf_modes()[mode](make(), tf.constant(y), tf.constant(z))
    np.testing.assert_allclose(np.asarray(got), _eager(name), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", SPARSE)
def test_tensorflow_bad_labels_are_nan_when_compiled(name):
    _only("tensorflow")
    import tensorflow as tf

    make, _, z = CASES[name]
    f, y, z = make(), tf.constant(_bad(name)), tf.constant(z)
    assert np.isnan(tf.function(lambda z: f(y, z))(z).numpy())
    assert np.isnan(tf.function(f)(y, z).numpy())


# --------------------------------------------------------------------------------- torch


def _torch_modes() -> dict[str, Callable]:
    import torch

    # aot_eager: Dynamo and AOTAutograd trace everything Inductor would see, without the
    # C++ compile (minutes on a small CPU); "inductor" runs the real compiler on one case.
    def compiled(fn, backend="aot_eager"):
        torch._dynamo.reset()
        return torch.compile(fn, backend=backend)

    def t(x):
        return torch.as_tensor(np.asarray(x))

    def with_grad(f, y, z):
        z = t(z).requires_grad_()
        value = compiled(f)(t(y), z)
        value.backward()
        assert z.grad is not None and torch.isfinite(z.grad).all()
        return value.detach()

    return {
        "compile-logits": lambda f, y, z: compiled(lambda z: f(t(y), z))(t(z)),
        "compile-labels": lambda f, y, z: compiled(lambda y: f(y, t(z)))(t(y)),
        "compile-both": lambda f, y, z: compiled(f)(t(y), t(z)),
        "compile-grad": with_grad,
        "func-grad": lambda f, y, z: torch.func.grad_and_value(lambda z: f(t(y), z))(t(z))[1],
        "inductor": lambda f, y, z: compiled(f, "inductor")(t(y), t(z)),
    }


TORCH_MODES = ["compile-logits", "compile-labels", "compile-both", "compile-grad", "func-grad"]
# torch.func transforms need an autograd.Function written with setup_context; the fused
# cross-entropy kernel (keras_ls/_backend/torch.py) is not (yet): those cases are skipped.
FUNC_KERNEL = {"SmoothedCE", "SmoothedCE-ignore", "SmoothedCE-prior", "SmoothedCE-probs"}
FUNC_KERNEL |= {"smoothed_crossentropy"}


@pytest.mark.parametrize("mode", TORCH_MODES)
@pytest.mark.parametrize("name", list(CASES))
def test_torch(name, mode):
    _only("torch")
    if mode == "func-grad" and name in FUNC_KERNEL:
        pytest.skip("torch.func needs setup_context in the torch kernel's autograd.Function")
    if mode == "func-grad" and name == "OnlineSmoothedCE":
        pytest.skip("a stateful loss: torch.func forbids writing Keras variables in a transform")
    make, y, z = CASES[name]
    got = _torch_modes()[mode](make(), y, z)
    np.testing.assert_allclose(got.detach().numpy(), _eager(name), rtol=RTOL, atol=ATOL)


@pytest.mark.slow
def test_torch_inductor():
    _only("torch")
    make, y, z = CASES["SmoothedCE"]
    got = _torch_modes()["inductor"](make(), y, z)
    np.testing.assert_allclose(got.detach().numpy(), _eager("SmoothedCE"), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", SPARSE)
def test_torch_bad_labels_are_nan_when_compiled(name):
    _only("torch")
    import torch

    torch._dynamo.reset()
    make, _, z = CASES[name]
    f, y, z = make(), torch.as_tensor(_bad(name)), torch.as_tensor(z)
    assert torch.isnan(torch.compile(f, backend="aot_eager")(y, z))
