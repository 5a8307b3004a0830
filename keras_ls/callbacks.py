"""``SmoothingScheduler``: change the smoothing factor during ``fit``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from keras_ls import schedules as _schedules
from keras_ls.losses import _collect_losses, _SmoothingLoss

__all__ = ["SmoothingScheduler"]

_UPDATES = ("epoch", "batch")


class SmoothingScheduler(keras.callbacks.Callback):
    """Set ``label_smoothing`` of the model's smoothed losses from a schedule.

    Before each epoch (``update="epoch"``, step = epoch index) or each batch
    (``update="batch"``, step = ``epoch * steps_per_epoch + batch``) the
    callback evaluates ``schedule(step)``, checks it is finite and in [0, 1],
    and assigns it to every ``SmoothedCE`` / ``SmoothedBCE`` found in the
    compiled model (multi-output models included) or to the ``loss`` given.
    The factor depends on the step alone, so a run resumed by
    ``keras.callbacks.BackupAndRestore`` continues the schedule where it
    stopped. The value is written to ``logs["label_smoothing"]``, so
    ``History`` and ``TensorBoard`` record it.

    On TF and torch the assignment reaches the already-compiled train step
    through the loss variable (no retrace, XLA included). On JAX the jitted
    step holds the value as a constant, so the step is re-jitted when, and
    only when, the value changes -- prefer ``update="epoch"`` or a piecewise
    schedule there.

    Args:
        schedule: A ``keras_ls.schedules`` object, any Keras
            ``LearningRateSchedule``, a callable ``step -> float``, or a number.
        update: ``"epoch"`` (default) or ``"batch"``.
        loss: Optional smoothed loss (or list of them) to drive instead of
            searching ``model.loss``.
        verbose: ``1`` prints the value at each epoch start.

    Example:

    ```python
    loss = keras_ls.SmoothedCE(0.1, from_logits=True)
    model.compile("adam", loss)
    model.fit(x, y, epochs=20, callbacks=[
        keras_ls.SmoothingScheduler(keras_ls.schedules.Linear(0.2, 0.0, steps=19))])
    ```
    """

    def __init__(
        self,
        schedule: Any,
        update: str = "epoch",
        loss: Any = None,
        verbose: int = 0,
    ):
        super().__init__()
        if update not in _UPDATES:
            raise ValueError(f"`update` must be one of {_UPDATES}; received {update!r}.")
        self.schedule: Callable[[int], Any] = _schedules.get(schedule)
        self.update = update
        self.verbose = int(verbose)
        self._given = None if loss is None else _collect_losses(loss)
        if self._given == []:
            raise ValueError(
                f"`loss` must be a SmoothedCE/SmoothedBCE (or a list of them); received {loss!r}."
            )
        self._losses: list[_SmoothingLoss] = []
        self._epoch = 0
        self.value: float | None = None

    # -- discovery -------------------------------------------------------------
    def on_train_begin(self, logs: dict | None = None) -> None:
        if self._given is not None:
            self._losses = self._given
            return
        found = _collect_losses(getattr(self.model, "loss", None))
        if not found:
            raise ValueError(
                "SmoothingScheduler found no keras-ls smoothed loss (SmoothedCE, "
                "SmoothedBCE, ConfidencePenaltyCE, SmoothedDice, OnlineSmoothedCE) in the "
                f"compiled model's loss ({getattr(self.model, 'loss', None)!r}); compile "
                "with one or pass `loss=`."
            )
        self._losses = found

    # -- assignment ------------------------------------------------------------
    def _apply(self, step: int) -> None:
        value = _schedules.evaluate(self.schedule, step)
        changed = False
        stored = float(np.float32(value))  # the variable is float32
        for loss in self._losses:
            if loss.label_smoothing != stored:
                loss.label_smoothing = value
                changed = True
        self.value = value
        if changed and keras.backend.backend() == "jax" and self.model is not None:
            # JAX bakes non-model variables into the jitted step: re-jit.
            if getattr(self.model, "train_function", None) is not None:
                self.model.make_train_function(force=True)
            self.model.test_function = None

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = int(epoch)
        if self.update == "epoch":
            self._apply(self._epoch)
            if self.verbose:
                print(
                    f"\nEpoch {epoch + 1}: SmoothingScheduler sets label_smoothing to "
                    f"{self.value:.6g}."
                )

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        if self.update != "batch":
            return
        steps = (self.params or {}).get("steps")
        if steps:
            step = self._epoch * int(steps) + int(batch)
        else:  # unknown epoch length: the optimizer's global step
            if keras.backend.backend() == "jax":
                self.model.jax_state_sync()
            step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        self._apply(step)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if logs is not None and self.value is not None:
            logs["label_smoothing"] = self.value

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None and self.value is not None:
            logs["label_smoothing"] = self.value
