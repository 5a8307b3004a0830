"""Checks of ``keras_ls._backend.sparse_smoothed_crossentropy``, shared by every backend.

Each check in ``CHECKS`` takes a :class:`Runner` for the current Keras backend and
asserts against a numpy float64 reference (forward and the analytic gradient).
``tests/test_kernels.py`` runs them in-process on TensorFlow and in one fresh
interpreter per backend for JAX and torch (``KERAS_BACKEND`` is read at import),
via :func:`run_all`.
"""

from __future__ import annotations

import json
import math
import traceback
from collections.abc import Callable

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

F32_MAX = float(np.finfo(np.float32).max)
LN2 = math.log(2.0)


# ----------------------------------------------------------------------------- reference


def reference(z, y, a, prior=None, w=None):
    """float64 loss per row and gradient of ``sum(w * loss)`` (0 log 0 = 0 for the prior)."""
    z = np.asarray(z, np.float64)
    n, k = z.shape
    m = z.max(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", over="ignore"):
        lp = z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))
    pr = np.full(k, 1.0 / k) if prior is None else np.asarray(prior, np.float64)
    rows = np.arange(n)
    with np.errstate(invalid="ignore"):
        bar = np.where(pr > 0, pr * lp, 0.0).sum(axis=1)
    # a weight of 0 drops its term even where that term is -inf
    loss = -(_drop0(1 - a, lp[rows, y]) + _drop0(a, bar))
    w = np.ones(n) if w is None else np.asarray(w, np.float64)
    grad = np.exp(lp) - a * pr
    grad[rows, y] -= 1 - a
    return loss, grad * w[:, None]


def _drop0(weight, term):
    return np.zeros_like(term) if weight == 0 else weight * term


# ----------------------------------------------------------------------------- backends


class Runner:
    """Evaluate the kernel on one backend: loss and ``d sum(w * loss) / dz``.

    ``mode``: ``"eager"`` everywhere; ``"graph"``/``"xla"`` on TF
    (``tf.function``, ``jit_compile=True``), ``"jit"`` on JAX, ``"compile"`` on
    torch (``torch.compile(fullgraph=True)``: a graph break raises).
    Returns float64 numpy loss and gradient, the dtype names of both, and the
    logits as the backend saw them (rounded to ``dtype``), in float64.
    """

    modes: tuple[str, ...] = ("eager",)
    dtypes: tuple[str, ...] = ("float16", "bfloat16", "float32")

    def __init__(self):
        import keras

        from keras_ls._backend import sparse_smoothed_crossentropy

        self.backend = keras.backend.backend()
        self.kernel = sparse_smoothed_crossentropy

    def __call__(self, z, y, a, prior=None, w=None, dtype="float32", mode="eager", a_tensor=False):
        z = np.asarray(z, np.float32 if dtype != "float64" else np.float64)
        y = np.asarray(y, np.int32)
        w = np.ones(len(y)) if w is None else np.asarray(w)
        return getattr(self, f"_{self.backend}")(z, y, a, prior, w, dtype, mode, a_tensor)

    def forward_only(self, z, y, a) -> np.ndarray:
        """The loss alone, for logits of any rank, through ``keras.ops`` tensors."""
        from keras import ops

        loss = self.kernel(ops.convert_to_tensor(z), ops.convert_to_tensor(y, "int32"), a)
        return np.asarray(ops.convert_to_numpy(loss), np.float64)

    def _tensorflow(self, z, y, a, prior, w, dtype, mode, a_tensor):
        import tensorflow as tf

        zt = tf.cast(tf.constant(z), dtype)
        at = tf.constant(a, tf.float32) if a_tensor else a
        wt = tf.constant(w, tf.float32 if dtype != "float64" else tf.float64)

        def step(zt, yt):
            with tf.GradientTape() as tape:
                tape.watch(zt)
                loss = self.kernel(zt, yt, at, prior)
                total = tf.reduce_sum(tf.cast(wt, loss.dtype) * loss)
            return loss, tape.gradient(total, zt)

        if mode != "eager":
            step = tf.function(step, jit_compile=mode == "xla")
        loss, grad = step(zt, tf.constant(y))
        return _out(loss.numpy(), grad.numpy(), loss.dtype.name, grad.dtype.name, zt.numpy())

    def _jax(self, z, y, a, prior, w, dtype, mode, a_tensor):
        import jax
        import jax.numpy as jnp

        zt = jnp.asarray(z).astype(dtype)
        at = jnp.asarray(a, jnp.float32) if a_tensor else a

        def step(zt, yt, wt):
            loss, vjp = jax.vjp(lambda v: self.kernel(v, yt, at, prior), zt)
            (grad,) = vjp(wt.astype(loss.dtype))
            return loss, grad

        def jitted(zt, yt, wt):  # jax.grad inside jax.jit, as a train step does
            def total(v):
                loss = self.kernel(v, yt, at, prior)
                return jnp.sum(wt.astype(loss.dtype) * loss), loss

            grad, loss = jax.jit(jax.grad(total, has_aux=True))(zt)
            return loss, grad

        run = jitted if mode == "jit" else step
        loss, grad = run(zt, jnp.asarray(y), jnp.asarray(w, jnp.float32))
        return _out(loss, grad, loss.dtype.name, grad.dtype.name, zt)

    def _torch(self, z, y, a, prior, w, dtype, mode, a_tensor):
        import torch

        zt = torch.tensor(z).to(getattr(torch, dtype)).requires_grad_()
        at = torch.tensor(a) if a_tensor else a
        yt = torch.tensor(y)

        def fn(v):
            return self.kernel(v, yt, at, prior)

        if mode == "compile":
            torch._dynamo.reset()
            fn = torch.compile(fn, fullgraph=True)
        loss = fn(zt)
        (grad,) = torch.autograd.grad(loss, zt, torch.tensor(w, dtype=loss.dtype))
        name = str(loss.dtype).split(".")[-1]
        return _out(loss.detach(), grad, name, str(grad.dtype).split(".")[-1], zt.detach())


