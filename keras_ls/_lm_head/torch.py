"""torch: the chunked linear head + smoothed CE as a ``torch.autograd.Function``.

A Python loop over token chunks. Forward feeds each chunk's logits to the existing fused
kernel (``keras_ls._backend.torch``) under ``no_grad``; backward recomputes them, takes the
kernel's own gradient (``torch.autograd.grad`` through its ``autograd.Function``, which
writes it over its saved log-probabilities in place) and accumulates ``dW`` / ``db`` in
float32 with in-place ``addmm_`` (no kernel-sized temporary per chunk).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.autograd.function import once_differentiable

from keras_ls._backend import torch as kernel
from keras_ls._backend.common import compute_dtype_name
from keras_ls._lm_head import HeadOptions
from keras_ls._lm_head import head_of_logits as shared_head


def head_of_logits(z: torch.Tensor, y: torch.Tensor, a: torch.Tensor, opt: HeadOptions) -> Any:
    """The shared per-row head (:func:`keras_ls._lm_head.head_of_logits`) with this
    backend's fused kernel."""
    return shared_head(z, y, a, opt, kernel.sparse_smoothed_crossentropy)


def _logits(h_c: torch.Tensor, w: torch.Tensor, b: Any, opt: HeadOptions) -> Any:
    """``h_c @ w + b`` with ``w`` (and ``b``) already in the compute dtype."""
    wt = w.t() if opt.transpose else w
    h_c = h_c.to(w.dtype)
    return torch.mm(h_c, wt) if b is None else torch.addmm(b, h_c, wt)


def _sweep(h, w, b, y, a, g, opt: HeadOptions):
    """Loss per token and, when ``g`` is given, dh, dW, db (float32 accumulation)."""
    compute = getattr(torch, compute_dtype_name(str(h.dtype).split(".")[-1]))
    n = h.shape[0]
    w_in, b_in = w, b
    # Half inputs: one float32 copy of the kernel for the sweep (CPU has no half matmul with
    # a float32 result), so that the logits are float32 sums of exact products.
    w = w.to(compute)
    b = None if b is None else b.to(compute)
    loss = torch.empty(n, dtype=compute, device=h.device)
    dh = dw = db = None
    if g is not None:
        g = g.to(compute)
        dh = torch.empty_like(h)
        dw = torch.zeros(w.shape, dtype=compute, device=w.device)
        db = None if b is None else torch.zeros(b.shape, dtype=compute, device=b.device)
    for start in range(0, n, opt.chunk):
        rows = slice(start, min(start + opt.chunk, n))
        h_c, y_c = h[rows], y[rows]
        z = _logits(h_c, w, b, opt)
        if g is None:
            loss[rows] = head_of_logits(z, y_c, a, opt)
            continue
        with torch.enable_grad():
            z.requires_grad_(True)
            loss_c = head_of_logits(z, y_c, a, opt)
            (dz,) = torch.autograd.grad(loss_c, z, g[rows])
        loss[rows] = loss_c.detach()
        del z
        h32 = h_c.to(compute)
        if opt.transpose:  # w is (V, H)
            dh[rows] = torch.mm(dz, w).to(h.dtype)
            dw.addmm_(dz.t(), h32)
        else:
            dh[rows] = torch.mm(dz, w.t()).to(h.dtype)
            dw.addmm_(h32.t(), dz)
        if db is not None:
            db.add_(dz.sum(dim=0))
    if dw is not None:
        dw = dw.to(w_in.dtype)
        db = None if db is None else db.to(b_in.dtype)
    return loss, dh, dw, db


class _PerToken(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, h, w, b, y, a, u, opt) -> Any:
        ctx.opt = opt
        if not any(ctx.needs_input_grad[:3]):
            ctx.save_for_backward(h, w, b, y, a, u)
            return _sweep(h, w, b, y, a, None, opt)[0]
        # The gradients for the expected upstream gradient u, in the same sweep (3 matmuls).
        loss, dh, dw, db = _sweep(h, w, b, y, a, u, opt)
        ctx.save_for_backward(h, w, b, y, a, u, dh, dw, db)
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g: torch.Tensor) -> Any:
        h, w, b, y, a, u, *grads = ctx.saved_tensors
        g = g.to(u.dtype)
        c = torch.dot(g, u) / torch.dot(u, u).clamp(min=torch.finfo(u.dtype).tiny)
        if grads and bool(((g - c * u).abs() <= 1e-6 * g.abs().max()).all()):
            in_place = kernel._may_overwrite_saved()  # not when the graph is kept

            def scale(x):
                if x is None:
                    return None
                return x.mul_(c.to(x.dtype)) if in_place else x * c.to(x.dtype)

            dh, dw, db = (scale(x) for x in grads)
        else:  # any other upstream gradient (e.g. sample weights): 2 more matmuls
            _, dh, dw, db = _sweep(h, w, b, y, a, g, ctx.opt)
        return dh, dw, db, None, None, None, None


def per_token(h, w, b, y, a, u, opt: HeadOptions) -> torch.Tensor:
    """See :func:`keras_ls._lm_head.linear_head_crossentropy`."""
    h = torch.as_tensor(h)
    compute = getattr(torch, compute_dtype_name(str(h.dtype).split(".")[-1]))
    a = torch.as_tensor(a, dtype=compute, device=h.device).detach()
    u = torch.as_tensor(u, dtype=compute, device=h.device).detach()
    y = torch.as_tensor(y, device=h.device).long()
    b = None if b is None else torch.as_tensor(b)
    return _PerToken.apply(h, torch.as_tensor(w), b, y, a, u, opt)
