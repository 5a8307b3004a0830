"""Any other Keras backend (numpy, openvino): the same numerics in ``keras.ops``.

No hand-written gradient (these backends do not train); kept so that the
losses evaluate everywhere Keras runs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from keras import ops

from keras_ls._backend.common import combine, compute_dtype_name


def sparse_smoothed_crossentropy(
    logits: Any, labels: Any, label_smoothing: Any, prior: np.ndarray | None = None
) -> Any:
    """See :func:`keras_ls._backend.sparse_smoothed_crossentropy`."""
    z = ops.convert_to_tensor(logits)
    compute = compute_dtype_name(str(z.dtype).split(".")[-1])
    shape = tuple(ops.shape(z)[:-1])
    k = ops.shape(z)[-1]
    z = ops.cast(ops.reshape(z, (-1, k)), compute)
    y = ops.cast(ops.reshape(ops.convert_to_tensor(labels), (-1,)), "int32")
    a = ops.convert_to_tensor(label_smoothing, dtype=compute)
    lowest = float(np.finfo(compute).min)
    m = ops.max(z, axis=-1, keepdims=True)
    d = z - m
    ls = ops.log(ops.sum(ops.exp(d), axis=-1))
    d_y = ops.take_along_axis(d, ops.expand_dims(y, -1), axis=-1)[:, 0]
    # The clamp makes a -inf log-probability times a zero prior weight 0, not NaN.
    if prior is None:
        q = ops.mean(d, axis=-1)
    else:
        q = ops.matmul(ops.maximum(d, lowest), ops.convert_to_tensor(prior, dtype=compute))
    return ops.reshape(combine(d_y - ls, q - ls, a, lowest, ops.maximum), shape)