class TensorflowRunner(Runner):
    modes = ("eager", "graph", "xla")
    dtypes = ("float16", "bfloat16", "float32", "float64")


class JaxRunner(Runner):
    modes = ("eager", "jit")


class TorchRunner(Runner):
    modes = ("eager", "compile")
    dtypes = ("float16", "bfloat16", "float32", "float64")


def make_runner() -> Runner:
    import keras

    return {"tensorflow": TensorflowRunner, "jax": JaxRunner, "torch": TorchRunner}[
        keras.backend.backend()
    ]()


def _out(loss, grad, loss_dtype, grad_dtype, z_used):
    return {
        "loss": _to_f64(loss),
        "grad": _to_f64(grad),
        "loss_dtype": loss_dtype,
        "grad_dtype": grad_dtype,
        "z": _to_f64(z_used),
    }


def _to_f64(x) -> np.ndarray:
    if hasattr(x, "detach"):  # torch (bfloat16 has no numpy dtype)
        return x.detach().double().numpy()
    return np.asarray(np.asarray(x).astype(np.float64))


def _close(got, want, rtol, atol, what):
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=what)


# ----------------------------------------------------------------------------- checks

CHECKS: dict[str, Callable[[Runner], None]] = {}


def check(fn):
    CHECKS[fn.__name__] = fn
    return fn


@st.composite
def _problem(draw):
    # few distinct shapes: each one compiles anew on JAX
    n = draw(st.sampled_from([1, 3]))
    k = draw(st.sampled_from([1, 2, 7, 33]))
    scale = draw(st.sampled_from([0.1, 3.0, 50.0]))
    offset = draw(st.sampled_from([0.0, -30.0, 1e4]))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    z = (rng.normal(size=(n, k)) * scale + offset).astype(np.float32)
    y = rng.integers(0, k, n)
    a = draw(st.sampled_from([0.0, 0.1, 1.0]) | st.floats(0.0, 1.0))
    prior = rng.dirichlet(np.ones(k)) if draw(st.booleans()) else None
    w = rng.normal(size=n)
    return z, y, a, prior, w


