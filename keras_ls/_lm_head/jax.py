"""JAX: the chunked linear head + smoothed CE as ``jax.custom_vjp`` over ``lax.map`` / ``lax.scan``.

Forward: ``lax.map`` over token chunks, each chunk's logits fed to the existing fused kernel
(``keras_ls._backend.jax``). Backward: ``lax.scan`` over the same chunks carrying the float32
``dW`` / ``db`` accumulators; each step recomputes the chunk's logits, takes the kernel's own
gradient (``jax.vjp`` of the chunk's head) and emits the chunk's ``dh``.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from keras_ls._backend import jax as kernel
from keras_ls._backend.common import compute_dtype_name
from keras_ls._lm_head import HeadOptions
from keras_ls._lm_head import head_of_logits as shared_head


def head_of_logits(z: jax.Array, y: jax.Array, a: jax.Array, opt: HeadOptions) -> jax.Array:
    """The shared per-row head (:func:`keras_ls._lm_head.head_of_logits`) with this
    backend's fused kernel."""
    return shared_head(z, y, a, opt, kernel.sparse_smoothed_crossentropy)


def _logits(h_c: jax.Array, w: jax.Array, b: Any, opt: HeadOptions, compute: Any) -> jax.Array:
    # Half inputs multiply in their dtype with float32 accumulation (exact products).
    dims = (((1,), (1,)), ((), ())) if opt.transpose else (((1,), (0,)), ((), ()))
    z = jax.lax.dot_general(h_c, w, dims, preferred_element_type=compute)
    return z if b is None else z + b.astype(compute)


def _sweep(h, w, b, y, a, g, opt: HeadOptions):
    """Loss per token and, when ``g`` (per-token upstream gradient) is given, dh, dW, db."""
    compute = jnp.dtype(compute_dtype_name(jnp.dtype(h.dtype).name))
    n, hidden = h.shape
    c = opt.chunk
    chunks = -(-n // c)
    pad = chunks * c - n
    hp = jnp.pad(h, ((0, pad), (0, 0))).reshape(chunks, c, hidden)
    yp = jnp.pad(y, (0, pad)).reshape(chunks, c)
    if g is None:

        def loss_of(xs):
            return head_of_logits(_logits(xs[0], w, b, opt, compute), xs[1], a, opt)

        return jax.lax.map(loss_of, (hp, yp)).reshape(-1)[:n], None, None, None

    gp = jnp.pad(g.astype(compute), (0, pad)).reshape(chunks, c)

    def step(carry, xs):
        dw, db = carry
        h_c, y_c, g_c = xs
        z = _logits(h_c, w, b, opt, compute)
        loss, vjp = jax.vjp(lambda z: head_of_logits(z, y_c, a, opt), z)
        (dz,) = vjp(g_c)
        if opt.transpose:  # w is (V, H)
            dh_c = jnp.matmul(dz.astype(w.dtype), w, preferred_element_type=compute)
            dw = dw + jnp.matmul(dz.T, h_c.astype(compute))
        else:
            dh_c = jnp.matmul(dz.astype(w.dtype), w.T, preferred_element_type=compute)
            dw = dw + jnp.matmul(h_c.astype(compute).T, dz)
        if db is not None:
            db = db + jnp.sum(dz, axis=0)
        return (dw, db), (loss, dh_c.astype(h.dtype))

    init = (
        jnp.zeros(w.shape, compute),
        None if b is None else jnp.zeros(b.shape, compute),
    )
    (dw, db), (loss, dh) = jax.lax.scan(step, init, (hp, yp, gp))
    dh = dh.reshape(chunks * c, hidden)[:n]
    db = None if db is None else db.astype(b.dtype)
    return loss.reshape(-1)[:n], dh, dw.astype(w.dtype), db


def _proportional(g: jax.Array, u: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(c, ok)``: the least-squares ``c`` in ``g ~ c u`` and whether it fits to 1e-6."""
    c = jnp.vdot(g, u) / jnp.maximum(jnp.vdot(u, u), jnp.finfo(g.dtype).tiny)
    return c, jnp.all(jnp.abs(g - c * u) <= 1e-6 * jnp.max(jnp.abs(g)))


@functools.lru_cache(maxsize=64)
def _per_token(opt: HeadOptions) -> Any:
    @jax.custom_vjp
    def f(h, w, b, y, a, u):
        return _sweep(h, w, b, y, a, None, opt)[0]

    def fwd(h, w, b, y, a, u):
        # The gradients for the expected upstream gradient u, in the same sweep (3 matmuls).
        loss, dh, dw, db = _sweep(h, w, b, y, a, u, opt)
        return loss, (h, w, b, y, a, u, dh, dw, db)

    def bwd(res, g):
        h, w, b, y, a, u, dh, dw, db = res
        c, ok = _proportional(g.astype(u.dtype), u)

        def scale(x):
            return None if x is None else (x * c).astype(x.dtype)

        def reuse():
            return scale(dh), scale(dw), scale(db)

        def recompute():  # any other upstream gradient (e.g. sample weights): 2 more matmuls
            return _sweep(h, w, b, y, a, g, opt)[1:]

        dh, dw, db = jax.lax.cond(ok, reuse, recompute)
        return dh, dw, db, None, None, None  # labels, factor, u: never differentiated

    f.defvjp(fwd, bwd)
    return f


def per_token(h, w, b, y, a, u, opt: HeadOptions) -> jax.Array:
    """See :func:`keras_ls._lm_head.linear_head_crossentropy`."""
    h = jnp.asarray(h)
    compute = compute_dtype_name(jnp.dtype(h.dtype).name)
    a = jax.lax.stop_gradient(jnp.asarray(a, compute))
    b = None if b is None else jnp.asarray(b)
    u = jax.lax.stop_gradient(jnp.asarray(u, compute))
    return _per_token(opt)(h, jnp.asarray(w), b, jnp.asarray(y).astype(jnp.int32), a, u)
