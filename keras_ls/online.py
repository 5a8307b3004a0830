"""Online label smoothing (Zhang et al. 2021, "Delving Deep into Label Smoothing").

Instead of smoothing toward a fixed uniform prior, each class ``c`` is smoothed
toward a *learned* soft label ``S[c]``: the average predicted distribution of
the training samples of class ``c`` that the model classified correctly in the
previous epoch. The paper's loss is ``alpha * CE(onehot) + (1 - alpha) *
CE(S[y])``; since cross-entropy is linear in its target this is exactly the
core formula with a per-class prior::

    loss = -mix(log p_y, <S[y], log p>, a)      a = 1 - alpha

so ``OnlineSmoothedCE`` is ``SmoothedCE`` whose prior is the row ``S[y]``, and
its ``label_smoothing`` (``a``) is schedulable by ``SmoothingScheduler``.

Three pieces, because Keras (JAX especially) only threads *model-tracked*
state through a compiled train step:

- :class:`OnlineSoftTargets`, a ``keras.metrics.Metric`` that holds the
  ``K x K`` matrix ``S`` in use, the epoch's accumulators (sum of predicted
  probability vectors of correctly classified samples, per true class, and
  their count) and a ``collecting`` switch. Being a compiled metric, its
  variables are updated inside the train step on every backend, saved by
  ``model.save`` / ``save_weights`` and therefore restored by
  ``keras.callbacks.BackupAndRestore``.
- :class:`OnlineSmoothedCE`, the loss; it reads ``S`` from its metric.
- :class:`OnlineLabelSmoothing`, the callback that swaps ``S`` at the start of
  each epoch and switches collection off during validation.

Usage:

```python
loss = keras_ls.OnlineSmoothedCE(num_classes=10, from_logits=True)
model.compile("adam", loss, metrics=[loss.targets, "accuracy"])
model.fit(x, y, epochs=30, validation_data=(xv, yv),
          callbacks=[keras_ls.OnlineLabelSmoothing()])
```
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops, tree

from keras_ls.losses import (
    _check_ignore_class,
    _collect_losses,
    _mask_for_reduction,
    _SmoothingLoss,
)
from keras_ls.smoothing import mix, validate_factor

__all__ = [
    "MAX_CLASSES",
    "OnlineSoftTargets",
    "OnlineSmoothedCE",
    "OnlineLabelSmoothing",
    "initial_soft_targets",
]

#: Largest supported number of classes. The state is two ``K x K`` float32
#: matrices (targets in use + accumulators): at K = 4096 that is 2 x 64 MiB,
#: and the matrix is also passed through every compiled step.
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


def _hard_labels(y_true: Any, y_pred: Any) -> Any:
    """Integer labels of shape ``y_pred.shape[:-1]`` (a trailing 1 is squeezed)."""
    t_shape, p_shape = tuple(y_true.shape), tuple(y_pred.shape)
    if len(t_shape) == len(p_shape) and t_shape[-1] == 1 and p_shape[-1] != 1:
        y_true = ops.squeeze(y_true, -1)
        t_shape = t_shape[:-1]
    if len(t_shape) != len(p_shape) - 1 or any(
        a is not None and b is not None and a != b for a, b in zip(t_shape, p_shape[:-1])
    ):
        raise ValueError(
            "Online label smoothing takes integer labels of shape `y_pred.shape[:-1]` "
            f"(optionally with a trailing 1); received y_true.shape={t_shape}, "
            f"y_pred.shape={p_shape}."
        )
    return ops.cast(y_true, "int32")


@keras.saving.register_keras_serializable(package="keras_ls")
class OnlineSoftTargets(keras.metrics.Metric):
    """The state of online label smoothing, as a compiled metric.

    Variables (all non-trainable, saved with the model):

    - ``soft_targets`` ``(K, K)``: row ``c`` is the soft label used for class
      ``c`` in the current epoch;
    - ``sums`` ``(K, K)`` and ``counts`` ``(K,)``: per true class, the sum of
      the predicted distributions of correctly classified samples seen since
      the last swap, and their (sample-weighted) number;
    - ``collecting``: 1 while training, 0 otherwise (set by the callback), so
      validation data never leaks into the soft labels.

    ``update_state`` accumulates; :meth:`swap` replaces each row of
    ``soft_targets`` that saw at least one correct sample by the normalised
    accumulator row (other rows keep their previous value) and clears the
    accumulators. ``reset_state`` deliberately does nothing: Keras resets
    metrics at every epoch start and at every ``evaluate``, but this state's
    lifetime is driven by :class:`OnlineLabelSmoothing` (which swaps at epoch
    start, so a checkpoint written at any epoch end, in any callback order,
    holds everything needed to resume).

    ``result()`` is the mean diagonal of ``soft_targets``, the average weight
    the current targets put on the true class (``1 - (K-1)/K * a0`` at epoch 0).

    Args:
        num_classes: Number of classes ``K`` (at most :data:`MAX_CLASSES`).
        initial_smoothing: Uniform smoothing of the epoch-0 soft labels, in
            ``[0, 1]``; ``0`` starts from one-hot.
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
        self.ignore_class = _check_ignore_class(ignore_class)
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

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        y_pred = ops.convert_to_tensor(y_pred)
        labels = _hard_labels(ops.convert_to_tensor(y_true), y_pred)
        k = self.num_classes
        probs = ops.cast(y_pred, self.dtype)
        probs = (
            ops.softmax(probs, -1)
            if self.from_logits
            else probs / ops.sum(probs, -1, keepdims=True)
        )
        weight = ops.cast(ops.equal(ops.argmax(probs, -1), labels), self.dtype)
        if self.ignore_class is not None:
            valid = ops.not_equal(labels, self.ignore_class)
            weight = weight * ops.cast(valid, self.dtype)
            labels = ops.where(valid, labels, 0)
        if sample_weight is not None:
            sw = ops.cast(sample_weight, self.dtype)
            while len(sw.shape) < len(weight.shape):  # (B,) weights for (B, T) labels
                sw = ops.expand_dims(sw, -1)
            weight = weight * sw
        weight = ops.reshape(weight * ops.cast(self.collecting, self.dtype), (-1,))
        probs = ops.reshape(probs, (-1, k))
        labels = ops.reshape(labels, (-1,))
        # (K, N) @ (N, K): per true class, the sum of the correct predictions.
        onehot = ops.one_hot(labels, k, dtype=self.dtype) * weight[:, None]
        self.sums.assign_add(ops.matmul(ops.transpose(onehot), probs))
        self.counts.assign_add(ops.sum(onehot, axis=0))

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
class OnlineSmoothedCE(_SmoothingLoss):
    """Cross-entropy toward online, per-class soft labels (Zhang et al. 2021).

    ``loss = (1 - a) * CE(onehot(y), p) + a * CE(S[y], p)`` where ``S`` is the
    soft-label matrix held by ``loss.targets`` (an :class:`OnlineSoftTargets`
    metric) and ``a = label_smoothing`` -- the paper's ``1 - alpha``; its
    default ``alpha = 0.5`` is ``label_smoothing=0.5``. Computed as
    ``-mix(log p_y, <S[y], log p>, a)``: only the ``(B, K)`` rows ``S[y]`` are
    gathered, no one-hot target is built, and no gradient flows into ``S``.

    Requirements: compile with ``metrics=[loss.targets]`` (so the statistics
    are updated inside the compiled step on every backend, and saved with the
    model) and train with the :class:`OnlineLabelSmoothing` callback. Without
    the callback ``S`` stays at its epoch-0 value (uniform smoothing with
    ``initial_smoothing``), i.e. the loss is plain label smoothing.

    Args:
        num_classes: Number of classes ``K``; ``K <= MAX_CLASSES`` (4096), as
            the state is two ``K x K`` float32 matrices.
        label_smoothing: Weight ``a`` in ``[0, 1]`` of the soft-label term
            (``1 - alpha`` in the paper). Schedulable with
            ``keras_ls.SmoothingScheduler``.
        initial_smoothing: Uniform smoothing of the epoch-0 soft labels.
        from_logits: Whether ``y_pred`` holds logits (recommended).
        ignore_class: Optional integer label excluded from the loss (and its
            mean) and from the statistics.
        reduction: As for any Keras loss.
        name: Name of the loss instance.
        dtype: Dtype of the loss computation.

    Example:

    ```python
    loss = keras_ls.OnlineSmoothedCE(num_classes=10, from_logits=True)
    model.compile("adam", loss, metrics=[loss.targets])
    model.fit(x, y, epochs=30, callbacks=[keras_ls.OnlineLabelSmoothing()])
    loss.targets.soft_targets  # the learned (K, K) soft labels
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
        reduction: str | None = "sum_over_batch_size",
        name: str = "online_smoothed_ce",
        dtype: Any = None,
    ):
        num_classes = _check_num_classes(num_classes)
        super().__init__(
            label_smoothing, from_logits=from_logits, reduction=reduction, name=name, dtype=dtype
        )
        self.num_classes = num_classes
        self.ignore_class = _check_ignore_class(ignore_class)
        self.targets = OnlineSoftTargets(
            num_classes,
            initial_smoothing,
            from_logits=from_logits,
            ignore_class=self.ignore_class,
            name=f"{name}_targets" if name != "online_smoothed_ce" else "online_ls",
        )

    @property
    def initial_smoothing(self) -> float:
        return self.targets.initial_smoothing

    def call(self, y_true: Any, y_pred: Any) -> Any:
        y_pred = ops.convert_to_tensor(y_pred)
        if y_pred.shape[-1] is not None and y_pred.shape[-1] != self.num_classes:
            raise ValueError(
                f"`y_pred` has {y_pred.shape[-1]} classes on its last axis but "
                f"`num_classes`={self.num_classes}."
            )
        labels = _hard_labels(ops.convert_to_tensor(y_true), y_pred)
        if self.from_logits:
            logp = ops.log_softmax(y_pred, axis=-1)
        else:
            eps = keras.config.epsilon()
            probs = y_pred / ops.sum(y_pred, axis=-1, keepdims=True)
            logp = ops.log(ops.clip(probs, eps, 1.0 - eps))
        valid = None
        if self.ignore_class is not None:
            valid = ops.not_equal(labels, self.ignore_class)
            labels = ops.where(valid, labels, 0)
        logp_y = ops.squeeze(ops.take_along_axis(logp, ops.expand_dims(labels, -1), -1), -1)
        rows = ops.stop_gradient(
            ops.cast(ops.take(self.targets.soft_targets, labels, axis=0), logp.dtype)
        )
        loss = -mix(logp_y, ops.sum(rows * logp, axis=-1), self._factor(logp.dtype))
        if valid is not None:
            loss = ops.where(valid, loss, ops.zeros_like(loss))
            loss = _mask_for_reduction(loss, valid, self.reduction)
        return loss

    # Keras saves compiled metrics' variables nowhere, but it walks the
    # model's `loss` attribute when saving (`model.save`, `save_weights`, hence
    # BackupAndRestore): the loss carries the state into the checkpoint.
    _STATE = ("soft_targets", "sums", "counts")

    def save_own_variables(self, store: Any) -> None:
        for i, name in enumerate(self._STATE):
            store[str(i)] = ops.convert_to_numpy(getattr(self.targets, name).value)

    def load_own_variables(self, store: Any) -> None:
        for i, name in enumerate(self._STATE):
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
            {
                "num_classes": self.num_classes,
                "initial_smoothing": self.initial_smoothing,
                "ignore_class": self.ignore_class,
            }
        )
        return config


def _compiled_targets(model: keras.Model) -> list[OnlineSoftTargets]:
    """Every OnlineSoftTargets among the model's compiled (or tracked) metrics.

    Keras builds its compiled-metrics container lazily (at the first traced
    step on a single device), so the metrics as passed to ``compile`` are
    searched as well.
    """
    found: list[OnlineSoftTargets] = []
    stack = list(model.metrics)
    compiled = getattr(model, "_compile_metrics", None)
    if compiled is not None:
        for user in ("_user_metrics", "_user_weighted_metrics"):
            stack.extend(tree.flatten(getattr(compiled, user, None) or []))
    while stack:
        m = stack.pop()
        if isinstance(m, OnlineSoftTargets):
            if all(m is not f for f in found):
                found.append(m)
        elif isinstance(m, keras.metrics.Metric):
            stack.extend(getattr(m, "metrics", None) or [])
    return found


class OnlineLabelSmoothing(keras.callbacks.Callback):
    """Drive online label smoothing during ``fit``.

    - at train start: finds the :class:`OnlineSmoothedCE` in ``model.loss``
      (or uses ``loss``) and its :class:`OnlineSoftTargets` among the compiled
      metrics (after ``keras.models.load_model`` these are two separately
      deserialised objects; the loss is re-linked to the compiled metric,
      which holds the saved state); switches collection on;
    - at each epoch start: swaps in the soft labels accumulated during the
      previous epoch (rows without a correct sample keep their value) and
      clears the accumulators -- at the first epoch of a fresh run there is
      nothing accumulated and the initial matrix stays;
    - around validation: switches collection off, then on again;
    - at train end: switches collection off (a later ``evaluate`` does not
      accumulate).

    Swapping at epoch *start* makes resumption exact with
    ``keras.callbacks.BackupAndRestore`` (which saves the model's variables,
    metric variables included, at epoch end): the checkpoint holds the
    finished epoch's accumulators, and the resumed run swaps them in first.

    Args:
        loss: Optional ``OnlineSmoothedCE`` (or list) instead of searching
            ``model.loss``.
        verbose: ``1`` prints how many class rows were updated at each swap.
    """

    def __init__(self, loss: Any = None, verbose: int = 0):
        super().__init__()
        self._given = None if loss is None else _collect_losses(loss, OnlineSmoothedCE)
        if self._given == []:
            raise ValueError(f"`loss` must be an OnlineSmoothedCE (or a list); received {loss!r}.")
        self.verbose = int(verbose)
        self._losses: list[OnlineSmoothedCE] = []
        self._in_fit = False

    def _set_collecting(self, value: float) -> None:
        for loss in self._losses:
            loss.targets.collecting.assign(value)

    def on_train_begin(self, logs: dict | None = None) -> None:
        losses = self._given or _collect_losses(getattr(self.model, "loss", None), OnlineSmoothedCE)
        if not losses:
            raise ValueError(
                "OnlineLabelSmoothing found no OnlineSmoothedCE in the compiled model's "
                f"loss ({getattr(self.model, 'loss', None)!r}); compile with one or pass `loss=`."
            )
        compiled = _compiled_targets(self.model)
        for loss in losses:
            if any(t is loss.targets for t in compiled):
                continue
            same = [
                t
                for t in compiled
                if t.name == loss.targets.name and t.num_classes == loss.num_classes
            ]
            if len(same) != 1:
                raise ValueError(
                    f"The statistics of {loss.name!r} are not among the compiled metrics: "
                    "compile with `metrics=[loss.targets]` so that they are updated inside "
                    "the train step (and saved with the model)."
                )
            # After load_model the loss (which carries the saved state) and
            # the compiled metric are separate objects: move the state into
            # the metric the train step updates, and link the loss to it.
            for name in OnlineSmoothedCE._STATE:
                getattr(same[0], name).assign(getattr(loss.targets, name).value)
            loss.targets = same[0]
        self._losses = losses
        self._in_fit = True
        self._set_collecting(1.0)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        for loss in self._losses:
            if self.verbose:
                n = int(np.sum(ops.convert_to_numpy(loss.targets.counts.value) > 0))
                print(
                    f"\nEpoch {epoch + 1}: OnlineLabelSmoothing updates {n} of "
                    f"{loss.num_classes} soft-label rows of {loss.name!r}."
                )
            loss.targets.swap()

    def on_test_begin(self, logs: dict | None = None) -> None:
        if self._in_fit:
            self._set_collecting(0.0)

    def on_test_end(self, logs: dict | None = None) -> None:
        if self._in_fit:
            self._set_collecting(1.0)

    def on_train_end(self, logs: dict | None = None) -> None:
        self._in_fit = False
        self._set_collecting(0.0)
