"""Online label smoothing (Zhang et al. 2021, "Delving Deep into Label Smoothing").

Instead of smoothing toward a fixed uniform prior, each class ``c`` is smoothed toward a
*learned* soft label ``S[c]``: the average predicted distribution of the training samples of
class ``c`` that the model classified correctly in the previous epoch. The paper's loss is
``alpha * CE(onehot) + (1 - alpha) * CE(S[y])``; cross-entropy is linear in its target, so
this is the core formula with a per-class prior::

    loss = -mix(log p_y, <S[y], log p>, a)      a = 1 - alpha

Two pieces live here: :class:`OnlineSoftTargets`, the state (a ``keras.metrics.Metric``, so
that its variables travel through the compiled step on every backend once attached to the
model), and :class:`OnlineSmoothedCE`, the loss, which reads ``S`` and accumulates the
epoch's statistics in the same call. The callback that swaps ``S`` at each epoch start is
``keras_ls.OnlineLabelSmoothing`` (:mod:`keras_ls.callbacks`).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from keras_ls.losses._base import LabelSmoothingLoss
from keras_ls.losses._labels import canonicalize, check_ignore_class, log_probs
from keras_ls.smoothing import mix, validate_factor, validate_factor_if_number

__all__ = [
    "MAX_CLASSES",
    "OnlineSmoothedCE",
    "OnlineSoftTargets",
    "initial_soft_targets",
    "online_smoothed_crossentropy",
]

#: Largest supported number of classes. The state is two ``K x K`` float32 matrices
#: (targets in use + accumulators): at K = 4096 that is 2 x 64 MiB, and the matrix is also
#: passed through every compiled step.
MAX_CLASSES = 4096


def _check_num_classes(num_classes: Any) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise TypeError(f"`num_classes` must be an integer >= 2; received {num_classes!r}.")
    if num_classes < 2:
        raise ValueError(f"`num_classes` must be an integer >= 2; received {num_classes}.")
    if num_classes > MAX_CLASSES:
        mib = 2 * num_classes * num_classes * 4 / 2**20
        raise ValueError(
            f"`num_classes`={num_classes} is too large for online label smoothing: its "
            f"state is two num_classes x num_classes float32 matrices ({mib:,.0f} MiB). "
            f"The limit is num_classes <= {MAX_CLASSES} (2 x 64 MiB)."
        )
    return int(num_classes)


def initial_soft_targets(num_classes: int, initial_smoothing: float) -> np.ndarray:
    """Epoch-0 soft labels: ``mix(I, 1/K, initial_smoothing)`` (uniform smoothing)."""
    return mix(np.eye(num_classes), 1.0 / num_classes, initial_smoothing)


def online_smoothed_crossentropy(
    y_true: Any,
    y_pred: Any,
    soft_targets: Any,
    label_smoothing: Any = 0.5,
    *,
    from_logits: bool = False,
    ignore_class: int | None = None,
) -> Any:
    """``-mix(log p_y, <S[y], log p>, a)`` per position, ``S = soft_targets`` (K, K).

    Integer labels only (shape ``y_pred.shape[:-1]``, optionally with a trailing 1); only
    the rows ``S[y]`` are gathered and no gradient flows into ``S``.

    Example:

    >>> S = initial_soft_targets(3, 0.3)
    >>> v = online_smoothed_crossentropy([1], [[0.0, 2.0, 0.0]], S, 1.0, from_logits=True)
    >>> round(float(keras.ops.convert_to_numpy(v)[0]), 4)  # = SmoothedCE(0.3) at a = 1
    0.6395
    """
    label_smoothing = validate_factor_if_number(label_smoothing)
    labels = canonicalize(y_true, y_pred, ignore_class=ignore_class, dense=False)
    logp = log_probs(labels.y_pred, from_logits)
    rows = ops.take(ops.convert_to_tensor(soft_targets), labels.labels, axis=0)
    rows = ops.stop_gradient(ops.cast(rows, logp.dtype))
    a = ops.cast(label_smoothing, logp.dtype)
    return labels.finish(-mix(labels.at_labels(logp), ops.sum(rows * logp, axis=-1), a))


@keras.saving.register_keras_serializable(package="keras_ls")
class OnlineSoftTargets(keras.metrics.Metric):
    """The state of online label smoothing.

    Variables (all non-trainable, saved with the model):

    - ``soft_targets`` ``(K, K)``: row ``c`` is the soft label used for class ``c`` in the
      current epoch;
    - ``sums`` ``(K, K)`` and ``counts`` ``(K,)``: per true class, the sum of the predicted
      distributions of correctly classified samples seen since the last swap, and their
      (sample-weighted) number;
    - ``collecting``: 1 while training, 0 otherwise (set by the callback), so validation
      data never leaks into the soft labels.

    :meth:`accumulate` (called by :class:`OnlineSmoothedCE` inside the train step) adds a
    batch; :meth:`swap` replaces each row of ``soft_targets`` that saw at least one correct
    sample by the normalised accumulator row (other rows keep their value) and clears the
    accumulators. ``update_state`` and ``reset_state`` do nothing: the statistics come from
    the loss (so listing this metric in ``compile``, as 0.1 required, counts nothing twice)
    and their lifetime is driven by ``keras_ls.OnlineLabelSmoothing``, which swaps at
    epoch start -- a checkpoint written at any epoch end holds everything needed to resume.

    ``result()`` is the mean diagonal of ``soft_targets``, the average weight the current
    targets put on the true class (``1 - (K-1)/K * a0`` at epoch 0).

    Args:
        num_classes: Number of classes ``K`` (at most :data:`MAX_CLASSES`).
        initial_smoothing: Uniform smoothing of the epoch-0 soft labels, in ``[0, 1]``;
            ``0`` starts from one-hot.
        from_logits: Whether ``y_pred`` holds logits.
        ignore_class: Optional label whose positions are not accumulated.
        name: Metric name (appears in the logs).
        dtype: Dtype of the state (float32 by default).
    """

    def __init__(
        self,
        num_classes: int,
        initial_smoothing: float = 0.1,
        *,
        from_logits: bool = False,
        ignore_class: int | None = None,
        name: str = "online_ls",
        dtype: Any = None,
    ):
        super().__init__(name=name, dtype=dtype)
        self.num_classes = _check_num_classes(num_classes)
        self.initial_smoothing = validate_factor(initial_smoothing, "initial_smoothing")
        self.from_logits = bool(from_logits)
        self.ignore_class = check_ignore_class(ignore_class)
        k = self.num_classes
        init = initial_soft_targets(k, self.initial_smoothing).astype(np.float32)
        # The matrix and switch are assigned from callbacks (cross-replica under
        # tf.distribute): every replica must hold the same copy.
        self.soft_targets = self.add_variable(
            shape=(k, k),
            initializer=lambda shape, dtype=None: ops.convert_to_tensor(init, dtype=dtype),
            aggregation="only_first_replica",
            name="soft_targets",
        )
        self.sums = self.add_variable(shape=(k, k), initializer="zeros", name="sums")
        self.counts = self.add_variable(shape=(k,), initializer="zeros", name="counts")
        self.collecting = self.add_variable(
            shape=(), initializer="zeros", aggregation="only_first_replica", name="collecting"
        )

    def accumulate(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        """Add one batch's correctly classified predictions (while ``collecting`` is 1)."""
        labels = canonicalize(y_true, y_pred, ignore_class=self.ignore_class, dense=False)
        k = self.num_classes
        probs = ops.cast(labels.y_pred, self.dtype)
        probs = (
            ops.softmax(probs, -1)
            if self.from_logits
            else probs / ops.sum(probs, -1, keepdims=True)
        )
        hit = ops.equal(ops.cast(ops.argmax(probs, -1), "int32"), labels.labels)
        weight = ops.cast(hit, self.dtype)
        for mask in (labels.valid, labels.invalid):
            if mask is not None:  # ignored positions, and invalid labels, teach nothing
                keep = mask if mask is labels.valid else ops.logical_not(mask)
                weight = weight * ops.cast(keep, self.dtype)
        if sample_weight is not None:
            sw = ops.cast(sample_weight, self.dtype)
            while len(sw.shape) < len(weight.shape):  # (B,) weights for (B, T) labels
                sw = ops.expand_dims(sw, -1)
            weight = weight * sw
        weight = ops.reshape(weight * ops.cast(self.collecting, self.dtype), (-1,))
        ids = ops.reshape(labels.labels, (-1,))
        rows = ops.reshape(probs, (-1, k)) * weight[:, None]
        # Per true class, the sum of its correct predictions (no (N, K) one-hot).
        self.sums.assign_add(ops.stop_gradient(ops.segment_sum(rows, ids, num_segments=k)))
        self.counts.assign_add(ops.stop_gradient(ops.segment_sum(weight, ids, num_segments=k)))

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        """No-op: :class:`OnlineSmoothedCE` accumulates (see the class docstring)."""

    def result(self) -> Any:
        return ops.mean(ops.diagonal(self.soft_targets))

    def reset_state(self) -> None:
        """No-op on purpose: see the class docstring."""

    def swap(self) -> None:
        """Install the accumulated soft labels and clear the accumulators."""
        sums = self.sums.value
        row_sum = ops.sum(sums, axis=-1, keepdims=True)
        seen = ops.greater(ops.convert_to_tensor(self.counts.value)[:, None], 0)
        new = ops.where(seen, sums / ops.where(seen, row_sum, 1.0), self.soft_targets.value)
        self.soft_targets.assign(new)
        self.sums.assign(ops.zeros_like(sums))
        self.counts.assign(ops.zeros_like(self.counts.value))

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "dtype": self.dtype,
            "num_classes": self.num_classes,
            "initial_smoothing": self.initial_smoothing,
            "from_logits": self.from_logits,
            "ignore_class": self.ignore_class,
        }


