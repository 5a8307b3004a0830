"""TensorFlow: label-smoothed sparse cross-entropy with ``tf.custom_gradient``.

The forward keeps ``e = exp(z - max)`` (one logits-sized buffer, as TF's own
sparse CE keeps ``softmax - onehot``); the label term is ``z_y - max - log
sum(e)``, so equal logits of 1e4 give ``ln 2`` exactly, and the smoothing term
averages ``z - max`` (under XLA see :func:`_xla_smoothing_term`). The gradient
``softmax - (1 - a) onehot - a prior`` is one expression over ``e``; the
``-(1 - a)`` at the label is, in graph mode, an in-place add onto the N label
entries (:func:`_add_at_labels`) and, under XLA, an ``iota == label`` comparison
that XLA fuses into the same loop, so only the gradient buffer is materialised
in either case. Graph mode, fwd+bwd: 7 reads and 4 writes of a logits-sized
buffer (max; ``z - max``; the smoothing mean; ``exp`` into the same buffer; its
row sum; the backward's multiply and subtract, in place) and one allocation,
which becomes the gradient -- TF's fused sparse cross-entropy (Keras' sparse CE)
makes 6 reads and 3 writes with ``exp`` evaluated twice.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from keras_ls import _compat
from keras_ls._backend.common import RAW_SUM_GUARD, combine, compute_dtype_name


def _smoothing_term(z: tf.Tensor, m: tf.Tensor, d: tf.Tensor, prior: Any, fused: bool) -> tf.Tensor:
    """``<prior, z - max>`` per row (``d = z - max``; uniform when ``prior`` is None).

    Graph mode: a mean of ``d`` (a tree sum: 5-20x more exact than a gemv with
    1/K) or a gemv with the prior over ``d`` clamped to the lowest float, so
    that a -inf log-probability times a zero prior weight is 0, not NaN.

    XLA: XLA:CPU materialises ``d`` for any sum over it (one more logits-sized
    buffer, 40% slower at 32k classes), so the raw sum ``<prior, z> - max`` is
    used when it is as exact (``RAW_SUM_GUARD``). Otherwise, and for any
    non-finite raw sum, ``tf.cond`` runs :func:`_xla_shifted_sum`.
    """
    if not fused:
        if prior is None:
            return tf.reduce_mean(d, axis=-1)
        return tf.linalg.matvec(tf.maximum(d, z.dtype.min), prior)
    if prior is None:
        raw = tf.reduce_sum(z, axis=-1) * (1.0 / tf.cast(tf.shape(z)[-1], z.dtype))
    else:
        raw = tf.linalg.matvec(z, prior)
    fast = raw - m
    # NaN compares False: a non-finite raw sum takes the shifted branch.
    exact_enough = tf.reduce_all(tf.abs(m) <= -RAW_SUM_GUARD * fast)
    return tf.cond(exact_enough, lambda: fast, lambda: _xla_shifted_sum(z, m, prior))


def _xla_shifted_sum(z: tf.Tensor, m: tf.Tensor, prior: Any) -> tf.Tensor:
    """``<prior, z - max>`` under XLA without a logits-sized temporary.

    XLA:CPU hands a one-operand sum to its vectorised reduction, which needs
    ``z - max`` materialised (a logits-sized buffer, allocated even while this
    branch of the ``tf.cond`` is not taken). A two-operand (variadic) reduce
    is a loop fusion that computes ``z - max`` on the fly, hence the pair.
    Measured: 1.02 instead of 2.05 buffers at (512, 32000). ``tf2xla`` is
    TensorFlow's own XLA bridge; were it to move, the plain mean is exact too.
    """
    d = z - m[:, None]
    if prior is None:
        w = d * (1.0 / tf.cast(tf.shape(z)[-1], z.dtype))
    else:
        w = tf.maximum(d, z.dtype.min) * prior
    try:
        from tensorflow.compiler.tf2xla.python import xla
    except ImportError:  # pragma: no cover - one more buffer, same value
        return tf.reduce_sum(w, axis=-1)
    zero = tf.zeros((), z.dtype)
    return xla.variadic_reduce([w, w], [zero, zero], [1], _add_pairs(z.dtype))[0]


#: InplaceAdd takes int32 row ids: beyond this many logits, the (copying) scatter.
_INPLACE_MAX = 2**31 - 1


def _add_at_labels(dz: tf.Tensor, y: tf.Tensor, values: tf.Tensor) -> tf.Tensor:
    """``dz[i, y[i]] += values[i]``, in ``dz``'s own buffer (graph mode).

    ``tensor_scatter_nd_add`` copies its input on CPU (a logits-sized allocation and one
    more read and write of the gradient: 2.05 instead of 1.02 extra buffers at
    (512, 32000), issue 17). ``InplaceAdd`` on the flat ``(N*K, 1)`` view adds to the N
    label entries of the buffer itself; ``dz`` is this backward's own temporary (the
    multiply before it writes in place only when nothing else holds ``e``), so nothing
    else sees the write. Row ids are distinct (one per row).
    """
    n, k = tf.shape(dz)[0], tf.shape(dz)[1]

    def inplace() -> tf.Tensor:
        rows = tf.range(n, dtype=tf.int32) * k + tf.cast(y, tf.int32)
        out = tf.raw_ops.InplaceAdd(x=tf.reshape(dz, [-1, 1]), i=rows, v=values[:, None])
        return tf.reshape(out, tf.shape(dz))

    def scatter() -> tf.Tensor:
        idx = tf.stack([tf.range(n, dtype=y.dtype), y], axis=1)
        return tf.tensor_scatter_nd_add(dz, idx, values)

    size = dz.shape.num_elements()
    if size is not None:
        return inplace() if size <= _INPLACE_MAX else scatter()
    fits = tf.cast(n, tf.int64) * tf.cast(k, tf.int64) <= _INPLACE_MAX  # batch unknown
    return tf.cond(fits, inplace, scatter)


_REDUCERS: dict = {}


def _add_pairs(dtype: tf.DType) -> Any:
    """The reducer of :func:`_xla_shifted_sum`, one concrete function per dtype."""
    if dtype not in _REDUCERS:
        spec = tf.TensorSpec((), dtype)

        @tf.function(input_signature=[spec] * 4, autograph=False)
        def add(a0: tf.Tensor, a1: tf.Tensor, b0: tf.Tensor, b1: tf.Tensor) -> tuple:
            return a0 + b0, a1 + b1

        _REDUCERS[dtype] = add.get_concrete_function()
    return _REDUCERS[dtype]


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
    fused = _compat.tf_in_xla_context(default=False)  # the scatter works everywhere

    @tf.custom_gradient
    def kernel(z: tf.Tensor) -> tuple[tf.Tensor, Any]:
        m = tf.reduce_max(z, axis=-1)
        d = z - m[:, None]  # max-shifted: no overflow, ln 2 at equal logits
        q = _smoothing_term(z, m, d, prior_t, fused)
        # Graph mode runs op by op: exp writes into d's buffer (TF forwards an input
        # whose last reader is done), so the forward allocates one logits-sized buffer,
        # not two, and the backward's multiply forwards it again as the gradient.
        # Without the dependency, exp may run before the mean reads d (issue 17:
        # 2.05 instead of 1.02 extra buffers, slower where fresh pages are costly).
        with tf.control_dependencies([] if fused else [q]):
            e = tf.exp(d)
        s = tf.reduce_sum(e, axis=-1)
        ls = tf.math.log(s)
        d_y = tf.gather(z, y, batch_dims=1) - m
        loss = combine(d_y - ls, q - ls, a, lowest, tf.maximum)

        def grad(g: tf.Tensor) -> tf.Tensor:
            p_term = a / tf.cast(num_classes, z.dtype) if prior_t is None else a * prior_t
            dz = e * (g / s)[:, None] - p_term * g[:, None]
            if fused:
                hit = tf.equal(tf.range(num_classes, dtype=y.dtype)[None, :], y[:, None])
                return dz - tf.cast(hit, z.dtype) * ((1.0 - a) * g)[:, None]
            return _add_at_labels(dz, y, -(1.0 - a) * g)

        return loss, grad

    return tf.reshape(kernel(z), shape)
