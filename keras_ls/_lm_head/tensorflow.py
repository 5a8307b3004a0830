"""TensorFlow: the chunked linear head + smoothed CE with ``tf.custom_gradient``.

``tf.while_loop`` over token chunks (``parallel_iterations=1``: one chunk's logits alive at
a time). Forward feeds each chunk's logits to the existing fused kernel
(``keras_ls._backend.tensorflow``); backward recomputes them and takes the kernel's own
gradient with a ``GradientTape`` inside the loop body, then writes ``dh`` into a
``TensorArray`` and accumulates ``dW`` / ``db`` in float32. Works eagerly, in ``tf.function``
and under XLA (the rows are padded to whole chunks: static shapes).
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from keras_ls import _compat
from keras_ls._backend import tensorflow as kernel
from keras_ls._backend.common import compute_dtype_name
from keras_ls._lm_head import HeadOptions
from keras_ls._lm_head import head_of_logits as shared_head


def head_of_logits(z: tf.Tensor, y: tf.Tensor, a: tf.Tensor, opt: HeadOptions) -> tf.Tensor:
    """The shared per-row head (:func:`keras_ls._lm_head.head_of_logits`) with this
    backend's fused kernel."""
    return shared_head(z, y, a, opt, kernel.sparse_smoothed_crossentropy)


def _logits(h_c, w, b, opt: HeadOptions) -> tf.Tensor:
    """``h_c @ w + b`` with ``w`` (and ``b``) already in the compute dtype."""
    z = tf.matmul(tf.cast(h_c, w.dtype), w, transpose_b=opt.transpose)
    return z if b is None else z + b


def _chunks(x: tf.Tensor, c: int, chunks: Any) -> tf.Tensor:
    """``x`` padded with zero rows to ``chunks * c`` rows and split into ``(chunks, c, ...)``."""
    n = tf.shape(x)[0]
    pad = [[0, chunks * c - n]] + [[0, 0]] * (len(x.shape) - 1)
    x = tf.pad(x, pad)
    return tf.reshape(x, tf.concat([[chunks, c], tf.shape(x)[1:]], 0))


def _sweep(h, w, b, y, a, g, opt: HeadOptions):
    """Loss per token and, when ``g`` is given, dh, dW, db (float32 accumulation)."""
    compute = tf.as_dtype(compute_dtype_name(h.dtype.name))
    w_dtype, b_dtype = w.dtype, None if b is None else b.dtype
    # Half inputs: one float32 copy of the kernel for the sweep (TF has no half matmul with
    # a float32 result), so that the logits are float32 sums of exact products.
    w = tf.cast(w, compute)
    b = None if b is None else tf.cast(b, compute)
    c = opt.chunk
    n = tf.shape(h)[0]
    chunks = (n + c - 1) // c
    hp, yp = _chunks(h, c, chunks), _chunks(y, c, chunks)
    gp = None if g is None else _chunks(tf.cast(g, compute), c, chunks)
    losses = tf.TensorArray(compute, size=chunks, element_shape=tf.TensorShape([c]))
    dhs = tf.TensorArray(h.dtype, size=chunks, element_shape=tf.TensorShape([c, h.shape[-1]]))
    dw = tf.zeros(tf.shape(w), compute)
    db = tf.zeros(tf.shape(b), compute) if b is not None else tf.zeros((), compute)

    def body(i, losses, dhs, dw, db):
        h_c, y_c = hp[i], yp[i]
        z = _logits(h_c, w, b, opt)
        if g is None:
            return i + 1, losses.write(i, head_of_logits(z, y_c, a, opt)), dhs, dw, db
        with tf.GradientTape() as tape:
            tape.watch(z)
            loss_c = head_of_logits(z, y_c, a, opt)
        dz = tape.gradient(loss_c, z, output_gradients=gp[i])
        h32 = tf.cast(h_c, compute)
        if opt.transpose:  # w is (V, H)
            dh_c = tf.matmul(dz, w)
            dw = dw + tf.matmul(dz, h32, transpose_a=True)
        else:
            dh_c = tf.matmul(dz, w, transpose_b=True)
            dw = dw + tf.matmul(h32, dz, transpose_a=True)
        if b is not None:
            db = db + tf.reduce_sum(dz, axis=0)
        return i + 1, losses.write(i, loss_c), dhs.write(i, tf.cast(dh_c, h.dtype)), dw, db

    _, losses, dhs, dw, db = tf.while_loop(
        lambda i, *_: i < chunks,
        body,
        (tf.constant(0), losses, dhs, dw, db),
        parallel_iterations=1,  # one chunk's logits at a time
    )
    loss = tf.reshape(losses.stack(), [-1])[:n]
    if g is None:
        return loss, None, None, None
    dh = tf.reshape(dhs.stack(), [-1, tf.shape(h)[1]])[:n]
    return loss, dh, tf.cast(dw, w_dtype), None if b is None else tf.cast(db, b_dtype)


def per_token(h, w, b, y, a, u, opt: HeadOptions) -> tf.Tensor:
    """See :func:`keras_ls._lm_head.linear_head_crossentropy`."""
    h = tf.convert_to_tensor(h)
    compute = compute_dtype_name(h.dtype.name)
    a = tf.stop_gradient(tf.cast(tf.convert_to_tensor(a, dtype_hint=compute), compute))
    u = tf.stop_gradient(tf.cast(u, compute))
    w = tf.convert_to_tensor(w)
    b = None if b is None else tf.convert_to_tensor(b)
    y = tf.cast(y, tf.int32)
    params = [h, w] if b is None else [h, w, b]
    if not _compat.tf_recording(params):
        return _sweep(h, w, b, y, a, None, opt)[0]

    @tf.custom_gradient
    def f(*params):
        # stop_gradient: the outer tape must not try to differentiate the loop (under XLA
        # it would reach the kernel's forward ops); grad below is the gradient.
        h, w, *bias = [tf.stop_gradient(p) for p in params]
        bias = bias[0] if bias else None
        # The gradients for the expected upstream gradient u, in the same sweep (3 matmuls).
        loss, dh, dw, db = _sweep(h, w, bias, y, a, u, opt)

        def grad(g):
            g = tf.cast(g, u.dtype)
            c = tf.math.divide_no_nan(tf.tensordot(g, u, 1), tf.tensordot(u, u, 1))
            ok = tf.reduce_all(tf.abs(g - c * u) <= 1e-6 * tf.reduce_max(tf.abs(g)))

            def reuse():
                return [x * tf.cast(c, x.dtype) for x in (dh, dw, db) if x is not None]

            def recompute():  # any other upstream gradient (e.g. sample weights)
                grads = _sweep(h, w, bias, y, a, g, opt)[1:]
                return [x for x in grads if x is not None]

            return tuple(tf.cond(ok, reuse, recompute))

        return loss, grad

    return f(*params)
