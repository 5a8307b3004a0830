"""JAX: label-smoothed sparse cross-entropy as a ``jax.custom_vjp``.

Forward: one max, ``e = exp(z - max)`` (kept: XLA writes the gradient into
its buffer), the row sum of ``e`` and the smoothing term ``<prior, z - max>``
(see :func:`_smoothing_term`). Backward: the gradient
``(e / sum(e) - a prior - (1 - a) [iota == y]) g`` in one elementwise pass;
the ``iota == label`` select fuses into it, so no one-hot is built and no
logits-sized temporary is left (XLA ``memory_analysis``: 0 buffers).

Kept over autodiff of the same forward because it is faster inside
``jax.jit`` (``benchmarks/loss_speed.py``, variant ``autodiff``; numbers in
notes/kernels.md): autodiff turns the label gather into a scatter pass and
differentiates through the max.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from keras_ls._backend.common import RAW_SUM_GUARD, combine, compute_dtype_name


def _smoothing_term(z: jax.Array, m: jax.Array, prior: jax.Array | None) -> jax.Array:
    """``<prior, z - max>`` per row, to float32 rounding of the shifted sum.

    XLA:CPU's fast reductions take materialised inputs only, so the shifted sum
    costs a logits-sized buffer or a slow loop reduction (30-40% of the step).
    The raw sum is used when it is as exact (``RAW_SUM_GUARD``); otherwise,
    and for any non-finite raw sum, ``lax.cond`` runs the shifted one. A
    weighted sum (``d / K`` when uniform) never overflows for finite logits;
    the clamp makes a -inf log-probability times a zero prior weight 0.
    """
    k = z.shape[-1]
    raw = jnp.sum(z, axis=-1) * (1.0 / k) if prior is None else z @ prior
    fast = raw - m

    def shifted() -> jax.Array:
        d = z - m[:, None]
        if prior is None:
            return jnp.sum(d * (1.0 / k), axis=-1)
        return jnp.sum(jnp.maximum(d, jnp.finfo(z.dtype).min) * prior, axis=-1)

    # NaN compares False: a non-finite raw sum takes the shifted branch.
    exact_enough = jnp.all(jnp.abs(m) <= -RAW_SUM_GUARD * fast)
    return jax.lax.cond(exact_enough, lambda: fast, shifted)


def forward(z: jax.Array, y: jax.Array, a: jax.Array, prior: jax.Array | None) -> tuple:
    """Per-row loss and the backward's residuals, for ``(N, K)`` logits in the compute dtype.

    Public within the package so that ``benchmarks/loss_speed.py`` can time
    autodiff of this very forward against the ``custom_vjp``.
    """
    m = jnp.max(z, axis=-1)
    e = jnp.exp(z - m[:, None])  # max-shifted: no overflow, ln 2 at equal logits
    s = jnp.sum(e, axis=-1)
    ls = jnp.log(s)
    d_y = jnp.take_along_axis(z, y[:, None], axis=-1)[:, 0] - m
    q = _smoothing_term(z, m, prior)
    loss = combine(d_y - ls, q - ls, a, float(jnp.finfo(z.dtype).min), jnp.maximum)
    return loss, (e, s, y, a)


@jax.custom_vjp
def _kernel(z: jax.Array, y: jax.Array, a: jax.Array, prior: jax.Array | None) -> jax.Array:
    return forward(z, y, a, prior)[0]


def _kernel_fwd(z, y, a, prior):
    loss, res = forward(z, y, a, prior)
    return loss, (*res, prior)


def _kernel_bwd(res, g):
    e, s, y, a, prior = res
    smooth = a / e.shape[-1] if prior is None else a * prior
    hit = jax.lax.broadcasted_iota(y.dtype, e.shape, 1) == y[:, None]
    dz = e * (g / s)[:, None] - (smooth + jnp.where(hit, 1 - a, 0)) * g[:, None]
    # a (the smoothing factor) and the prior are constants: never differentiated.
    return dz, None, None, None


_kernel.defvjp(_kernel_fwd, _kernel_bwd)


def sparse_smoothed_crossentropy(
    logits: Any, labels: Any, label_smoothing: Any, prior: np.ndarray | None = None
) -> jax.Array:
    """See :func:`keras_ls._backend.sparse_smoothed_crossentropy`."""
    z = jnp.asarray(logits)
    compute = compute_dtype_name(z.dtype.name)
    shape = z.shape[:-1]
    # The upcast stays outside the custom_vjp: its transpose returns the
    # float32 gradient in the logits' own dtype.
    z = z.reshape(-1, z.shape[-1]).astype(compute)
    y = jnp.asarray(labels).reshape(-1).astype(jnp.int32)
    a = jax.lax.stop_gradient(jnp.asarray(label_smoothing, compute))
    p = None if prior is None else jnp.asarray(prior, compute)
    return _kernel(z, y, a, p).reshape(shape)
