"""A language-model head fused with label-smoothed cross-entropy, in chunks.

``linear_smoothed_crossentropy(y_true, hidden, kernel, bias)`` equals
``smoothed_crossentropy(y_true, hidden @ kernel + bias, a, from_logits=True)`` per token,
but never builds the ``(tokens, V)`` logits or their gradient: the tokens are walked in
chunks (``keras_ls._lm_head``), each chunk's logits go through the same fused sparse kernel
as :func:`~keras_ls.losses.smoothed_crossentropy` and are recomputed in the backward pass.
At 8192 tokens x 128k classes the float32 logits alone are 4 GiB, and their gradient
another 4 GiB; here a few ``chunk x V`` buffers.

``LinearSmoothedCE`` is the Keras loss: the model outputs the hidden states and the loss owns
the head's kernel (see ``docs/lm-head.md`` for the model pattern).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import keras
import numpy as np
from keras import ops

from keras_ls import _lm_head
from keras_ls.losses._base import LabelSmoothingLoss
from keras_ls.losses._labels import _dims_match, _integer_labels
from keras_ls.smoothing import validate_factor_if_number

__all__ = ["LinearSmoothedCE", "linear_smoothed_crossentropy"]


def linear_smoothed_crossentropy(
    y_true: Any,
    hidden: Any,
    kernel: Any,
    bias: Any = None,
    *,
    label_smoothing: Any = 0.0,
    ignore_class: int | None = None,
    chunk_size: int | None = None,
    transpose_kernel: bool = False,
    logit_soft_cap: float | None = None,
    z_loss: float = 0.0,
) -> Any:
    """Label-smoothed cross-entropy of the linear head ``hidden @ kernel + bias``, per token.

    Equal to ``smoothed_crossentropy(y_true, hidden @ kernel + bias, label_smoothing,
    from_logits=True, ignore_class=ignore_class)`` without materialising the logits: the
    tokens are processed ``chunk_size`` rows at a time, forward and backward, with float32
    logits and accumulation for float16/bfloat16 inputs. Gradients flow to ``hidden``,
    ``kernel`` and ``bias``; ``label_smoothing`` is never differentiated and may be a
    scalar tensor read inside a compiled step (a schedule).

    Args:
        y_true: integer labels of shape ``hidden.shape[:-1]`` (optionally with a trailing 1).
        hidden: ``(..., H)`` hidden states (the input of the output projection).
        kernel: ``(H, V)`` projection, as a Keras ``Dense`` kernel; ``(V, H)`` (a tied
            embedding matrix) with ``transpose_kernel=True``.
        bias: optional ``(V,)`` bias.
        label_smoothing: the factor ``a`` in ``[0, 1]``: a number or a scalar tensor.
        ignore_class: optional label (e.g. padding) whose positions get loss 0 and a Keras
            mask, as in :func:`~keras_ls.losses.smoothed_crossentropy`.
        chunk_size: tokens per chunk; default: as many as make one chunk's float32 logits
            about 16 MiB (32 at V = 128k, 128 at V = 32k).
        transpose_kernel: whether ``kernel`` is ``(V, H)``.
        logit_soft_cap: optional ``c > 0``: the logits become ``c * tanh(z / c)`` (Gemma 2).
        z_loss: optional weight of ``log(sum(exp(z)))**2`` added per token (PaLM's z-loss).

    Returns:
        The loss per token, shape ``hidden.shape[:-1]``, float32 (float64 for float64 inputs).

    Example:

    >>> rng = np.random.default_rng(0)
    >>> h = rng.normal(size=(2, 3, 4)).astype("float32")
    >>> w = rng.normal(size=(4, 5)).astype("float32")
    >>> y = np.array([[0, 1, 2], [3, 4, 0]])
    >>> fused = keras_ls.losses.linear_smoothed_crossentropy(y, h, w, label_smoothing=0.1)
    >>> full = keras_ls.losses.smoothed_crossentropy(y, h @ w, 0.1, from_logits=True)
    >>> bool(np.allclose(fused, full, rtol=1e-5))
    True
    """
    label_smoothing = validate_factor_if_number(label_smoothing)
    hidden = ops.convert_to_tensor(hidden)
    kernel = ops.convert_to_tensor(kernel)
    if not keras.backend.is_float_dtype(hidden.dtype):
        raise TypeError(f"`hidden` must be a floating-point tensor; received dtype {hidden.dtype}.")
    if len(hidden.shape) < 1 or hidden.shape[-1] is None:
        raise ValueError(
            f"`hidden` must have a known last (hidden) axis; received shape {tuple(hidden.shape)}."
        )
    size = hidden.shape[-1]
    vocab = _check_kernel(kernel, size, transpose_kernel)
    # Mixed precision: the kernel goes to the hidden states' dtype, as Keras' Dense autocasts.
    if kernel.dtype != hidden.dtype:
        kernel = ops.cast(kernel, hidden.dtype)
    if bias is not None:
        bias = ops.convert_to_tensor(bias)
        if tuple(bias.shape) != (vocab,):
            raise ValueError(
                f"`bias` must have shape ({vocab},) (the kernel's vocabulary); received "
                f"{tuple(bias.shape)}."
            )
        bias = ops.cast(bias, hidden.dtype) if bias.dtype != hidden.dtype else bias
    labels = _labels(y_true, hidden, vocab, ignore_class)
    options = _options(hidden, vocab, chunk_size, transpose_kernel, logit_soft_cap, z_loss, bias)
    # The expected upstream gradient's direction: a (masked) mean weighs the valid tokens.
    expected = (
        ops.ones(ops.shape(labels.labels), "float32")
        if labels.valid is None
        else ops.cast(labels.valid, "float32")
    )
    flat = _lm_head.linear_head_crossentropy(
        ops.reshape(hidden, (-1, size)),
        kernel,
        bias,
        ops.reshape(labels.labels, (-1,)),
        ops.cast(label_smoothing, "float32"),
        ops.reshape(expected, (-1,)),
        options,
    )
    return labels.finish(ops.reshape(flat, ops.shape(labels.labels)))


def _check_kernel(kernel: Any, size: int, transpose: bool) -> int:
    """The vocabulary size V of a ``(H, V)`` kernel (``(V, H)`` when ``transpose``)."""
    shape = tuple(kernel.shape)
    if len(shape) != 2:
        raise ValueError(f"`kernel` must be a 2-D matrix; received shape {shape}.")
    h_axis = 1 if transpose else 0
    if shape[h_axis] != size:
        layout = "(V, H) (transpose_kernel=True)" if transpose else "(H, V)"
        raise ValueError(
            f"`kernel` must be {layout} with H = {size} (the last axis of `hidden`); "
            f"received shape {shape}."
        )
    return int(shape[1 - h_axis])


def _labels(y_true: Any, hidden: Any, vocab: int, ignore_class: Any) -> Any:
    """The shared label path (range check, ``ignore_class`` mask) for a ``(..., H)`` input."""
    from keras_ls.losses._labels import check_ignore_class

    ignore_class = check_ignore_class(ignore_class)
    y_true = ops.convert_to_tensor(y_true)
    t_shape, h_shape = tuple(y_true.shape), tuple(hidden.shape)
    if len(t_shape) == len(h_shape) and t_shape[-1] == 1:
        y_true = ops.squeeze(y_true, -1)
        t_shape = t_shape[:-1]
    if not _dims_match(t_shape, h_shape[:-1]):
        raise ValueError(
            "Integer `y_true` must have the shape of `hidden` without its last (hidden) axis; "
            f"received y_true.shape={t_shape}, hidden.shape={h_shape}."
        )
    return _integer_labels(y_true, hidden, vocab, ignore_class)


def _options(
    hidden: Any,
    vocab: int,
    chunk_size: Any,
    transpose: Any,
    soft_cap: Any,
    z_loss: Any,
    bias: Any,
) -> _lm_head.HeadOptions:
    tokens = math.prod(d for d in hidden.shape[:-1]) if None not in hidden.shape[:-1] else None
    if chunk_size is None:
        chunk = _lm_head.default_chunk(tokens or 2**31, vocab)
    elif isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)):
        raise TypeError(
            f"`chunk_size` must be a positive integer or None; received {chunk_size!r}."
        )
    elif chunk_size < 1:
        raise ValueError(f"`chunk_size` must be a positive integer; received {chunk_size}.")
    else:
        chunk = int(min(chunk_size, tokens)) if tokens else int(chunk_size)
    if soft_cap is not None:
        if not isinstance(soft_cap, numbers.Real) or not (0 < soft_cap < math.inf):
            raise ValueError(
                f"`logit_soft_cap` must be a positive finite number or None; received {soft_cap!r}."
            )
        soft_cap = float(soft_cap)
    if not isinstance(z_loss, numbers.Real) or not (0 <= z_loss < math.inf):
        raise ValueError(f"`z_loss` must be a finite number >= 0; received {z_loss!r}.")
    return _lm_head.HeadOptions(
        chunk=max(chunk, 1),
        transpose=bool(transpose),
        soft_cap=soft_cap,
        z_loss=float(z_loss),
        has_bias=bias is not None,
    )


@keras.saving.register_keras_serializable(package="keras_ls")
class LinearSmoothedCE(LabelSmoothingLoss):
    """Label-smoothed cross-entropy of a linear LM head, fused and chunked, as a Keras loss.

    ``y_pred`` is the **hidden state** (the input of the output projection); the loss holds
    the projection -- a layer (``Dense``, ``Embedding`` / keras-hub ``ReversibleEmbedding``
    for tied weights) or a kernel variable -- and computes
    ``SmoothedCE(a, from_logits=True)(y_true, hidden @ kernel + bias)`` with
    :func:`linear_smoothed_crossentropy`, so ``model.fit`` trains the head's weights through
    the loss without ever building the ``(tokens, V)`` logits. Train a model that outputs
    the hidden states; predict with one that applies the head (``docs/lm-head.md``).

    Args:
        label_smoothing: the factor ``a`` in ``[0, 1]``; schedulable like ``SmoothedCE``'s.
        layer: the head layer: a ``Dense`` (its ``kernel`` and ``bias``), or an embedding
            with ``embeddings`` of shape ``(V, H)`` used transposed (a tied head; a keras-hub
            ``ReversibleEmbedding`` with untied ``reverse_embeddings`` uses those, and its
            ``logit_soft_cap`` when set).
        kernel: instead of ``layer``: the ``(H, V)`` kernel (``(V, H)`` with
            ``transpose_kernel=True``), a Keras variable.
        bias: optional ``(V,)`` bias variable, with ``kernel``.
        ignore_class, chunk_size, transpose_kernel, logit_soft_cap, z_loss: as for
            :func:`linear_smoothed_crossentropy`.
        reduction, name, dtype: as for any Keras loss.

    The layer / variables are not part of ``get_config``: a reloaded loss is given its head
    again with :meth:`set_head`.

    Example:

    >>> head = keras.layers.Dense(7)
    >>> head.build((None, 4))
    >>> h = np.random.default_rng(0).normal(size=(3, 4)).astype("float32")
    >>> fused = keras_ls.losses.LinearSmoothedCE(0.1, layer=head)([1, 2, 6], h)
    >>> full = keras_ls.SmoothedCE(0.1, from_logits=True)([1, 2, 6], head(h))
    >>> bool(np.isclose(float(fused), float(full), rtol=1e-5))
    True
    """

    def __init__(
        self,
        label_smoothing: float = 0.1,
        *,
        layer: Any = None,
        kernel: Any = None,
        bias: Any = None,
        ignore_class: int | None = None,
        chunk_size: int | None = None,
        transpose_kernel: bool = False,
        logit_soft_cap: float | None = None,
        z_loss: float = 0.0,
        **kwargs: Any,
    ):
        options = dict(
            ignore_class=ignore_class,
            chunk_size=chunk_size,
            transpose_kernel=bool(transpose_kernel),
            logit_soft_cap=logit_soft_cap,
            z_loss=float(z_loss),
        )
        super().__init__(linear_smoothed_crossentropy, label_smoothing, **options, **kwargs)
        self._head = None
        if layer is not None or kernel is not None:
            self.set_head(layer=layer, kernel=kernel, bias=bias)

    def set_head(self, *, layer: Any = None, kernel: Any = None, bias: Any = None) -> None:
        """Give the loss its projection: ``layer`` or ``kernel`` (and ``bias``)."""
        if (layer is None) == (kernel is None):
            raise ValueError(
                "LinearSmoothedCE needs exactly one of `layer` (the head layer) or `kernel` "
                f"(its weight matrix); received layer={layer!r}, kernel={kernel!r}."
            )
        if layer is not None and bias is not None:
            raise ValueError("`bias` goes with `kernel`; a `layer` brings its own bias.")
        self._head = (layer, kernel, bias)

    def _weights(self) -> tuple[Any, Any, bool, Any]:
        """``(kernel, bias, transpose, soft_cap)`` read now (a layer builds lazily)."""
        if self._head is None:
            raise ValueError(
                "This LinearSmoothedCE has no head: pass `layer=` or `kernel=` (or call "
                "`set_head`) before training."
            )
        layer, kernel, bias = self._head
        cap = self.logit_soft_cap
        if layer is None:
            return kernel, bias, self.transpose_kernel, cap
        if getattr(layer, "kernel", None) is not None and not hasattr(layer, "embeddings"):
            return layer.kernel, getattr(layer, "bias", None), False, cap
        if getattr(layer, "embeddings", None) is None:
            raise ValueError(
                f"`layer` must be a Dense-like layer (with `kernel`) or an embedding (with "
                f"`embeddings`); received {type(layer).__name__}, which may not be built yet."
            )
        if cap is None:
            cap = getattr(layer, "logit_soft_cap", None)
        reverse = getattr(layer, "reverse_embeddings", None)
        if reverse is not None and not getattr(layer, "tie_weights", True):
            return reverse, None, False, cap  # keras-hub's untied (H, V) output matrix
        return layer.embeddings, None, True, cap

    def call(self, y_true: Any, y_pred: Any) -> Any:
        kernel, bias, transpose, cap = self._weights()
        return linear_smoothed_crossentropy(
            y_true,
            y_pred,
            kernel,
            bias,
            label_smoothing=self.factor("label_smoothing", "float32"),
            ignore_class=self.ignore_class,
            chunk_size=self.chunk_size,
            transpose_kernel=transpose,
            logit_soft_cap=cap,
            z_loss=self.z_loss,
        )
