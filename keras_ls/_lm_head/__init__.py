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

Two entry points per backend:

- ``per_token(h, W, b, y, a, options)``: the per-token loss, differentiable for any
  upstream gradient (backward recomputes every chunk's logits: 4 matmuls instead of 3).
- ``weighted_sum(h, W, b, y, a, w, options)``: ``sum(w * loss)`` for weights known in the
  forward pass (a Keras reduction's), with the gradients computed in the forward sweep and
  scaled in backward (3 matmuls, as the unfused head); also returns the per-token loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras

__all__ = ["HeadOptions", "default_chunk", "linear_head_crossentropy", "weighted_head_sum"]

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


def linear_head_crossentropy(h: Any, w: Any, b: Any, y: Any, a: Any, options: HeadOptions) -> Any:
    """Per-token loss of ``(N, H)`` hidden ``h``, kernel ``w``, bias ``b`` (or None), labels
    ``y`` (``(N,)`` int in ``[0, V)``), factor ``a``; float32 (float64 for float64 inputs)."""
    return _impl().per_token(h, w, b, y, a, options)


def weighted_head_sum(
    h: Any, w: Any, b: Any, y: Any, a: Any, weights: Any, options: HeadOptions
) -> tuple[Any, Any]:
    """``(sum(weights * loss), loss)``; only the sum is differentiable (gradients computed in
    the forward sweep for these weights)."""
    return _impl().weighted_sum(h, w, b, y, a, weights, options)
