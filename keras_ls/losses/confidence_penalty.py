"""Confidence penalty (Pereyra et al. 2017): cross-entropy minus ``beta`` times the entropy.

Where label smoothing pulls the *target* toward uniform, the penalty pulls the *prediction*
toward it. ``ConfidencePenaltyCE`` declares ``beta`` schedulable, so
``keras_ls.SmoothingScheduler`` anneals it like a smoothing factor.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from keras_ls.losses._base import Hyperparameter, SchedulableLoss
from keras_ls.losses._labels import canonicalize, log_probs
from keras_ls.smoothing import validate_factor_if_number

__all__ = ["ConfidencePenaltyCE", "confidence_penalty_crossentropy"]


def confidence_penalty_crossentropy(
    y_true: Any,
    y_pred: Any,
    beta: Any = 0.1,
    *,
    from_logits: bool = False,
    ignore_class: int | None = None,
    axis: int = -1,
) -> Any:
    """``CE(y, p) - beta * H(p)`` per position, ``H(p) = -sum_k p_k log p_k``.

    Labels are integer or one-hot/soft, read from the shapes as in
    :func:`keras_ls.losses.smoothed_crossentropy`. The entropy is computed from
    ``log_softmax`` of the logits, so no dense target is built for integer labels and the
    value stays finite for extreme logits. The value can be negative (for ``beta > 0`` and a
    confident-enough correct prediction it is bounded below by ``-beta * log K``).

    Example:

    >>> v = confidence_penalty_crossentropy([1], [[0.0, 2.0, 0.0]], 0.1, from_logits=True)
    >>> round(float(keras.ops.convert_to_numpy(v)[0]), 4)
    0.173
    """
    beta = validate_factor_if_number(beta, "beta")
    labels = canonicalize(y_true, y_pred, axis=axis, ignore_class=ignore_class)
    logp = log_probs(labels.y_pred, from_logits)
    # p = exp(log p) is exactly 0 where log p is very negative: never inf * 0.
    entropy = -ops.sum(ops.exp(logp) * logp, axis=-1)
    beta = ops.cast(beta, logp.dtype)
    if labels.sparse:
        return labels.finish(-labels.at_labels(logp) - beta * entropy)
    return -ops.sum(labels.target * logp, axis=-1) - beta * entropy


@keras.saving.register_keras_serializable(package="keras_ls")
class ConfidencePenaltyCE(SchedulableLoss):
    """Cross-entropy with a confidence penalty: ``CE(y, p) - beta * H(p)``.

    See :func:`confidence_penalty_crossentropy`. ``beta`` is the schedulable
    hyperparameter (``schedulable = ("beta",)``): ``keras_ls.SmoothingScheduler`` drives
    it, e.g. to anneal the penalty away. Like every keras-ls factor it lies in ``[0, 1]``.

    Args:
        beta: Float in ``[0, 1]``, the weight of the entropy term. ``0`` is plain
            cross-entropy.
        from_logits: Whether ``y_pred`` holds logits (recommended) rather than probabilities.
        ignore_class: Optional integer label whose positions are excluded from the loss and
            from the mean. Integer labels only.
        axis: The class axis of ``y_pred``. Defaults to ``-1``.
        reduction: As for any Keras loss. Defaults to ``"sum_over_batch_size"``; with
            ``ignore_class`` the mean is over the non-ignored positions.
        name: Name of the loss instance.
        dtype: Dtype of the loss computation (``floatx`` by default).

    Example:

    >>> loss = keras_ls.ConfidencePenaltyCE(0.1, from_logits=True)
    >>> round(float(loss([1, 0], [[0.0, 2.0, 0.0], [1.0, 0.0, 0.0]])), 4)
    0.3134
    >>> loss.beta = 0.0  # plain cross-entropy
    >>> round(float(loss([1, 0], [[0.0, 2.0, 0.0], [1.0, 0.0, 0.0]])), 4)
    0.3955
    """

    schedulable = ("beta",)
    beta = Hyperparameter("The weight of the entropy term, in ``[0, 1]``.")

    def __init__(
        self,
        beta: float = 0.1,
        *,
        from_logits: bool = False,
        ignore_class: int | None = None,
        axis: int = -1,
        **kwargs: Any,
    ):
        options = dict(from_logits=from_logits, ignore_class=ignore_class, axis=axis)
        super().__init__(confidence_penalty_crossentropy, {"beta": beta}, **options, **kwargs)
