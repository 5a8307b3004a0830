"""Sparse label-smoothed cross-entropy kernels, one per Keras backend (placeholder).

The lead's placeholder while the fused JAX/torch kernels are written: TF keeps its
hand-written gradient, JAX and torch use autodiff of the same expression.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from keras_ls.smoothing import mix


def sparse_smoothed_crossentropy(
    logits: Any, labels: Any, label_smoothing: Any, prior: np.ndarray | None = None
) -> Any:
    """Per-row ``-mix(log p_y, <prior, log p>, a)`` for (N, K) logits and (N,) int32 labels."""
    z = (
        ops.cast(logits, "float32")
        if keras.backend.standardize_dtype(logits.dtype) in ("float16", "bfloat16")
        else logits
    )
    a = ops.cast(label_smoothing, z.dtype)
    if keras.backend.backend() == "tensorflow":
        return _tf_sparse_kernel(z, labels, a, prior)
    return _generic_sparse_kernel(z, labels, a, prior)


def _generic_sparse_kernel(logits: Any, labels: Any, a: Any, prior: np.ndarray | None) -> Any:
    """keras.ops version (JAX, torch): XLA / autograd handle the backward."""
    logp = ops.log_softmax(logits, axis=-1)
    logp_y = ops.squeeze(ops.take_along_axis(logp, ops.expand_dims(labels, -1), axis=-1), -1)
    if prior is None:
        logp_bar = ops.mean(logp, axis=-1)
    else:
        logp_bar = ops.matmul(logp, ops.convert_to_tensor(prior, dtype=logits.dtype))
    return -mix(logp_y, logp_bar, a)


def _in_xla_context() -> bool:
    """True while tracing inside ``jit_compile=True`` (TF's own check)."""
    try:
        import tensorflow as tf
        from tensorflow.python.ops import control_flow_util

        return bool(control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()))
    except Exception:  # noqa: BLE001 - private API moved: fall back to graph mode
        return False


def _tf_sparse_kernel(logits: Any, labels: Any, a: Any, prior: np.ndarray | None) -> Any:
    """TF: log-sum-exp terms plus a hand-written gradient, no dense target.

    The forward pass keeps ``e = exp(z - max)`` (one logits-sized buffer, as
    stock sparse CE keeps ``softmax - onehot``). The gradient
    ``softmax - (1 - a) onehot - a prior`` is one expression over ``e``; the
    ``-(1 - a)`` at the label is, in graph mode, an in-place scatter onto the B
    label positions and, under XLA, an ``iota == label`` comparison that XLA
    fuses into the same loop, so only the gradient buffer is materialised in
    either case. Measured 2-4x faster on CPU than TF's fused sparse-xent
    kernel at 1k-128k classes (benchmarks/loss_speed.py).
    """
    import tensorflow as tf

    shape = tf.shape(labels)
    num_classes = tf.shape(logits)[-1]
    z = tf.reshape(logits, tf.stack([-1, num_classes]))
    y = tf.reshape(labels, [-1])
    prior_t = None if prior is None else tf.constant(prior, dtype=z.dtype)
    fused = _in_xla_context()

    @tf.custom_gradient
    def kernel(z: tf.Tensor) -> tuple[tf.Tensor, Any]:
        m = tf.stop_gradient(tf.reduce_max(z, axis=-1))
        e = tf.exp(z - m[:, None])
        s = tf.reduce_sum(e, axis=-1)
        lse = m + tf.math.log(s)
        z_y = tf.gather(z, y, batch_dims=1)
        z_bar = tf.reduce_mean(z, axis=-1) if prior_t is None else tf.linalg.matvec(z, prior_t)
        # CE is linear in the target: mix the two log-prob terms it touches.
        loss = -mix(z_y - lse, z_bar - lse, a)

        def grad(g: tf.Tensor) -> tf.Tensor:
            p_term = a / tf.cast(num_classes, z.dtype) if prior_t is None else a * prior_t
            dz = e * (g / s)[:, None] - p_term * g[:, None]
            if fused:
                hit = tf.equal(tf.range(num_classes, dtype=y.dtype)[None, :], y[:, None])
                return dz - tf.cast(hit, z.dtype) * ((1.0 - a) * g)[:, None]
            idx = tf.stack([tf.range(tf.shape(y)[0], dtype=y.dtype), y], axis=1)
            return tf.tensor_scatter_nd_add(dz, idx, -(1.0 - a) * g)

        return loss, grad

    # `a` is a constant of the gradient: the factor is never trained.
    return tf.reshape(kernel(z), shape)
