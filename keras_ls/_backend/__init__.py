"""Fused sparse label-smoothed cross-entropy, one kernel per Keras backend.

Private: the losses call :func:`sparse_smoothed_crossentropy`; it dispatches
on ``keras.backend.backend()`` to ``tensorflow.py`` (``tf.custom_gradient``),
``jax.py`` (``jax.custom_vjp``) or ``torch.py`` (``torch.autograd.Function``),
and to a ``keras.ops`` version with the same numerics on any other backend.
Every kernel computes in the max-shifted space and writes the gradient
``softmax - (1 - a) onehot(y) - a prior`` without a dense one-hot.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

__all__ = ["sparse_smoothed_crossentropy"]


def sparse_smoothed_crossentropy(
    logits: Any, labels: Any, label_smoothing: Any, prior: np.ndarray | None = None
) -> Any:
    """Per-row label-smoothed CE for integer labels, with a fused gradient.

    Args:
        logits: ``(N, K)`` backend tensor (any leading shape ``(..., K)`` is
            flattened and restored), float16/bfloat16/float32/float64.
        labels: ``(N,)`` integer tensor (the leading shape of ``logits``), every
            value in ``[0, K)``: the caller masks ignored positions and rejects
            out-of-range labels.
        label_smoothing: Scalar ``a``: Python float, 0-d tensor, or a value
            traced inside a compiled step. Not differentiated.
        prior: ``None`` (uniform ``1/K``) or a float64 numpy vector ``(K,)``
            summing to 1.

    Returns:
        The per-row loss ``-(1-a) log_softmax(z)[y] - a <prior, log_softmax(z)>``,
        float32 (float64 for float64 logits). Its gradient with respect to
        ``logits`` is ``(softmax(z) - (1-a) onehot(y) - a prior) * g``, computed
        in float32 for float16/bfloat16 logits and returned in their dtype.
        Every log-probability term saturates at the dtype's lowest finite
        value, so finite logits never give NaN or inf.

    Example:

    >>> z = keras.ops.convert_to_tensor([[1e4, 1e4]])
    >>> loss = sparse_smoothed_crossentropy(z, keras.ops.convert_to_tensor([0]), 0.1)
    >>> round(float(keras.ops.convert_to_numpy(loss)[0]), 6)  # ln 2, no cancellation
    0.693147
    """
    # Plain import statements, not importlib: torch.compile traces them.
    backend = keras.backend.backend()
    if backend == "tensorflow":
        from keras_ls._backend import tensorflow as impl
    elif backend == "jax":
        from keras_ls._backend import jax as impl
    elif backend == "torch":
        from keras_ls._backend import torch as impl
    else:
        from keras_ls._backend import generic as impl
    return impl.sparse_smoothed_crossentropy(logits, labels, label_smoothing, prior)
