"""Two relatives of label smoothing: a confidence penalty and a smoothed Dice loss.

- :class:`ConfidencePenaltyCE` (Pereyra et al. 2017, "Regularizing Neural
  Networks by Penalizing Confident Output Distributions"): cross-entropy minus
  ``beta`` times the entropy of the prediction. Where label smoothing pulls the
  *target* toward uniform, the penalty pulls the *prediction* toward it.
- :class:`SmoothedDice`: soft Dice loss on label-smoothed one-hot targets, for
  segmentation masks of any rank (class axis last), as named in Composer's
  label-smoothing method card.

Both keep their factor in the same non-trainable variable as ``SmoothedCE``
(they subclass the core ``_SmoothingLoss``), so ``keras_ls.SmoothingScheduler``
finds them in ``model.loss`` and schedules ``beta`` / the smoothing factor
with no extra code.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

# Keras attaches masks this way for its own `ignore_class`; no public alias exists.
from keras_ls.losses import (
    _check_axis,
    _check_ignore_class,
    _is_sparse,
    _log_probs,
    _mask_for_reduction,
    _SmoothingLoss,
)
from keras_ls.smoothing import _prior_for_axis, mix, validate_factor, validate_prior

__all__ = ["ConfidencePenaltyCE", "SmoothedDice"]


@keras.saving.register_keras_serializable(package="keras_ls")
class ConfidencePenaltyCE(_SmoothingLoss):
    """Cross-entropy with a confidence penalty: ``CE(y, p) - beta * H(p)``.

    ``H(p) = -sum_k p_k log p_k`` is the entropy of the predicted distribution
    (Pereyra et al. 2017). The entropy is computed from ``log_softmax`` of the
    logits, so no dense target is built for integer labels and the value stays
    finite for extreme logits. Labels are integer (any shape of ``y_pred``
    without the class axis, optionally with a trailing 1) or one-hot/soft
    (same shape as ``y_pred``), read from the shapes as in ``SmoothedCE``.

    The penalty weight ``beta`` is held in the variable that ``SmoothedCE``
    uses for its smoothing factor: ``loss.label_smoothing`` *is* ``beta`` here
    (``loss.beta`` is an alias), so ``keras_ls.SmoothingScheduler`` schedules
    it like any smoothing factor. Like every factor in keras-ls it must lie in
    ``[0, 1]`` (the core validates all factors to that range).

    Note the loss can be negative (for ``beta > 0`` and a confident-enough
    correct prediction it is bounded below by ``-beta * log K``).

    Args:
        beta: Float in ``[0, 1]``, the weight of the entropy term. ``0`` is
            plain cross-entropy.
        from_logits: Whether ``y_pred`` holds logits (recommended) rather
            than probabilities.
        ignore_class: Optional integer label whose positions are excluded from
            the loss and from the mean. Integer labels only.
        axis: The class axis of ``y_pred``. Defaults to ``-1``.
        reduction: As for any Keras loss. Defaults to
            ``"sum_over_batch_size"``; with ``ignore_class`` the mean is over
            the non-ignored positions.
        name: Name of the loss instance.
        dtype: Dtype of the loss computation (``floatx`` by default).

    Example:

    >>> loss = keras_ls.ConfidencePenaltyCE(0.1, from_logits=True)
    >>> loss([1, 0], [[0.0, 2.0, 0.0], [1.0, 0.0, 0.0]])  # integer labels

    Scheduling ``beta`` (e.g. annealing the penalty away):

    ```python
    model.compile("adam", keras_ls.ConfidencePenaltyCE(0.3, from_logits=True))
    model.fit(x, y, epochs=10, callbacks=[
        keras_ls.SmoothingScheduler(keras_ls.schedules.Linear(0.3, 0.0, steps=9))])
    ```
    """

    def __init__(
        self,
        beta: float = 0.1,
        *,
        from_logits: bool = False,
        ignore_class: int | None = None,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str = "confidence_penalty_ce",
        dtype: Any = None,
    ):
        super().__init__(
            validate_factor(beta, "beta"),
            from_logits=from_logits,
            reduction=reduction,
            name=name,
            dtype=dtype,
        )
        self.ignore_class = _check_ignore_class(ignore_class)
        self.axis = _check_axis(axis)

    @property
    def beta(self) -> float:
        """The entropy weight (the same variable as ``label_smoothing``)."""
        return self.label_smoothing

    @beta.setter
    def beta(self, value: float) -> None:
        self.label_smoothing = validate_factor(value, "beta")

    def call(self, y_true: Any, y_pred: Any) -> Any:
        y_pred = ops.convert_to_tensor(y_pred)
        y_true = ops.convert_to_tensor(y_true)
        ndim = len(y_pred.shape)
        if ndim < 1:
            raise ValueError(
                f"`y_pred` must have a class axis; received shape {tuple(y_pred.shape)}."
            )
        axis = _check_axis(self.axis, ndim)
        sparse = _is_sparse(y_true, y_pred, axis)
        if axis != ndim - 1:
            y_pred = ops.moveaxis(y_pred, axis, -1)
        logp = _log_probs(y_pred, self.from_logits)
        # H(p) = -<p, log p>; p = exp(log p) is exactly 0 where log p is very
        # negative, so the product never produces inf * 0.
        entropy = -ops.sum(ops.exp(logp) * logp, axis=-1)
        beta = self._factor(logp.dtype)
        if sparse:
            labels = y_true
            if len(labels.shape) == ndim:
                labels = ops.squeeze(labels, axis=axis)
            labels = ops.cast(labels, "int32")
            if self.ignore_class is not None:
                valid = ops.not_equal(labels, self.ignore_class)
                labels = ops.where(valid, labels, 0)
            nll = -ops.squeeze(ops.take_along_axis(logp, ops.expand_dims(labels, -1), axis=-1), -1)
            loss = nll - beta * entropy
            if self.ignore_class is not None:
                loss = ops.where(valid, loss, ops.zeros_like(loss))
                loss = _mask_for_reduction(loss, valid, self.reduction)
            return loss
        if self.ignore_class is not None:
            raise ValueError(
                "`ignore_class` applies to integer labels; received dense labels of "
                f"shape {tuple(y_true.shape)} for `y_pred` of shape {tuple(y_pred.shape)}."
            )
        y_true = ops.cast(y_true, logp.dtype)
        if axis != ndim - 1:
            y_true = ops.moveaxis(y_true, axis, -1)
        return -ops.sum(y_true * logp, axis=-1) - beta * entropy

    def get_config(self) -> dict:
        config = super().get_config()
        config["beta"] = config.pop("label_smoothing")
        config.update({"ignore_class": self.ignore_class, "axis": self.axis})
        return config


@keras.saving.register_keras_serializable(package="keras_ls")
class SmoothedDice(_SmoothingLoss):
    """Soft Dice loss on label-smoothed one-hot targets, for segmentation.

    For each sample and class ``k``, with ``p`` the predicted probabilities
    and ``t = (1 - a) * onehot + a * prior`` the smoothed target (``prior``
    uniform ``1/K`` unless given), summed over every non-batch, non-class
    position (``H, W`` for ``(B, H, W, K)`` masks; any rank works)::

        dice_k = (2 * sum(p * t) + epsilon) / (sum(p) + sum(t) + epsilon)
        loss   = 1 - mean_k dice_k

    so the loss has one value per sample and Keras' reduction and
    ``sample_weight`` apply as usual. A dense one-hot target is inherent to
    Dice (every class needs its overlap), so integer masks ``(B, H, W)`` or
    ``(B, H, W, 1)`` are one-hot encoded; one-hot/soft masks of the shape of
    ``y_pred`` are used as they are.

    Effect of the smoothing: every class gets target mass ``a * prior_k`` at
    every pixel, so a class *absent* from an image is no longer an empty set
    -- its Dice term now asks for a faint, uniform prediction instead of
    exactly zero, and the large-but-wrong-denominator behaviour of Dice on
    empty classes is softened. For present classes the target inside the
    object drops to ``1 - a + a * prior_k``. With ``a = 0`` this is the plain
    soft Dice loss.

    Args:
        label_smoothing: Float in ``[0, 1]`` (schedulable with
            ``keras_ls.SmoothingScheduler``).
        from_logits: Whether ``y_pred`` holds logits (a softmax over the class
            axis is applied) rather than probabilities.
        epsilon: Positive smoothing constant of the Dice ratio (keeps empty
            classes finite). Defaults to ``1.0``.
        ignore_class: Optional integer label (e.g. ``255`` for "void") whose
            pixels are left out of every sum. Integer masks only.
        prior: Optional length-K class prior to smooth toward.
        reduction: As for any Keras loss (over the per-sample values).
        name: Name of the loss instance.
        dtype: Dtype of the loss computation (``floatx`` by default).

    Example:

    >>> loss = keras_ls.SmoothedDice(0.1, from_logits=True)
    >>> masks = np.zeros((2, 8, 8), "int32"); masks[:, 2:5, 2:5] = 1
    >>> loss(masks, np.random.randn(2, 8, 8, 3))
    """

    def __init__(
        self,
        label_smoothing: float = 0.1,
        *,
        from_logits: bool = False,
        epsilon: float = 1.0,
        ignore_class: int | None = None,
        prior: Sequence[float] | np.ndarray | None = None,
        reduction: str | None = "sum_over_batch_size",
        name: str = "smoothed_dice",
        dtype: Any = None,
    ):
        super().__init__(
            label_smoothing, from_logits=from_logits, reduction=reduction, name=name, dtype=dtype
        )
        if (
            isinstance(epsilon, bool)
            or not isinstance(epsilon, (numbers.Real, np.floating))
            or not np.isfinite(epsilon)
            or epsilon <= 0
        ):
            raise ValueError(f"`epsilon` must be a finite number > 0; received {epsilon!r}.")
        self.epsilon = float(epsilon)
        self.ignore_class = _check_ignore_class(ignore_class)
        self.prior = validate_prior(prior, name="prior")

    def call(self, y_true: Any, y_pred: Any) -> Any:
        y_pred = ops.convert_to_tensor(y_pred)
        y_true = ops.convert_to_tensor(y_true)
        ndim = len(y_pred.shape)
        if ndim < 2:
            raise ValueError(
                "`y_pred` must have a batch and a class axis, e.g. (B, H, W, K); "
                f"received shape {tuple(y_pred.shape)}."
            )
        num_classes = y_pred.shape[-1]
        if num_classes is None:
            raise ValueError("SmoothedDice needs a known number of classes (last axis).")
        if self.prior is not None and self.prior.size != num_classes:
            raise ValueError(
                f"`prior` has {self.prior.size} entries but `y_pred` has {num_classes} "
                "classes on its last axis."
            )
        probs = ops.softmax(y_pred, axis=-1) if self.from_logits else y_pred
        valid = None
        if _is_sparse(y_true, y_pred, ndim - 1):
            labels = y_true
            if len(labels.shape) == ndim:
                labels = ops.squeeze(labels, axis=-1)
            labels = ops.cast(labels, "int32")
            if self.ignore_class is not None:
                valid = ops.expand_dims(
                    ops.cast(ops.not_equal(labels, self.ignore_class), probs.dtype), -1
                )
                labels = ops.where(ops.not_equal(labels, self.ignore_class), labels, 0)
            onehot = ops.one_hot(labels, num_classes, dtype=probs.dtype)
        else:
            if self.ignore_class is not None:
                raise ValueError(
                    "`ignore_class` applies to integer masks; received dense masks of "
                    f"shape {tuple(y_true.shape)} for `y_pred` of shape "
                    f"{tuple(y_pred.shape)}."
                )
            onehot = ops.cast(y_true, probs.dtype)
        prior = _prior_for_axis(self.prior, num_classes, ndim, -1)
        if isinstance(prior, np.ndarray):
            prior = ops.convert_to_tensor(prior, dtype=probs.dtype)
        target = mix(onehot, prior, self._factor(probs.dtype))
        if valid is not None:
            target = target * valid
            probs = probs * valid
        spatial = tuple(range(1, ndim - 1))  # () for (B, K): Dice per sample
        if spatial:
            inter = ops.sum(probs * target, axis=spatial)
            denom = ops.sum(probs, axis=spatial) + ops.sum(target, axis=spatial)
        else:
            inter, denom = probs * target, probs + target
        eps = ops.cast(self.epsilon, probs.dtype)
        dice = (2.0 * inter + eps) / (denom + eps)
        return 1.0 - ops.mean(dice, axis=-1)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "epsilon": self.epsilon,
                "ignore_class": self.ignore_class,
                "prior": None if self.prior is None else self.prior.tolist(),
            }
        )
        return config
