"""Label-smoothed cross-entropy: ``SmoothedCE`` / ``SmoothedBCE`` and their functional forms.

``smoothed_crossentropy`` is a drop-in for both ``keras.losses.sparse_categorical_crossentropy``
and ``categorical_crossentropy`` (integer or one-hot/soft labels, read from the shapes by the
shared label path); ``smoothed_binary_crossentropy`` for ``binary_crossentropy``. The classes
hold the configuration and the schedulable factor; ``call`` is the functional loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from keras_ls import _backend
from keras_ls.losses._base import LabelSmoothingLoss
from keras_ls.losses._labels import binary_targets, canonicalize, check_prior, log_probs
from keras_ls.smoothing import mix, prior_for_axis, validate_factor_if_number

__all__ = [
    "SmoothedBCE",
    "SmoothedCE",
    "smoothed_binary_crossentropy",
    "smoothed_crossentropy",
]


def smoothed_crossentropy(
    y_true: Any,
    y_pred: Any,
    label_smoothing: Any = 0.1,
    *,
    from_logits: bool = False,
    ignore_class: int | None = None,
    prior: Sequence[float] | np.ndarray | None = None,
    axis: int = -1,
) -> Any:
    """Cross-entropy toward ``(1 - a) * y + a * prior``, per position.

    Integer labels (shape of ``y_pred`` without the class axis, optionally with a size-1
    class axis) are computed from log-softmax terms, ``-mix(log p_y, <prior, log p>, a)``,
    without any one-hot or dense target; one-hot/soft labels (shape of ``y_pred``) are
    smoothed and passed to ``keras.ops.categorical_crossentropy``.

    Args:
        y_true: integer labels or one-hot/soft targets.
        y_pred: logits (``from_logits=True``) or probabilities; class axis ``axis``.
        label_smoothing: the factor ``a`` in ``[0, 1]``: a number or a scalar tensor.
        from_logits: whether ``y_pred`` holds logits.
        ignore_class: optional integer label whose positions get loss 0 and a Keras mask
            (so a Keras reduction averages over the others). Integer labels only.
        prior: optional length-K class prior (non-negative, summing to 1); uniform if None.
        axis: the class axis of ``y_pred``.

    Returns:
        The loss per position: ``y_pred``'s shape without the class axis.

    Example:

    >>> logits = np.array([[0.0, 2.0, 0.0], [1.0, 0.0, 0.0]], "float32")
    >>> a = smoothed_crossentropy([1, 0], logits, 0.1, from_logits=True)
    >>> b = smoothed_crossentropy(np.eye(3)[[1, 0]], logits, 0.1, from_logits=True)
    >>> np.round(keras.ops.convert_to_numpy(a).astype("float64"), 4).tolist()
    [0.3729, 0.6181]
    >>> bool(np.allclose(a, b))
    True
    """
    label_smoothing = validate_factor_if_number(label_smoothing)
    labels = canonicalize(y_true, y_pred, axis=axis, ignore_class=ignore_class)
    k = labels.num_classes
    prior = check_prior(prior, k, axis)
    z = labels.y_pred
    a = ops.cast(label_smoothing, "float32")
    if not labels.sparse:
        q = prior_for_axis(prior, k or 1, 1, -1)
        if isinstance(q, np.ndarray):
            q = ops.convert_to_tensor(q, dtype=z.dtype)
        elif k is None:
            q = 1.0 / ops.cast(ops.shape(z)[-1], z.dtype)
        target = mix(labels.target, q, ops.cast(a, z.dtype))
        return ops.categorical_crossentropy(target, z, from_logits=from_logits, axis=-1)
    if not from_logits:
        z = log_probs(z, from_logits=False)  # valid logits: their log-sum-exp is 0
    # The kernels flatten (..., K) themselves and return the leading shape.
    return labels.finish(_backend.sparse_smoothed_crossentropy(z, labels.labels, a, prior))


def smoothed_binary_crossentropy(
    y_true: Any,
    y_pred: Any,
    label_smoothing: Any = 0.1,
    *,
    from_logits: bool = False,
    axis: int = -1,
) -> Any:
    """Binary / multi-label cross-entropy toward ``(1 - a) * y + a / 2``, mean over ``axis``.

    Each output is its own two-class problem, so its uniform prior is 1/2 -- the same as
    ``keras.losses.binary_crossentropy(..., label_smoothing=a)``. ``y_true`` has ``y_pred``'s
    shape, or that shape without a trailing 1 (``(B,)`` labels for a ``(B, 1)`` output).

    Example:

    >>> v = smoothed_binary_crossentropy([[0.0, 1.0]], [[-1.0, 2.0]], 0.2, from_logits=True)
    >>> round(float(keras.ops.convert_to_numpy(v)[0]), 4)
    0.3701
    """
    label_smoothing = validate_factor_if_number(label_smoothing)
    target, y_pred = binary_targets(y_true, y_pred)
    target = mix(target, 0.5, ops.cast(label_smoothing, y_pred.dtype))
    return ops.mean(ops.binary_crossentropy(target, y_pred, from_logits=from_logits), axis=axis)


@keras.saving.register_keras_serializable(package="keras_ls")
class SmoothedCE(LabelSmoothingLoss):
    """Cross-entropy with label smoothing, for integer *or* one-hot/soft labels.

    The target is ``(1 - a) * y + a * prior`` with ``a = label_smoothing`` and ``prior``
    uniform (``1/K``) unless given. Which label form is used is read from the shapes, as
    Keras' two losses expect them (see :func:`smoothed_crossentropy`). Values equal
    ``CategoricalCrossentropy(label_smoothing=a)`` on dense labels and
    ``torch.nn.functional.cross_entropy(logits, y, label_smoothing=a, ignore_index=i)`` on
    integer labels.

    Args:
        label_smoothing: Float in ``[0, 1]``; ``0`` is plain cross-entropy. Read/assign it
            later through ``loss.label_smoothing`` (or let ``keras_ls.SmoothingScheduler``
            do it during ``fit``): the compiled step reads the new value without retracing.
        from_logits: Whether ``y_pred`` holds logits (recommended) rather than probabilities.
        ignore_class: Optional integer label (e.g. padding) whose positions are excluded
            from the loss and from the mean. Integer labels only.
        prior: Optional length-K vector (non-negative, summing to 1), e.g. the class
            frequencies, to smooth toward instead of uniform.
        axis: The class axis of ``y_pred``. Defaults to ``-1``.
        reduction: As for any Keras loss. Defaults to ``"sum_over_batch_size"``; with
            ``ignore_class`` the mean is over the non-ignored positions, and an all-ignored
            batch gives 0.
        name: Name of the loss instance.
        dtype: Dtype of the loss computation. Defaults to ``floatx`` (float32):
            float16/bfloat16 predictions are upcast, as Keras does. Integer labels stay
            integers whatever the dtype.

    Example:

    >>> loss = keras_ls.SmoothedCE(0.1, from_logits=True)
    >>> logits = [[0.0, 2.0, 0.0], [1.0, 0.0, 0.0]]
    >>> round(float(loss([1, 0], logits)), 4)  # integer labels
    0.4955
    >>> round(float(loss([[0, 1, 0], [1, 0, 0]], logits)), 4)  # one-hot: same value
    0.4955
    >>> loss.label_smoothing = 0.0  # what SmoothingScheduler does during fit
    >>> round(float(loss([1, 0], logits)), 4)  # plain cross-entropy
    0.3955
    """

    def __init__(
        self,
        label_smoothing: float = 0.1,
        *,
        from_logits: bool = False,
        ignore_class: int | None = None,
        prior: Sequence[float] | np.ndarray | None = None,
        axis: int = -1,
        **kwargs: Any,
    ):
        options = dict(from_logits=from_logits, ignore_class=ignore_class, prior=prior, axis=axis)
        super().__init__(smoothed_crossentropy, label_smoothing, **options, **kwargs)


@keras.saving.register_keras_serializable(package="keras_ls")
class SmoothedBCE(LabelSmoothingLoss):
    """Binary / multi-label cross-entropy with label smoothing toward 0.5.

    Each binary target becomes ``(1 - a) * y + a * 0.5`` -- the same choice as
    ``keras.losses.BinaryCrossentropy(label_smoothing=a)``: every output is its own
    two-class problem, so its uniform prior is 1/2. Values equal Keras' BCE with the same
    factor; unlike it, the factor can be scheduled.

    Args:
        label_smoothing: Float in ``[0, 1]``.
        from_logits: Whether ``y_pred`` holds logits.
        axis: The axis along which the mean is taken. Defaults to ``-1``.
        reduction: As for any Keras loss.
        name: Name of the loss instance.
        dtype: Dtype of the loss computation (float32 by default).

    Example:

    >>> loss = keras_ls.SmoothedBCE(0.2, from_logits=True)
    >>> round(float(loss([[0.0, 1.0]], [[-1.0, 2.0]])), 4)
    0.3701
    >>> round(float(loss([1.0, 0.0], [[2.0], [1.0]])), 4)  # (B,) labels, (B, 1) logits
    0.7701
    """

    def __init__(
        self,
        label_smoothing: float = 0.1,
        *,
        from_logits: bool = False,
        axis: int = -1,
        **kwargs: Any,
    ):
        options = dict(from_logits=from_logits, axis=axis)
        super().__init__(smoothed_binary_crossentropy, label_smoothing, **options, **kwargs)
