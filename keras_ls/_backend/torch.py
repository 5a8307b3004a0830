"""torch: label-smoothed sparse cross-entropy as a ``torch.autograd.Function``.

Forward: ATen's fused ``log_softmax`` (one kernel, max-shifted internally, as
``F.cross_entropy`` uses), a gather at the labels and one mean (or matvec with
the prior) over the log-probabilities. The log-probabilities are the only
saved buffer. Backward: ``softmax - (1 - a) onehot(y) - a prior`` written over
that buffer in place (``exp_``, one multiply-add, a ``scatter_add_`` of N
values at the labels), so no dense one-hot or target is built and no second
logits-sized buffer is allocated -- on CPU a fresh large buffer costs page
faults that take as long as the arithmetic.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from keras_ls import _compat
from keras_ls._backend.common import combine, compute_dtype_name


class _SparseSmoothedCE(torch.autograd.Function):
    """Per-row smoothed CE for ``(N, K)`` logits in the compute dtype."""

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, y: torch.Tensor, a: torch.Tensor, prior: Any) -> Any:
        lowest = torch.finfo(z.dtype).min
        if torch.compiler.is_compiling():
            # Written out for Inductor, which fuses it into one loop; its own
            # fusion of log_softmax + mean sums outside the max-shifted space.
            d = z - z.amax(dim=1, keepdim=True)
            ls = torch.log(torch.exp(d).sum(dim=1, keepdim=True))
            logp = d - ls
            lp_bar = _row_mean(d, prior, lowest) - ls[:, 0]
        else:
            # ATen's fused kernel, max-shifted inside (the one F.cross_entropy uses).
            logp = torch.log_softmax(z, dim=1)
            lp_bar = _row_mean(logp, prior, lowest)
        lp_y = logp.gather(1, y[:, None]).squeeze(1)
        ctx.save_for_backward(logp, y, a, prior)
        return combine(lp_y, lp_bar, a, lowest, torch.clamp)

    @staticmethod
    @once_differentiable  # second derivatives would silently be wrong: raise instead
    def backward(ctx: Any, g: torch.Tensor) -> Any:
        logp, y, a, prior = ctx.saved_tensors
        if _may_overwrite_saved():
            grad = logp.exp_()  # last use of the saved buffer: reuse it
            grad.mul_(g[:, None])
        else:
            grad = torch.exp(logp) * g[:, None]
        if prior is None:
            grad.sub_((a / logp.shape[1] * g)[:, None])
        else:
            grad.addr_(a * g, prior, alpha=-1)
        grad.scatter_add_(1, y[:, None], (-(1 - a) * g)[:, None])
        return grad, None, None, None


def _row_mean(x: torch.Tensor, prior: torch.Tensor | None, lowest: float) -> torch.Tensor:
    """``<prior, x>`` per row (uniform when ``prior`` is None)."""
    if prior is None:
        return x.mean(dim=1)  # not a gemv with 1/K: its cascade sum is 5-20x more exact
    # clamp: a -inf log-probability times a zero prior weight is 0, not NaN.
    return torch.mv(x.clamp(min=lowest), prior)


def _may_overwrite_saved() -> bool:
    """Whether backward may recycle the saved log-probabilities.

    Not under ``torch.compile`` (Inductor fuses the out-of-place expression
    into one loop anyway) and not when the graph is kept for a second
    backward (``retain_graph=True``), which would read them again.
    """
    return _compat.torch_backward_frees_graph()


def sparse_smoothed_crossentropy(
    logits: Any, labels: Any, label_smoothing: Any, prior: np.ndarray | None = None
) -> torch.Tensor:
    """See :func:`keras_ls._backend.sparse_smoothed_crossentropy`."""
    z = torch.as_tensor(logits)
    compute = getattr(torch, compute_dtype_name(str(z.dtype).split(".")[-1]))
    shape = z.shape[:-1]
    # The upcast stays outside the Function: its backward returns the
    # float32 gradient in the logits' own dtype.
    z = z.reshape(-1, z.shape[-1]).to(compute)
    y = torch.as_tensor(labels, device=z.device).reshape(-1).long()
    a = torch.as_tensor(label_smoothing, dtype=compute, device=z.device).detach()
    p = None if prior is None else torch.as_tensor(prior, dtype=compute, device=z.device)
    return _SparseSmoothedCE.apply(z, y, a, p).reshape(shape)
