"""JAX: label-smoothed sparse cross-entropy as a ``jax.custom_vjp``.

Kept over autodiff of the same expression because it is faster inside
``jax.jit`` on XLA:CPU (notes/kernels.md has the numbers): the forward sums
``exp(z - max)`` and ``z - max`` in one variadic reduction, which autodiff
cannot differentiate, and the backward is one elementwise pass over the saved
``exp(z - max)``, which XLA writes into the gradient's own buffer -- no
logits-sized temporary at all. Autodiff of the max-shifted expression
materialises ``z - max`` for its row sum (one extra buffer) and is slower.
The ``-(1 - a)`` at the label is an ``iota == label`` select fused into that
pass; no one-hot is built.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from keras_ls._backend.common import combine, compute_dtype_name


def _add_pairs(x: tuple, y: tuple) -> tuple:
    return (x[0] + y[0], x[1] + y[1])


def _forward(z: jax.Array, y: jax.Array, a: jax.Array, prior: jax.Array | None) -> tuple:
    """Loss and the residuals of the backward pass, all in z's dtype."""
    lowest = float(jnp.finfo(z.dtype).min)
    m = jnp.max(z, axis=-1)
    d = z - m[:, None]  # max-shifted: no sum ever sees the raw offset
    e = jnp.exp(d)
    # clamp: a -inf log-probability times a zero prior weight is 0, not NaN.
    # Weighted before the sum (d / K when uniform), which therefore never
    # overflows for finite logits.
    w = d * (1.0 / z.shape[-1]) if prior is None else jnp.maximum(d, lowest) * prior
    zero = jnp.zeros((), z.dtype)
    s, q = jax.lax.reduce((e, w), (zero, zero), _add_pairs, (1,))
    ls = jnp.log(s)
    d_y = jnp.take_along_axis(z, y[:, None], axis=-1)[:, 0] - m
    loss = combine(d_y - ls, q - ls, a, lowest, jnp.maximum)
    return loss, (e, s, y, a)


@jax.custom_vjp
def _kernel(z: jax.Array, y: jax.Array, a: jax.Array, prior: jax.Array | None) -> jax.Array:
    return _forward(z, y, a, prior)[0]


def _kernel_fwd(z, y, a, prior):
    loss, res = _forward(z, y, a, prior)
    return loss, (*res, prior)


def _kernel_bwd(res, g):
    e, s, y, a, prior = res
    smooth = a / e.shape[-1] if prior is None else a * prior
    hit = jax.lax.broadcasted_iota(y.dtype, e.shape, 1) == y[:, None]
    dz = (e / s[:, None] - smooth - jnp.where(hit, 1 - a, 0)) * g[:, None]
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
