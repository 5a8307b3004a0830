"""TensorFlow: label-smoothed sparse cross-entropy with ``tf.custom_gradient``.

The forward keeps ``e = exp(z - max)`` (one logits-sized buffer, as TF's own
sparse CE keeps ``softmax - onehot``); the label term is ``z_y - max - log
sum(e)``, so equal logits of 1e4 give ``ln 2`` exactly, and the smoothing term
averages ``z - max`` (under XLA see :func:`_xla_smoothing_term`). The gradient
``softmax - (1 - a) onehot - a prior`` is one expression over ``e``; the
``-(1 - a)`` at the label is, in graph mode, an in-place scatter onto the N
label positions and, under XLA, an ``iota == label`` comparison that XLA fuses
into the same loop, so only the gradient buffer is materialised in either case.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from keras_ls._backend.common import RAW_SUM_GUARD, combine, compute_dtype_name


def _in_xla_context() -> bool:
    """True while tracing inside ``jit_compile=True`` (TF's own check)."""
    try:
        from tensorflow.python.ops import control_flow_util

        return bool(control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()))
    except Exception:  # noqa: BLE001 - private API moved: the scatter works everywhere
        return False


def _xla_smoothing_term(z: tf.Tensor, m: tf.Tensor, shifted: Any, prior: Any) -> tf.Tensor:
    """``<prior, z - max>`` under XLA, to float32 rounding of the shifted sum.

    XLA:CPU materialises ``z - max`` for any sum over it (one more
    logits-sized buffer, 40% slower at 32k classes), so the raw sum is used
    when it is as exact (``RAW_SUM_GUARD``); otherwise, and for any
    non-finite raw sum, ``tf.cond`` runs the ``shifted`` one.
    """
    if prior is None:
        raw = tf.reduce_sum(z, axis=-1) * (1.0 / tf.cast(tf.shape(z)[-1], z.dtype))
    else:
        raw = tf.linalg.matvec(z, prior)
    fast = raw - m
    # NaN compares False: a non-finite raw sum takes the shifted branch.
    exact_enough = tf.reduce_all(tf.abs(m) <= -RAW_SUM_GUARD * fast)
    return tf.cond(exact_enough, lambda: fast, shifted)


def sparse_smoothed_crossentropy(
    logits: Any, labels: Any, label_smoothing: Any, prior: np.ndarray | None = None
) -> tf.Tensor:
    """See :func:`keras_ls._backend.sparse_smoothed_crossentropy`."""
    z = tf.convert_to_tensor(logits)
    compute = compute_dtype_name(z.dtype.name)
    shape = tf.shape(z)[:-1]
    num_classes = tf.shape(z)[-1]
    # The upcast stays outside the custom gradient: tf.cast's own gradient
    # returns the float32 gradient in the logits' dtype.
    z = tf.cast(tf.reshape(z, tf.stack([-1, num_classes])), compute)
    y = tf.reshape(tf.cast(labels, tf.int32), [-1])
    # `a` is a constant of the gradient: the factor is never trained.
    # dtype_hint: a Python float goes straight to float64 logits' precision.
    a = tf.convert_to_tensor(label_smoothing, dtype_hint=compute)
    a = tf.stop_gradient(tf.cast(a, compute))
    prior_t = None if prior is None else tf.constant(prior, dtype=compute)
    lowest = z.dtype.min
    fused = _in_xla_context()

    @tf.custom_gradient
    def kernel(z: tf.Tensor) -> tuple[tf.Tensor, Any]:
        m = tf.reduce_max(z, axis=-1)
        d = z - m[:, None]  # max-shifted: no overflow, ln 2 at equal logits
        e = tf.exp(d)
        s = tf.reduce_sum(e, axis=-1)
        ls = tf.math.log(s)
        d_y = tf.gather(z, y, batch_dims=1) - m

        def shifted(d: tf.Tensor) -> tf.Tensor:
            # reduce_mean, not a gemv with 1/K: its tree sum is 5-20x more
            # exact. The clamp makes a -inf log-probability times a zero prior
            # weight 0, not NaN.
            if prior_t is None:
                return tf.reduce_mean(d, axis=-1)
            return tf.linalg.matvec(tf.maximum(d, lowest), prior_t)

        if fused:  # z - max recomputed inside the branch: not kept across the cond
            q = _xla_smoothing_term(z, m, lambda: shifted(z - m[:, None]), prior_t)
        else:
            q = shifted(d)
        loss = combine(d_y - ls, q - ls, a, lowest, tf.maximum)

        def grad(g: tf.Tensor) -> tf.Tensor:
            p_term = a / tf.cast(num_classes, z.dtype) if prior_t is None else a * prior_t
            dz = e * (g / s)[:, None] - p_term * g[:, None]
            if fused:
                hit = tf.equal(tf.range(num_classes, dtype=y.dtype)[None, :], y[:, None])
                return dz - tf.cast(hit, z.dtype) * ((1.0 - a) * g)[:, None]
            idx = tf.stack([tf.range(tf.shape(y)[0], dtype=y.dtype), y], axis=1)
            return tf.tensor_scatter_nd_add(dz, idx, -(1.0 - a) * g)

        return loss, grad

    return tf.reshape(kernel(z), shape)
