"""Callbacks that drive keras-ls losses during ``fit``: ``SmoothingScheduler`` and
``OnlineLabelSmoothing``.

Both make the loss state part of the model (``attach_state``), so that it travels through
the compiled train step on every backend -- on JAX included, where only model state does --
and the step is compiled once per ``fit``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np
from keras import ops, tree

from keras_ls import schedules as _schedules
from keras_ls.losses._base import (
    PLAN_LENGTH,
    SchedulableLoss,
    attach_state,
    compiled_user_metrics,
    find_losses,
    schedulable_loss_classes,
)
from keras_ls.losses.online import OnlineSmoothedCE, OnlineSoftTargets
from keras_ls.smoothing import validate_factor

__all__ = ["OnlineLabelSmoothing", "SmoothingScheduler"]

_UPDATES = ("epoch", "batch")


def _loss_kinds() -> str:
    names = sorted(
        f"{cls.__name__} ({', '.join(cls.schedulable)})" for cls in schedulable_loss_classes()
    )
    return "; ".join(names)


class SmoothingScheduler(keras.callbacks.Callback):
    """Set a schedulable hyperparameter of the model's keras-ls losses from a schedule.

    The schedule's clock is the training itself, as for Keras learning-rate schedules: the
    step is ``optimizer.iterations`` (``update="batch"``) or the epoch it falls in,
    ``optimizer.iterations // steps_per_epoch`` (``update="epoch"``). A loop of
    ``fit(epochs=1)`` calls (as in keras-io's ``addition_rnn.py``) therefore gets the same
    factors as one ``fit(epochs=30)``, and a run resumed by
    ``keras.callbacks.BackupAndRestore`` continues the schedule exactly. (With a dataset of
    unknown length the first epoch's length is measured; until then the epoch index of the
    ``fit`` call is used.)

    Each value is checked (finite, in ``[0, 1]``) and assigned to every loss of the
    compiled model (multi-output included) that declares a schedulable hyperparameter --
    ``SmoothedCE``/``SmoothedBCE``/``SmoothedDice``/``OnlineSmoothedCE``:
    ``label_smoothing``; ``ConfidencePenaltyCE``: ``beta`` -- or to the ``loss`` given. The
    state is attached to the model, so the compiled step (``tf.function``, XLA,
    ``jax.jit``, ``torch.compile``) is built once and reads each new value. The value is
    logged under the hyperparameter's name (``logs["label_smoothing"]``), so ``History``,
    ``CSVLogger`` and ``TensorBoard`` record it.

    During the validation of ``fit``, the hyperparameter is set to ``validation_value``
    (0 by default: ``val_loss`` is then the plain cross-entropy / NLL, comparable across
    epochs and with a plain Keras model, as the YOLO adapter reports it) and restored
    afterwards; ``validation_value=None`` validates with the training value.

    Args:
        schedule: A ``keras_ls.schedules`` object, any Keras ``LearningRateSchedule``, a
            callable ``step -> float``, or a number.
        update: ``"epoch"`` (default) or ``"batch"``.
        loss: Optional loss (or list of losses) to drive instead of searching ``model.loss``.
        verbose: ``1`` prints the value at each epoch start.
        hyperparameter: Which schedulable hyperparameter to drive; default: each loss's
            first one (``label_smoothing``, or ``beta`` for ``ConfidencePenaltyCE``).
        validation_value: The value used while ``fit`` validates, or None.

    Example:

    ```python
    x, y = np.random.rand(256, 8), np.random.randint(0, 3, 256)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)])
    loss = keras_ls.SmoothedCE(0.2, from_logits=True)
    model.compile("adam", loss)
    history = model.fit(x, y, epochs=3, verbose=0, validation_split=0.25, callbacks=[
        keras_ls.SmoothingScheduler(keras_ls.schedules.Linear(0.2, 0.0, steps=2))])
    print(history.history["label_smoothing"])  # [0.2, 0.1, 0.0]; val_loss is the NLL
    ```
    """

    def __init__(
        self,
        schedule: Any,
        update: str = "epoch",
        loss: Any = None,
        verbose: int = 0,
        *,
        hyperparameter: str | None = None,
        validation_value: float | None = 0.0,
    ):
        super().__init__()
        if update not in _UPDATES:
            raise ValueError(f"`update` must be one of {_UPDATES}; received {update!r}.")
        self.schedule: Callable[[int], Any] = _schedules.get(schedule)
        self.update = update
        self.verbose = int(verbose)
        if hyperparameter is not None and not isinstance(hyperparameter, str):
            raise TypeError(
                f"`hyperparameter` must be a name or None; received {hyperparameter!r}."
            )
        self.hyperparameter = hyperparameter
        self.validation_value = (
            None
            if validation_value is None
            else validate_factor(validation_value, "validation_value")
        )
        self._given = None if loss is None else find_losses(loss)
        if self._given == []:
            raise ValueError(
                "`loss` must be a keras-ls loss with a schedulable hyperparameter (or a list "
                f"of them): {_loss_kinds()}; received {loss!r}."
            )
        self._targets: list[tuple[SchedulableLoss, str]] = []
        self._epoch_start = 0  # optimizer.iterations at the current epoch's start
        self._steps_per_epoch: int | None = None
        self._in_fit = False
        self._plan: tuple[int, list[float]] = (0, [])  # (first step, values), read atomically
        self.value: float | None = None

    # -- set-up ----------------------------------------------------------------------------
    def on_train_begin(self, logs: dict | None = None) -> None:
        losses = self._given or find_losses(getattr(self.model, "loss", None))
        if not losses:
            raise ValueError(
                "SmoothingScheduler found no keras-ls loss with a schedulable "
                f"hyperparameter in the compiled model's loss "
                f"({getattr(self.model, 'loss', None)!r}); compile with one of "
                f"{_loss_kinds()}, or pass `loss=`."
            )
        self._targets = []
        for loss in losses:
            name = self.hyperparameter or loss.schedulable[0]
            if name not in loss.schedulable:
                raise ValueError(
                    f"`hyperparameter`={name!r} is not schedulable on {type(loss).__name__} "
                    f"{loss.name!r}; it schedules {', '.join(loss.schedulable)}."
                )
            self._targets.append((loss, name))
        states = [loss.hyperparameter_state for loss in losses]
        replan = False
        if self.update == "batch":
            # The compiled step reads each step's value from a plan (HyperparameterState).
            flat = tree.flatten(getattr(self.model, "loss", None) or [])
            for loss, state in zip(losses, states):
                replan |= state.enable_plan()
                calls = max(1, sum(leaf is loss for leaf in flat))
                state.set_clock(calls_per_step=calls, counting=True)
        attach_state(self.model, states, rebuild=replan)
        self._in_fit = True
        self._steps_per_epoch = (self.params or {}).get("steps") or self._steps_per_epoch

    def on_train_end(self, logs: dict | None = None) -> None:
        self._in_fit = False
        for loss, name in self._targets:
            state = loss.hyperparameter_state
            state.pause_plan(name)
            if self.value is not None:
                state.set(name, self.value)  # `loss.label_smoothing` reads the last value

    # -- the clock -------------------------------------------------------------------------
    def _iterations(self) -> int:
        return int(ops.convert_to_numpy(self.model.optimizer.iterations))

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch_start = self._iterations()
        if self.update == "batch":
            for loss, _ in self._targets:
                loss.hyperparameter_state.set_clock(step=self._epoch_start)
            self._make_plan(self._epoch_start)
            return
        steps = self._steps_per_epoch
        index = self._epoch_start // steps if steps else int(epoch)
        self._set(_schedules.evaluate(self.schedule, index))
        if self.verbose:
            print(
                f"\nEpoch {epoch + 1}: SmoothingScheduler sets {self._names()} to {self.value:.6g}."
            )

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        if self.update != "batch":
            return
        # `batch` counts from the epoch start (per execution with steps_per_execution).
        step = self._epoch_start + int(batch)
        start, values = self._plan
        if not start <= step < start + len(values):
            if keras.backend.backend() == "jax":
                self.model.jax_state_sync()  # mid-epoch, the state lives outside the variables
            self._make_plan(step)
        self.value = self._value_at(step)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if not self._steps_per_epoch:  # unknown length: learn it from the first epoch
            done = self._iterations() - self._epoch_start
            self._steps_per_epoch = done if done > 0 else None
        self._log(logs)

    #: Keras runs batch-end hooks asynchronously (no device sync per step on JAX and torch)
    #: only if every callback says it is safe. Ours only writes the step's value, a
    #: function of `batch`, into the logs.
    async_safe = True

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if logs is not None and self._targets and self.value is not None:
            step = self._epoch_start + int(batch)
            value = self._value_at(step) if self.update == "batch" else self.value
            for _, name in self._targets:
                logs[name] = value

    # -- validation ------------------------------------------------------------------------
    def on_test_begin(self, logs: dict | None = None) -> None:
        if self._in_fit and self.validation_value is not None:
            for loss, name in self._targets:
                state = loss.hyperparameter_state
                state.pause_plan(name)
                state.set(name, self.validation_value)

    def on_test_end(self, logs: dict | None = None) -> None:
        if self._in_fit and self.validation_value is not None and self.value is not None:
            for loss, name in self._targets:
                state = loss.hyperparameter_state
                state.set(name, self.value)
                if self.update == "batch":
                    state.resume_plan(name)

    # -- assignment ------------------------------------------------------------------------
    def _names(self) -> str:
        return ", ".join(dict.fromkeys(name for _, name in self._targets))

    def _log(self, logs: dict | None) -> None:
        if logs is not None and self.value is not None:
            for _, name in self._targets:
                logs[name] = self.value

    def _set(self, value: float) -> None:
        """One value for the coming steps (``update="epoch"``)."""
        if self.value is None or np.float32(value) != np.float32(self.value):
            for loss, name in self._targets:
                loss.hyperparameter_state.set(name, value)
        self.value = value

    def _make_plan(self, start: int) -> None:
        """The values of steps ``start, start + 1, ...``, for the compiled step to look up."""
        values = [_schedules.evaluate(self.schedule, start + i) for i in range(PLAN_LENGTH)]
        for loss, name in self._targets:
            loss.hyperparameter_state.set_plan(name, start, values)
        self._plan = (start, values)
        self.value = values[0]

    def _value_at(self, step: int) -> float:
        start, values = self._plan
        if start <= step < start + len(values):
            return values[step - start]
        return _schedules.evaluate(self.schedule, step)


class OnlineLabelSmoothing(keras.callbacks.Callback):
    """Drive online label smoothing (``keras_ls.OnlineSmoothedCE``) during ``fit``.

    - at train start: finds the ``OnlineSmoothedCE`` in ``model.loss`` (or uses ``loss``),
      attaches its state to the model (so the statistics accumulated inside the compiled
      step are kept on every backend and saved with checkpoints) and switches collection on.
      After ``keras.models.load_model`` of a model compiled with ``metrics=[loss.targets]``
      (0.1 style), the loss and that metric are separate objects: the saved state is moved
      into the compiled metric and the loss linked to it;
    - at each epoch start: swaps in the soft labels accumulated during the previous epoch
      (rows without a correct sample keep their value) and clears the accumulators -- at
      the first epoch of a fresh run there is nothing accumulated and the initial matrix
      stays;
    - around validation: switches collection off, then on again;
    - at train end: switches collection off (a later ``evaluate`` does not accumulate).

    Swapping at epoch *start* makes resumption exact with ``keras.callbacks.BackupAndRestore``
    (which saves the model's variables, the loss state included, at epoch end): the
    checkpoint holds the finished epoch's accumulators, and the resumed run swaps them in
    first.

    Args:
        loss: Optional ``OnlineSmoothedCE`` (or list) instead of searching ``model.loss``.
        verbose: ``1`` prints how many class rows were updated at each swap.
    """

    def __init__(self, loss: Any = None, verbose: int = 0):
        super().__init__()
        self._given = None if loss is None else find_losses(loss, OnlineSmoothedCE)
        if self._given == []:
            raise ValueError(f"`loss` must be an OnlineSmoothedCE (or a list); received {loss!r}.")
        self.verbose = int(verbose)
        self._losses: list[OnlineSmoothedCE] = []
        self._in_fit = False

    def _set_collecting(self, value: float) -> None:
        for loss in self._losses:
            loss.targets.collecting.assign(value)

    def on_train_begin(self, logs: dict | None = None) -> None:
        losses = self._given or find_losses(getattr(self.model, "loss", None), OnlineSmoothedCE)
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
            if len(same) == 1:
                # After load_model the loss (which carries the saved state) and the compiled
                # metric are separate objects: move the state into the compiled metric.
                for name in OnlineSmoothedCE.STATE:
                    getattr(same[0], name).assign(getattr(loss.targets, name).value)
                loss.targets = same[0]
        attach_state(
            self.model,
            [m for loss in losses for m in (loss.targets, loss.hyperparameter_state)],
        )
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


def _compiled_targets(model: keras.Model) -> list[OnlineSoftTargets]:
    """Every OnlineSoftTargets among the model's compiled (or tracked) metrics.

    Keras builds its compiled-metrics container lazily (at the first traced step on a
    single device), so the metrics as passed to ``compile`` are searched as well.
    """
    found: list[OnlineSoftTargets] = []
    stack = list(model.metrics) + compiled_user_metrics(model)
    while stack:
        m = stack.pop()
        if isinstance(m, OnlineSoftTargets):
            if all(m is not f for f in found):
                found.append(m)
        elif isinstance(m, keras.metrics.Metric):
            stack.extend(getattr(m, "metrics", None) or [])
    return found


# Let Keras deserialize our schedules by name (schedules.py stays Keras-free).
for _cls in _schedules.REGISTRY.values():
    keras.saving.register_keras_serializable(package="keras_ls")(_cls)

# Importing any Keras-side keras-ls module registers every keras-ls class with Keras.
import keras_ls  # noqa: E402

keras_ls.register_serializables()
