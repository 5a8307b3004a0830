"""Soft Dice loss on label-smoothed one-hot targets, for segmentation masks of any rank.

Named in Composer's label-smoothing method card: smoothing gives every class target mass
``a * prior_k`` at every pixel, so a class absent from an image is no longer an empty set.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from keras_ls.losses._base import LabelSmoothingLoss
from keras_ls.losses._labels import canonicalize, check_prior
from keras_ls.smoothing import mix, prior_for_axis, validate_factor_if_number

__all__ = ["SmoothedDice", "smoothed_dice"]


def _check_epsilon(epsilon: Any) -> float:
    if (
        isinstance(epsilon, bool)
        or not isinstance(epsilon, (numbers.Real, np.floating))
        or not np.isfinite(epsilon)
        or epsilon <= 0
    ):
        raise ValueError(f"`epsilon` must be a finite number > 0; received {epsilon!r}.")
    return float(epsilon)


def smoothed_dice(
    y_true: Any,
    y_pred: Any,
    label_smoothing: Any = 0.1,
    *,
    from_logits: bool = False,
    epsilon: float = 1.0,
    ignore_class: int | None = None,
    prior: Sequence[float] | np.ndarray | None = None,
) -> Any:
    """Per-sample soft Dice loss toward ``t = (1 - a) * onehot + a * prior``.

    For each sample and class ``k``, summed over every non-batch, non-class position
    (``H, W`` for ``(B, H, W, K)`` masks; any rank works, class axis last)::

        dice_k = (2 * sum(p * t) + epsilon) / (sum(p) + sum(t) + epsilon)
        loss   = 1 - mean_k dice_k

    A dense one-hot target is inherent to Dice (every class needs its overlap), so integer
    masks ``(B, H, W)`` or ``(B, H, W, 1)`` are one-hot encoded; one-hot/soft masks of
    ``y_pred``'s shape are used as they are. ``ignore_class`` pixels are left out of every
    sum. With ``a = 0`` this is the plain soft Dice loss.

    Example:

    >>> masks = np.zeros((1, 4, 4), "int32"); masks[:, 1:3, 1:3] = 1
    >>> v = smoothed_dice(masks, np.eye(2)[masks].astype("float32"), 0.0)
    >>> round(float(keras.ops.convert_to_numpy(v)[0]), 6)  # perfect prediction, a = 0
    0.0
    """
    label_smoothing = validate_factor_if_number(label_smoothing)
    eps = _check_epsilon(epsilon)
    labels = canonicalize(y_true, y_pred, ignore_class=ignore_class, min_rank=2)
    k = labels.num_classes
    if k is None:
        raise ValueError("SmoothedDice needs a known number of classes (last axis of `y_pred`).")
    prior = check_prior(prior, k)
    z = labels.y_pred
    probs = ops.softmax(z, axis=-1) if from_logits else z
    ndim = len(probs.shape)
    spatial = tuple(range(1, ndim - 1))  # () for (B, K): Dice per sample
    q = prior_for_axis(prior, k, ndim, -1)
    if isinstance(q, np.ndarray):
        q = ops.convert_to_tensor(q, dtype=probs.dtype)
    target = labels.target
    if labels.sparse:
        target = ops.one_hot(labels.labels, k, dtype=probs.dtype)
    target = mix(target, q, ops.cast(label_smoothing, probs.dtype))
    if labels.valid is not None:
        keep = ops.expand_dims(ops.cast(labels.valid, probs.dtype), -1)
        target, probs = target * keep, probs * keep
    if spatial:
        inter = ops.sum(probs * target, axis=spatial)
        denom = ops.sum(probs, axis=spatial) + ops.sum(target, axis=spatial)
    else:
        inter, denom = probs * target, probs + target
    dice = (2.0 * inter + eps) / (denom + eps)
    loss = 1.0 - ops.mean(dice, axis=-1)
    if labels.invalid is not None:  # a sample with any invalid label is NaN (see _labels)
        bad = ops.any(ops.reshape(labels.invalid, (ops.shape(loss)[0], -1)), axis=-1)
        loss = ops.where(bad, ops.cast(float("nan"), loss.dtype), loss)
    return loss


@keras.saving.register_keras_serializable(package="keras_ls")
class SmoothedDice(LabelSmoothingLoss):
    """Soft Dice loss on label-smoothed one-hot targets, for segmentation.

    See :func:`smoothed_dice` for the formula; the loss has one value per sample, so
    Keras' reduction and ``sample_weight`` apply as usual.

    Effect of the smoothing: every class gets target mass ``a * prior_k`` at every pixel,
    so a class *absent* from an image is no longer an empty set -- its Dice term now asks
    for a faint, uniform prediction instead of exactly zero, and the large-but-wrong-
    denominator behaviour of Dice on empty classes is softened. For present classes the
    target inside the object drops to ``1 - a + a * prior_k``.

    Args:
        label_smoothing: Float in ``[0, 1]`` (schedulable with ``keras_ls.SmoothingScheduler``).
        from_logits: Whether ``y_pred`` holds logits (a softmax over the class axis is
            applied) rather than probabilities.
        epsilon: Positive smoothing constant of the Dice ratio (keeps empty classes finite).
        ignore_class: Optional integer label (e.g. ``255`` for "void") whose pixels are left
            out of every sum. Integer masks only.
        prior: Optional length-K class prior to smooth toward.
        reduction: As for any Keras loss (over the per-sample values).
        name: Name of the loss instance.
        dtype: Dtype of the loss computation (``floatx`` by default).

    Example:

    >>> loss = keras_ls.SmoothedDice(0.1, from_logits=True)
    >>> masks = np.zeros((2, 8, 8), "int32"); masks[:, 2:5, 2:5] = 1
    >>> logits = np.where(np.eye(3)[masks] > 0, 4.0, -4.0).astype("float32")
    >>> round(float(loss(masks, logits)), 4)
    0.2804
    """

    def __init__(
        self,
        label_smoothing: float = 0.1,
        *,
        from_logits: bool = False,
        epsilon: float = 1.0,
        ignore_class: int | None = None,
        prior: Sequence[float] | np.ndarray | None = None,
        **kwargs: Any,
    ):
        options = dict(from_logits=from_logits, ignore_class=ignore_class, prior=prior)
        super().__init__(
            smoothed_dice, label_smoothing, epsilon=_check_epsilon(epsilon), **options, **kwargs
        )
