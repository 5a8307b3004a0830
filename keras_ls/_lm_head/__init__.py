"""Chunked linear head + label-smoothed cross-entropy, one implementation per Keras backend.

Private: :func:`keras_ls.losses.linear_smoothed_crossentropy` validates its arguments and
calls :func:`linear_head_crossentropy` on flat ``(N, H)`` hidden states and ``(N,)`` labels.
Each backend module walks the tokens in chunks of ``chunk`` rows: it computes the chunk's
logits ``h_c @ W + b`` in float32, hands them to the existing fused sparse kernel
(``keras_ls._backend``: the one smoothing formula, max-shifted, saturated at extreme logits)
and, in the backward pass, recomputes them, takes the kernel's own gradient ``dz`` and turns
it into ``dh_c = dz W^T``, ``dW += h_c^T dz``, ``db += sum(dz)``. Only one chunk's logits
(and their gradient) ever exist, so the peak memory beyond the inputs and the returned
gradients is a few ``chunk x V`` float32 buffers instead of the ``N x V`` logits.

The backward pass needs the upstream gradient ``g``, unknown in the forward pass; but a
Keras reduction (a mean, a masked mean over the non-ignored tokens) makes ``g = c u`` with
``u`` the valid-token mask, known in the forward pass. So the forward sweep also computes
the gradients for ``u`` (3 matmuls, as the unfused head), and backward scales them by ``c``;
an upstream gradient not proportional to ``u`` (sample weights) gets a second sweep that
recomputes the logits (2 more matmuls). Without a gradient (JAX primal, torch no_grad, TF
without a recording tape) the forward sweep computes the loss only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras
from keras import ops

__all__ = ["HeadOptions", "default_chunk", "head_of_logits", "linear_head_crossentropy"]

#: Bytes of one chunk's float32 logits when ``chunk_size`` is not given: the chunk loop
#: holds about three such buffers (logits, exp / log-probabilities, their gradient).
CHUNK_BYTES = 16 * 2**20


@dataclass(frozen=True)
class HeadOptions:
    """Static options of one head (hashable: the JAX and TF builders cache on it)."""

    chunk: int
    transpose: bool  # kernel given as (V, H), e.g. a tied embedding matrix
    soft_cap: float | None
    z_loss: float
    has_bias: bool


def head_of_logits(
    z: Any, y: Any, a: Any, opt: HeadOptions, kernel: Callable[[Any, Any, Any], Any]
) -> Any:
    """Per-row loss of ``(C, V)`` logits in the compute dtype: soft cap, the backend's fused
    ``kernel`` (its custom gradient does the CE part), z-loss. Written once with ``keras.ops``
    for every backend; each differentiates it its own way (``jax.vjp``, a tape, autograd)."""
    if opt.soft_cap is not None:
        z = opt.soft_cap * ops.tanh(z / opt.soft_cap)
    loss = kernel(z, y, a)
    if opt.z_loss:
        loss = loss + opt.z_loss * ops.square(ops.logsumexp(z, axis=-1))
    return loss


def default_chunk(num_tokens: int, vocab: int) -> int:
    """Rows per chunk so that one chunk's float32 logits take about ``CHUNK_BYTES``.

    A multiple of 8 (the matmul kernels' row blocking), at least 8, at most the tokens.
    """
    rows = max(8, (CHUNK_BYTES // (4 * max(vocab, 1))) // 8 * 8)
    return int(max(1, min(rows, num_tokens)))


def _impl() -> Any:
    # Plain import statements, as keras_ls._backend does (torch.compile traces them).
    backend = keras.backend.backend()
    if backend == "tensorflow":
        from keras_ls._lm_head import tensorflow as impl
    elif backend == "jax":
        from keras_ls._lm_head import jax as impl
    elif backend == "torch":
        from keras_ls._lm_head import torch as impl
    else:
        from keras_ls._lm_head import generic as impl
    return impl


def linear_head_crossentropy(
    h: Any, w: Any, b: Any, y: Any, a: Any, u: Any, options: HeadOptions
) -> Any:
    """Per-token loss of ``(N, H)`` hidden ``h``, kernel ``w``, bias ``b`` (or None), labels
    ``y`` (``(N,)`` int in ``[0, V)``), factor ``a``; ``u`` ``(N,)`` is the expected direction
    of the upstream gradient (the valid-token mask). Float32 (float64 for float64 inputs)."""
    return _impl().per_token(h, w, b, y, a, u, options)