@keras.saving.register_keras_serializable(package="keras_ls")
class OnlineSmoothedCE(LabelSmoothingLoss):
    """Cross-entropy toward online, per-class soft labels (Zhang et al. 2021).

    ``loss = (1 - a) * CE(onehot(y), p) + a * CE(S[y], p)`` where ``S`` is the soft-label
    matrix held by ``loss.targets`` (an :class:`OnlineSoftTargets`) and ``a =
    label_smoothing`` -- the paper's ``1 - alpha``; its default ``alpha = 0.5`` is
    ``label_smoothing=0.5``. See :func:`online_smoothed_crossentropy`.

    Train with the ``keras_ls.OnlineLabelSmoothing`` callback: it makes the state part of
    the model (so it travels through the compiled step on every backend and is saved with
    it), switches the statistics on during training and off during validation, and swaps
    ``S`` at every epoch start. Without it ``S`` stays at its epoch-0 value (uniform
    smoothing with ``initial_smoothing``), i.e. the loss is plain label smoothing.

    Args:
        num_classes: Number of classes ``K``; ``K <= MAX_CLASSES`` (4096), as the state is
            two ``K x K`` float32 matrices.
        label_smoothing: Weight ``a`` in ``[0, 1]`` of the soft-label term (``1 - alpha``
            in the paper). Schedulable with ``keras_ls.SmoothingScheduler``.
        initial_smoothing: Uniform smoothing of the epoch-0 soft labels.
        from_logits: Whether ``y_pred`` holds logits (recommended).
        ignore_class: Optional integer label excluded from the loss (and its mean) and from
            the statistics.
        reduction: As for any Keras loss.
        name: Name of the loss instance.
        dtype: Dtype of the loss computation.

    Example:

    ```python
    x, y = np.random.rand(256, 8), np.random.randint(0, 10, 256)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(10)])
    loss = keras_ls.OnlineSmoothedCE(num_classes=10, from_logits=True)
    model.compile("adam", loss)
    model.fit(x, y, epochs=3, verbose=0, callbacks=[keras_ls.OnlineLabelSmoothing()])
    soft = loss.targets.soft_targets  # the learned (K, K) soft labels, rows summing to 1
    ```
    """

    def __init__(
        self,
        num_classes: int,
        label_smoothing: float = 0.5,
        *,
        initial_smoothing: float = 0.1,
        from_logits: bool = False,
        ignore_class: int | None = None,
        **kwargs: Any,
    ):
        num_classes = _check_num_classes(num_classes)
        options = dict(from_logits=from_logits, ignore_class=ignore_class)
        super().__init__(online_smoothed_crossentropy, label_smoothing, **options, **kwargs)
        self.num_classes = num_classes
        self.targets = OnlineSoftTargets(
            num_classes,
            initial_smoothing,
            from_logits=from_logits,
            ignore_class=self.ignore_class,
            name=f"{self.name}_targets" if self.name != "online_smoothed_ce" else "online_ls",
        )

    @property
    def initial_smoothing(self) -> float:
        return self.targets.initial_smoothing

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        self._check_classes(y_pred)
        # The statistics need the sample weights, which `call` never sees.
        with keras.name_scope(self.name):
            self.targets.accumulate(
                y_true, ops.convert_to_tensor(y_pred, self.dtype), sample_weight
            )
        return super().__call__(y_true, y_pred, sample_weight)

    def _check_classes(self, y_pred: Any) -> None:
        k = getattr(y_pred, "shape", np.shape(y_pred))[-1]
        if k is not None and k != self.num_classes:
            raise ValueError(
                f"`y_pred` has {k} classes on its last axis but `num_classes`={self.num_classes}."
            )

    def call(self, y_true: Any, y_pred: Any) -> Any:
        self._check_classes(y_pred)
        return self.fn(
            y_true,
            y_pred,
            self.targets.soft_targets.value,
            self.factor("label_smoothing", "float32"),
            from_logits=self.from_logits,
            ignore_class=self.ignore_class,
        )

    # Keras saves compiled metrics' variables nowhere, but it walks the model's `loss`
    # attribute when saving (`model.save`, `save_weights`, hence BackupAndRestore): the
    # loss carries the state into the checkpoint.
    STATE = ("soft_targets", "sums", "counts")

    def save_own_variables(self, store: Any) -> None:
        super().save_own_variables(store)
        for i, name in enumerate(self.STATE):
            store[str(i)] = ops.convert_to_numpy(getattr(self.targets, name).value)

    def load_own_variables(self, store: Any) -> None:
        super().load_own_variables(store)
        for i, name in enumerate(self.STATE):
            value = np.asarray(store[str(i)])
            var = getattr(self.targets, name)
            if tuple(value.shape) != tuple(var.shape):
                raise ValueError(
                    f"Saved online label smoothing state `{name}` has shape {value.shape}; "
                    f"this loss expects {tuple(var.shape)} (num_classes={self.num_classes})."
                )
            var.assign(value)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {"num_classes": self.num_classes, "initial_smoothing": self.initial_smoothing}
        )
        return config