@check
def random_problems(run):
    """Random shapes, K (1 to 33), offsets up to 1e4, factors and priors, float32."""

    @settings(
        max_examples=30,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(_problem())
    def inner(problem):
        z, y, a, prior, w = problem
        out = run(z, y, a, prior, w)
        loss, grad = reference(out["z"], y, a, prior, w)
        # float32 rounding of the max-shifted terms: the raw offset never enters.
        spread = np.abs(out["z"] - out["z"].max(1, keepdims=True)).max() + 1.0
        _close(out["loss"], loss, 2e-6, 2e-6 * spread, "loss")
        _close(out["grad"], grad, 1e-5, 1e-6, "grad")

    inner()


@check
def compiled_modes(run):
    """Graph/XLA (TF), jax.jit, torch.compile(fullgraph=True) equal the reference."""
    rng = np.random.default_rng(1)
    z = (rng.normal(size=(6, 11)) * 4).astype(np.float32)
    y = rng.integers(0, 11, 6)
    w = rng.normal(size=6)
    prior = rng.dirichlet(np.ones(11))
    for mode in run.modes:
        for p in (None, prior):
            out = run(z, y, 0.1, p, w, mode=mode, a_tensor=True)
            loss, grad = reference(out["z"], y, 0.1, p, w)
            _close(out["loss"], loss, 1e-6, 1e-6, f"loss {mode}")
            _close(out["grad"], grad, 1e-5, 1e-6, f"grad {mode}")


@check
def large_k_smoothing_term(run):
    """K = 4096, a = 1 (the smoothing term alone): float32-exact with or without an offset.

    XLA paths sum raw logits when that is as exact and the max-shifted logits
    otherwise (a common offset of 1e4 or -50); a raw sum at the 1e4 offset is
    off by ~1e-4 relative, far outside this tolerance.
    """
    rng = np.random.default_rng(6)
    base = rng.normal(size=(4, 4096)) * 3
    y = rng.integers(0, 4096, 4)
    prior = rng.dirichlet(np.ones(4096))
    for offset in (0.0, 1e4, -50.0):
        z = (base + offset).astype(np.float32)
        for mode in run.modes:
            for p in (None, prior):
                out = run(z, y, 1.0, p, mode=mode)
                loss, grad = reference(out["z"], y, 1.0, p)
                _close(out["loss"], loss, 2e-6, 0, f"loss offset={offset} {mode}")
                _close(out["grad"], grad, 1e-5, 1e-8, f"grad offset={offset} {mode}")


@check
def num_classes_1_and_2(run):
    """K = 1 gives 0 and a zero gradient; K = 2 matches the reference."""
    for a in (0.0, 0.1, 1.0):
        out = run([[3.0], [-1e4]], [0, 0], a)
        assert np.all(out["loss"] == 0.0) and np.all(out["grad"] == 0.0), out
        out = run([[0.3, -1.2], [2.0, 2.0]], [1, 0], a)
        loss, grad = reference(out["z"], [1, 0], a)
        _close(out["loss"], loss, 1e-6, 0, f"loss a={a}")
        _close(out["grad"], grad, 1e-6, 1e-7, f"grad a={a}")


@check
def equal_logits_1e4_give_ln2(run):
    """Equal logits +-1e4 with K = 2: ln 2 to float32 rounding, for every a and mode."""
    z = [[1e4, 1e4], [-1e4, -1e4], [3e38, 3e38]]
    for mode in run.modes:
        for a in (0.0, 0.1, 1.0):
            out = run(z, [0, 1, 0], a, mode=mode)
            assert np.all(np.abs(out["loss"] - LN2) <= 1e-7 * 2), (mode, a, out["loss"])
            _close(out["grad"], reference(out["z"], [0, 1, 0], a)[1], 0, 1e-7, "grad")


@check
def opposite_logits_1e4_exact(run):
    """[1e4, -1e4]: finite and exact (a * 1e4 at the top class, (1 - a/2) 2e4 below)."""
    for mode in run.modes:
        for a in (0.0, 0.1, 1.0):
            out = run([[1e4, -1e4], [1e4, -1e4]], [0, 1], a, mode=mode)
            want = np.array([a * 1e4, (1 - a) * 2e4 + a * 1e4])
            _close(out["loss"], want, 1e-7, 0, f"{mode} a={a}")
            _close(out["grad"], reference(out["z"], [0, 1], a)[1], 0, 1e-7, "grad")


@check
def float_extremes_never_nan(run):
    """Logits up to +-3e38: exact while ``sum(max - z)`` fits in float32, finite beyond.

    Past that (e.g. a row spanning more than 3.4e38) a log-probability term
    saturates at -3.4e38: the loss is then capped near ``a * 3.4e38`` or
    ``(1 - a) * 3.4e38`` instead of an unrepresentable or lost exact value.
    """
    z = np.array(
        [[3e38, 2.5e38, 2e38], [-3e38, -2.5e38, -2e38], [3e38, -3e38, 0.0], [-3e38, 3e38, 3e38]],
        np.float32,
    )
    y = [1, 0, 0, 0]
    for mode in run.modes:
        for a in (0.0, 0.1, 1.0):
            out = run(z, y, a, mode=mode)
            loss, grad = reference(out["z"], y, a)
            assert np.all(np.isfinite(out["loss"])) and np.all(np.isfinite(out["grad"])), out
            _close(out["loss"][:2], loss[:2], 1e-6, 0, f"in range {mode} a={a}")
            assert np.all(out["loss"][2:] <= F32_MAX) and np.all(out["loss"][2:] >= 0)
            _close(out["grad"], grad, 0, 1e-7, f"grad {mode} a={a}")


@check
def minus_inf_logits(run):
    """-inf logits (masked classes): probability 0, gradient exact, never NaN.

    The loss is exact wherever the target puts no mass on them (``a = 0``, or a
    prior that is 0 there); otherwise the true loss is +inf and the saturated
    term gives a finite loss of at least ``a * prior * 3.4e38``.
    """
    inf = np.inf
    z = np.array([[0.5, -inf, 1.0], [-inf, 2.0, -1.0]], np.float32)
    y = [0, 2]
    prior = np.array([0.5, 0.0, 0.5])
    for mode in run.modes:
        for a in (0.0, 0.1, 1.0):
            out = run(z, y, a, prior, mode=mode)
            loss, grad = reference(out["z"], y, a, prior)
            _close(out["loss"][0], loss[0], 1e-6, 0, f"prior zero at -inf {mode} a={a}")
            _close(out["grad"], grad, 1e-6, 1e-7, f"grad {mode} a={a}")
            out = run(z, y, a, None, mode=mode)
            loss, grad = reference(out["z"], y, a, None)
            _close(out["grad"], grad, 1e-6, 1e-7, f"grad uniform {mode} a={a}")
            if a == 0:
                _close(out["loss"], loss, 1e-6, 0, f"a=0 {mode}")
            else:
                assert np.all(np.isfinite(out["loss"])), out["loss"]
                assert np.all(out["loss"] >= a / 3 * F32_MAX * 0.999), out["loss"]


@check
def nan_logits_give_nan(run):
    """A NaN logit makes its own row's loss NaN (never a plausible number)."""
    out = run([[0.0, np.nan, 1.0], [0.0, 1.0, 2.0]], [0, 0], 0.1)
    assert np.isnan(out["loss"][0]) and np.isfinite(out["loss"][1]), out["loss"]


@check
def factor_as_tensor_equals_float(run):
    """a as a 0-d tensor gives the float's result, and a = 0 / 1 are the two end terms."""
    rng = np.random.default_rng(2)
    z = (rng.normal(size=(5, 9)) * 3).astype(np.float32)
    y = rng.integers(0, 9, 5)
    for a in (0.0, 0.1, 1.0):
        by_float, by_tensor = run(z, y, a), run(z, y, a, a_tensor=True)
        np.testing.assert_array_equal(by_float["loss"], by_tensor["loss"])
        np.testing.assert_array_equal(by_float["grad"], by_tensor["grad"])
    lp = reference(z, y, 0.0)[0]  # -log p_y
    nll = run(z, y, 0.0)["loss"]
    _close(nll, lp, 1e-6, 0, "a = 0 is the NLL")
    bar = -(reference(z, y, 1.0)[0])  # mean log p
    _close(run(z, y, 1.0)["loss"], -bar, 1e-6, 0, "a = 1 is -mean log p")


@check
def dtypes_and_gradient_dtype(run):
    """float16/bfloat16 computed in float32 (loss float32, gradient in the logits' dtype)."""
    rng = np.random.default_rng(3)
    z = (rng.normal(size=(8, 300)) * 4).astype(np.float32)
    y = rng.integers(0, 300, 8)
    prior = rng.dirichlet(np.ones(300))
    # half-precision gradients: one rounding of a float32 value to the dtype
    grad_tol = {"float16": 1e-3, "bfloat16": 8e-3, "float32": 3e-6, "float64": 1e-12}
    cases = [(dtype, p, "eager") for dtype in run.dtypes for p in (None, prior)]
    cases += [("bfloat16", None, mode) for mode in run.modes[1:]]  # compiled too
    for dtype, p, mode in cases:
        out = run(z, y, 0.1, p, dtype=dtype, mode=mode)
        want_loss = "float64" if dtype == "float64" else "float32"
        assert out["loss_dtype"] == want_loss, (dtype, out["loss_dtype"])
        assert out["grad_dtype"] == dtype, (dtype, out["grad_dtype"])
        loss, grad = reference(out["z"], y, 0.1, p)  # on the rounded logits
        rtol = 1e-12 if dtype == "float64" else 1e-6
        _close(out["loss"], loss, rtol, 0, f"loss {dtype} {mode}")
        scale = np.abs(grad).max()
        _close(out["grad"], grad, 0, grad_tol[dtype] * scale, f"grad {dtype} {mode}")


@check
def leading_dims_flattened(run):
    """(B, T, K) logits with (B, T) labels give the (B, T) per-position loss."""
    rng = np.random.default_rng(4)
    z = (rng.normal(size=(2, 3, 5)) * 2).astype(np.float32)
    y = rng.integers(0, 5, (2, 3))
    got = run.forward_only(z, y, 0.2)
    assert got.shape == (2, 3), got.shape
    loss, _ = reference(z.reshape(6, 5), y.reshape(6), 0.2)
    _close(got.reshape(6), loss, 1e-6, 0, "per position")


# ----------------------------------------------------------------------------- driver


def run_all(names=None) -> dict[str, str]:
    """Run the checks on the current backend: ``{name: "ok" or the failure}``."""
    run = make_runner()
    results = {}
    for name in names or CHECKS:
        try:
            CHECKS[name](run)
            results[name] = "ok"
        except Exception:  # noqa: BLE001 - reported to the parent test, not swallowed
            results[name] = traceback.format_exc(limit=6)
    return results


if __name__ == "__main__":
    print(json.dumps(run_all()))
