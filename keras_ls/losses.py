"""Label-smoothed cross-entropy losses for Keras 3 (TF, JAX and torch backends).

``SmoothedCE`` is a drop-in for both ``SparseCategoricalCrossentropy`` and
``CategoricalCrossentropy``; ``SmoothedBCE`` for ``BinaryCrossentropy``. The
smoothing factor lives in a non-trainable backend variable, so assigning
``loss.label_smoothing`` changes the value used by an already-traced train
step (``tf.function``, ``jit_compile=True``) without a retrace.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops, tree

# Keras attaches masks this way for its own `ignore_class`; no public alias exists.
from keras.src.backend import set_keras_mask

from keras_ls import _backend
from keras_ls import schedules as _schedules
from keras_ls.smoothing import _prior_for_axis, mix, validate_factor, validate_prior

__all__ = ["SmoothedCE", "SmoothedBCE", "sparse_smoothed_crossentropy"]


class _SmoothingLoss(keras.losses.Loss):
    """Base: holds ``label_smoothing`` in a non-trainable float32 variable.

    Mirrors how ``keras.optimizers.Optimizer`` holds its learning rate: a
    ``keras.Variable`` read inside the traced step, and a property whose setter
    validates and ``assign``s (so the compiled graph sees the new value).
    """

    def __init__(
        self,
        label_smoothing: float,
        *,
        from_logits: bool,
        reduction: str | None,
        name: str,
        dtype: Any = None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        value = validate_factor(label_smoothing, "label_smoothing")
        self.from_logits = bool(from_logits)
        self._label_smoothing = keras.Variable(
            value, dtype="float32", trainable=False, name="label_smoothing"
        )

    @property
    def label_smoothing(self) -> float:
        """The current smoothing factor, as a Python float."""
        return float(ops.convert_to_numpy(self._label_smoothing))

    @label_smoothing.setter
    def label_smoothing(self, value: float) -> None:
        value = validate_factor(value, "label_smoothing")
        self._label_smoothing.assign(value)

    @property
    def label_smoothing_variable(self) -> keras.Variable:
        """The backend variable read by the traced step."""
        return self._label_smoothing

    def _factor(self, dtype: str) -> Any:
        return ops.cast(self._label_smoothing, dtype)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                # The *current* value: a model saved mid-schedule reloads with it.
                "label_smoothing": self.label_smoothing,
                "from_logits": self.from_logits,
                "dtype": self._dtype_policy.name,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_ls")
class SmoothedCE(_SmoothingLoss):
    """Cross-entropy with label smoothing, for integer *or* one-hot/soft labels.

    The target is ``(1 - a) * y + a * prior`` with ``a = label_smoothing`` and
    ``prior`` uniform (``1/K``) unless given. Which label form is used is read
    from the shapes, as Keras' two losses expect them:

    - integer labels of shape ``y_pred.shape`` minus the class axis, or with a
      trailing 1 (``(B,)``, ``(B, 1)``, ``(B, T)``, ``(B, H, W)``): the loss is
      computed from log-softmax terms, ``-[(1-a) log p_y + a <prior, log p>]``,
      and no one-hot or dense target is ever built;
    - one-hot or soft labels of the same shape as ``y_pred`` (e.g. from
      MixUp/CutMix): the dense target is smoothed, exactly as
      ``keras.losses.CategoricalCrossentropy(label_smoothing=a)`` does.

    Values equal ``CategoricalCrossentropy(label_smoothing=a)`` on dense labels
    and ``torch.nn.functional.cross_entropy(logits, y, label_smoothing=a,
    ignore_index=i)`` on integer labels.

    Args:
        label_smoothing: Float in ``[0, 1]``; ``0`` is plain cross-entropy.
            Read/assign it later through ``loss.label_smoothing`` (or let
            ``keras_ls.SmoothingScheduler`` do it during ``fit``).
        from_logits: Whether ``y_pred`` holds logits (recommended) rather
            than probabilities.
        ignore_class: Optional integer label (e.g. padding) whose positions are
            excluded from the loss and from the mean. Integer labels only.
        prior: Optional length-K vector (non-negative, summing to 1), e.g. the
            class frequencies, to smooth toward instead of uniform.
        axis: The class axis of ``y_pred``. Defaults to ``-1``.
        reduction: As for any Keras loss. Defaults to
            ``"sum_over_batch_size"``; with ``ignore_class`` the mean is over
            the non-ignored positions, and an all-ignored batch gives 0.
        name: Name of the loss instance.
        dtype: Dtype of the loss computation. Defaults to ``floatx``
            (float32): float16/bfloat16 predictions are upcast, as Keras does.

    Example:

    >>> loss = keras_ls.SmoothedCE(0.1, from_logits=True)
    >>> loss([1, 0], [[0.0, 2.0, 0.0], [1.0, 0.0, 0.0]])  # sparse labels
    >>> loss([[0, 1, 0], [1, 0, 0]], [[0.0, 2.0, 0.0], [1.0, 0.0, 0.0]])  # same value

    Usage with `compile()` and a schedule:

    ```python
    model.compile(optimizer="adam", loss=keras_ls.SmoothedCE(0.1, from_logits=True))
    model.fit(x, y, epochs=10, callbacks=[
        keras_ls.SmoothingScheduler(keras_ls.schedules.Cosine(0.1, 0.0, steps=10))])
    ```
    """

    def __init__(
        self,
        label_smoothing: float = 0.1,
        *,
        from_logits: bool = False,
        ignore_class: int | None = None,
        prior: Sequence[float] | np.ndarray | None = None,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str = "smoothed_ce",
        dtype: Any = None,
    ):
        super().__init__(
            label_smoothing, from_logits=from_logits, reduction=reduction, name=name, dtype=dtype
        )
        self.ignore_class = _check_ignore_class(ignore_class)
        self.axis = _check_axis(axis)
        self.prior = validate_prior(prior, name="prior")

    def call(self, y_true: Any, y_pred: Any) -> Any:
        y_pred = ops.convert_to_tensor(y_pred)
        y_true = ops.convert_to_tensor(y_true)
        ndim = len(y_pred.shape)
        if ndim < 1:
            raise ValueError(
                f"`y_pred` must have a class axis; received shape {tuple(y_pred.shape)}."
            )
        axis = _check_axis(self.axis, ndim)
        num_classes = y_pred.shape[axis]
        if self.prior is not None and num_classes is not None and self.prior.size != num_classes:
            raise ValueError(
                f"`prior` has {self.prior.size} entries but `y_pred` has {num_classes} "
                f"classes on axis {self.axis}."
            )
        a = self._factor(y_pred.dtype)
        if _is_sparse(y_true, y_pred, axis):
            return sparse_smoothed_crossentropy(
                y_true,
                y_pred,
                a,
                from_logits=self.from_logits,
                ignore_class=self.ignore_class,
                prior=self.prior,
                axis=axis,
                reduction=self.reduction,
            )
        if self.ignore_class is not None:
            raise ValueError(
                "`ignore_class` applies to integer labels; received dense labels of "
                f"shape {tuple(y_true.shape)} for `y_pred` of shape {tuple(y_pred.shape)}."
            )
        prior = _prior_for_axis(self.prior, num_classes or 1, ndim, axis)
        if isinstance(prior, np.ndarray):
            prior = ops.convert_to_tensor(prior.astype(np.float32), dtype=y_pred.dtype)
        elif num_classes is None:
            prior = 1.0 / ops.cast(ops.shape(y_pred)[axis], y_pred.dtype)
        target = mix(ops.cast(y_true, y_pred.dtype), prior, a)
        return ops.categorical_crossentropy(target, y_pred, from_logits=self.from_logits, axis=axis)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "ignore_class": self.ignore_class,
                "prior": None if self.prior is None else self.prior.tolist(),
                "axis": self.axis,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_ls")
class SmoothedBCE(_SmoothingLoss):
    """Binary / multi-label cross-entropy with label smoothing toward 0.5.

    Each binary target becomes ``(1 - a) * y + a * 0.5`` -- the same choice as
    ``keras.losses.BinaryCrossentropy(label_smoothing=a)``: every output is its
    own two-class problem, so its uniform prior is 1/2. Values equal Keras'
    BCE with the same factor; unlike it, the factor can be scheduled.

    Args:
        label_smoothing: Float in ``[0, 1]``.
        from_logits: Whether ``y_pred`` holds logits.
        axis: The axis along which the mean is taken. Defaults to ``-1``.
        reduction: As for any Keras loss.
        name: Name of the loss instance.
        dtype: Dtype of the loss computation (float32 by default).

    Example:

    >>> loss = keras_ls.SmoothedBCE(0.2, from_logits=True)
    >>> loss([[0.0, 1.0]], [[-1.0, 2.0]])
    """

    def __init__(
        self,
        label_smoothing: float = 0.1,
        *,
        from_logits: bool = False,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str = "smoothed_bce",
        dtype: Any = None,
    ):
        super().__init__(
            label_smoothing, from_logits=from_logits, reduction=reduction, name=name, dtype=dtype
        )
        self.axis = _check_axis(axis)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        y_pred = ops.convert_to_tensor(y_pred)
        y_true = ops.cast(y_true, y_pred.dtype)
        if tuple(y_true.shape) != tuple(y_pred.shape):
            raise ValueError(
                "`y_true` must have the shape of `y_pred` for SmoothedBCE; received "
                f"y_true.shape={tuple(y_true.shape)}, y_pred.shape={tuple(y_pred.shape)}."
            )
        target = mix(y_true, 0.5, self._factor(y_pred.dtype))
        return ops.mean(
            ops.binary_crossentropy(target, y_pred, from_logits=self.from_logits),
            axis=self.axis,
        )

    def get_config(self) -> dict:
        config = super().get_config()
        config["axis"] = self.axis
        return config


def _check_ignore_class(ignore_class: Any) -> int | None:
    if ignore_class is None:
        return None
    if isinstance(ignore_class, bool) or not isinstance(ignore_class, (int, np.integer)):
        raise TypeError(
            f"`ignore_class` must be an integer label or None; received {ignore_class!r}."
        )
    return int(ignore_class)


def _check_axis(axis: Any, ndim: int | None = None) -> int:
    """``axis`` as an int; with ``ndim``, range-checked and made non-negative."""
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"`axis` must be an integer; received {axis!r}.")
    if ndim is None:
        return int(axis)
    if not -ndim <= axis < ndim:
        raise ValueError(f"`axis`={axis} is out of range for `y_pred` of rank {ndim}.")
    return int(axis) % ndim


def _log_probs(y_pred: Any, from_logits: bool) -> Any:
    """Log-probabilities along the last axis.

    Logits go through ``log_softmax`` (finite for any finite logits);
    probabilities get the same normalise/clip/log as Keras' crossentropy.
    """
    if from_logits:
        return ops.log_softmax(y_pred, axis=-1)
    eps = keras.config.epsilon()
    y_pred = y_pred / ops.sum(y_pred, axis=-1, keepdims=True)
    return ops.log(ops.clip(y_pred, eps, 1.0 - eps))


def _mask_for_reduction(loss: Any, valid: Any, reduction: str | None) -> Any:
    """Exclude invalid positions so the mean is over valid ones *globally*.

    Single device (and JAX ``DataParallel``, where ``ops.sum`` already spans
    the global batch): attach a Keras mask, as Keras' own ``ignore_class``
    does, and ``Loss.__call__`` divides by the valid count.

    ``tf.distribute`` with several replicas: that mask would divide each
    replica's sum by its *own* valid count (then Keras scales by
    ``1/num_replicas``), a mean of per-replica means that differs from
    single-device training whenever replicas hold different numbers of
    valid positions. Instead, all-reduce the valid count and pre-scale the
    values by ``local_size * num_replicas / global_valid``, which Keras'
    ``sum / local_size / num_replicas`` turns into ``sum / global_valid``
    on every replica -- and the summed gradients into the global mean.
    """
    if keras.backend.backend() == "tensorflow" and reduction in ("sum_over_batch_size", "mean"):
        import tensorflow as tf

        ctx = tf.distribute.get_replica_context()
        replicas = getattr(ctx, "num_replicas_in_sync", 1)
        if ctx is not None and replicas > 1:
            dtype = loss.dtype
            local_valid = tf.reduce_sum(tf.cast(valid, dtype))
            global_valid = ctx.all_reduce(tf.distribute.ReduceOp.SUM, local_valid)
            local_size = tf.cast(tf.size(valid), dtype)
            scale = tf.math.divide_no_nan(local_size * replicas, global_valid)
            return loss * tf.stop_gradient(scale)
    set_keras_mask(loss, valid)
    return loss


def _collect_losses(obj: Any, cls: type = None) -> list:
    """Every loss of type ``cls`` (default: any keras-ls smoothed loss) in a
    loss structure -- single, list or dict, as given to ``compile`` -- once each."""
    cls = cls or _SmoothingLoss
    out: list = []
    for leaf in tree.flatten(obj) if obj is not None else []:
        if isinstance(leaf, cls) and all(leaf is not x for x in out):
            out.append(leaf)
    return out


def _is_sparse(y_true: Any, y_pred: Any, axis: int) -> bool:
    """Integer labels (class axis absent or of size 1) vs one-hot/soft labels."""
    t_shape, p_shape = tuple(y_true.shape), tuple(y_pred.shape)
    rest = p_shape[:axis] + p_shape[axis + 1 :]
    if len(t_shape) == len(p_shape) - 1:
        sparse_shape = t_shape
    elif len(t_shape) == len(p_shape) and t_shape[axis] == 1 and p_shape[axis] != 1:
        sparse_shape = t_shape[:axis] + t_shape[axis + 1 :]
    elif len(t_shape) == len(p_shape) and _dims_match(t_shape, p_shape):
        return False
    else:
        raise ValueError(
            "`y_true` fits neither integer labels (shape of `y_pred` without the class "
            f"axis {axis}, optionally with a trailing 1) nor one-hot/soft labels (shape "
            f"of `y_pred`); received y_true.shape={t_shape}, y_pred.shape={p_shape}."
        )
    if not _dims_match(sparse_shape, rest):
        raise ValueError(
            "Integer `y_true` must match `y_pred` without its class axis; received "
            f"y_true.shape={t_shape}, y_pred.shape={p_shape} (class axis {axis})."
        )
    return True


def _dims_match(a: tuple, b: tuple) -> bool:
    return len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a, b))


def sparse_smoothed_crossentropy(
    y_true: Any,
    y_pred: Any,
    label_smoothing: Any,
    *,
    from_logits: bool = False,
    ignore_class: int | None = None,
    prior: np.ndarray | None = None,
    axis: int = -1,
    reduction: str | None = None,
) -> Any:
    """Per-position smoothed CE for integer labels, without a dense target.

    ``-mix(log p_y, <prior, log p>, a)`` -- the smoothing formula applied to
    the two log-probability terms the smoothed target touches. Returns the
    unreduced loss (shape of ``y_true``); positions equal to ``ignore_class``
    are 0 and carry a Keras mask so that reductions average over the rest.
    """
    y_pred = ops.convert_to_tensor(y_pred)
    ndim = len(y_pred.shape)
    axis = axis % ndim
    if axis != ndim - 1:
        y_pred = ops.moveaxis(y_pred, axis, -1)
    labels = ops.convert_to_tensor(y_true)
    if len(labels.shape) == ndim:
        labels = ops.squeeze(labels, axis=axis)
    labels = ops.cast(labels, "int32")
    if ignore_class is not None:
        valid = ops.not_equal(labels, ignore_class)
        labels = ops.where(valid, labels, 0)
    if not from_logits:
        # Log-probabilities are valid logits for the kernel (their lse is 0).
        y_pred = _log_probs(y_pred, from_logits=False)
    loss = _backend.sparse_smoothed_crossentropy(y_pred, labels, label_smoothing, prior)
    if ignore_class is not None:
        loss = ops.where(valid, loss, ops.zeros_like(loss))
        loss = _mask_for_reduction(loss, valid, reduction)
    return loss


# Let Keras deserialize our schedules by name (schedules.py stays Keras-free).
for _cls in (
    _schedules.Constant,
    _schedules.Linear,
    _schedules.Cosine,
    _schedules.Piecewise,
    _schedules.Warmup,
):
    keras.saving.register_keras_serializable(package="keras_ls")(_cls)
