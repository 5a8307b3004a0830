"""Any other Keras backend (numpy, openvino): the unfused head in ``keras.ops``.

No custom gradient (these backends do not train); kept so that the loss evaluates
everywhere Keras runs. The logits are built whole.
"""

from __future__ import annotations

from typing import Any

from keras import ops

from keras_ls import _backend
from keras_ls._backend.common import compute_dtype_name
from keras_ls._lm_head import HeadOptions, head_of_logits


def per_token(h: Any, w: Any, b: Any, y: Any, a: Any, u: Any, opt: HeadOptions) -> Any:
    """See :func:`keras_ls._lm_head.linear_head_crossentropy`."""
    compute = compute_dtype_name(str(ops.convert_to_tensor(h).dtype).split(".")[-1])
    z = ops.matmul(h, ops.transpose(w) if opt.transpose else w)
    z = ops.cast(z, compute) if b is None else ops.cast(z, compute) + ops.cast(b, compute)
    return head_of_logits(z, y, a, opt, _backend.sparse_smoothed_crossentropy)
