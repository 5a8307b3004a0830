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
from keras import ops

from keras_ls import schedules as _schedules
from keras_ls.losses._base import (
    SchedulableLoss,
    attach_state,
    find_losses,
    rebuild_steps,
    schedulable_loss_classes,
)
from keras_ls.losses.online import OnlineSmoothedCE
from keras_ls.smoothing import validate_factor

__all__ = ["OnlineLabelSmoothing", "SmoothingScheduler"]

_UPDATES = ("epoch", "batch")


def _loss_kinds() -> str:
    names = sorted(
        f"{cls.__name__} ({', '.join(cls.schedulable)})" for cls in schedulable_loss_classes()
    )
    return "; ".join(names)


class SmoothingScheduler(keras.callbacks.Callback):
    """Schedule keras-ls loss factors during ``fit``; log them; validate at a fixed value.

    The clock is the training itself, as for Keras learning-rate schedules: the step is
    ``optimizer.iterations``, and with ``update="epoch"`` the epoch it falls in
    (``optimizer.iterations // steps_per_epoch``). A loop of ``fit(epochs=1)`` calls (as in
    keras-io's ``addition_rnn.py``) therefore gets the same factors as one ``fit(epochs=30)``,
    and a run resumed by ``keras.callbacks.BackupAndRestore`` continues the schedule exactly.

    - ``SmoothingScheduler()`` (no schedule) links the losses built with a schedule
      (``SmoothedCE(schedules.Cosine(0.1, 0.0, steps=1000))``) to the model's optimizer: the
      compiled step evaluates the schedule at ``optimizer.iterations`` (see
      ``keras_ls.losses._base``), logs its value and validates at ``validation_value``.
    - ``SmoothingScheduler(schedule)`` drives one hyperparameter: ``update="epoch"`` evaluates
      ``schedule`` on the host at each epoch start (any callable ``epoch -> float``, as
      Keras' ``LearningRateScheduler``); ``update="batch"`` evaluates it at every step, inside
      the compiled step when it is a ``keras_ls.schedules`` object or a Keras
      ``LearningRateSchedule``, on the host before each step for any other callable.

    Which hyperparameter it drives: the losses given as ``loss=``, or else every keras-ls loss
    of the compiled model; on each, ``hyperparameter=`` or else its first schedulable one
    (``label_smoothing``; ``beta`` for ``ConfidencePenaltyCE``). Losses whose hyperparameters
    differ (``SmoothedCE`` on one output, ``ConfidencePenaltyCE`` on another) with neither
    argument are an error naming them. Every value is checked (finite, in ``[0, 1]``) and
    logged under the hyperparameter's name (``logs["label_smoothing"]``) for ``History``,
    ``CSVLogger`` and ``TensorBoard``. The step is compiled once per ``fit`` (``tf.function``,
    XLA, ``jax.jit``, ``torch.compile``).

    During the validation of ``fit``, the scheduled hyperparameters are set to
    ``validation_value`` (0 by default: ``val_loss`` is then the plain cross-entropy / NLL,
    comparable across epochs and with a plain Keras model, as the YOLO adapter reports it)
    and restored afterwards; ``validation_value=None`` validates with the training value.

    Args:
        schedule: None, a ``keras_ls.schedules`` object, any Keras ``LearningRateSchedule``,
            a callable ``step -> float``, or a number.
        update: ``"epoch"`` (default) or ``"batch"``.
        loss: Optional loss (or list of losses) to drive instead of searching ``model.loss``.
        verbose: ``1`` prints the value at each epoch start.
        hyperparameter: Which schedulable hyperparameter to drive.
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
        schedule: Any = None,
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
        self.schedule: Callable[[int], Any] | None = (
            None if schedule is None else _schedules.get(schedule)
        )
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
        # In step: the schedule is evaluated inside the compiled step (installed in the loss).
        self._in_step = (
            self.schedule is not None and update == "batch" and _schedules.is_traceable(schedule)
        )
        self._driven: list[tuple[SchedulableLoss, str]] = []  # by this callback's schedule
        self._scheduled: list[tuple[SchedulableLoss, str, str]] = []  # (loss, name, log key)
        self._installed: list[tuple[SchedulableLoss, str]] = []
        self._losses: list[SchedulableLoss] = []
        self._epoch_start = 0  # optimizer.iterations at the current epoch's start
        self._steps_per_epoch: int | None = None
        self._in_fit = False
        self.value: float | None = None

    # -- set-up ----------------------------------------------------------------------------
    def _find_driven(self, losses: list[SchedulableLoss]) -> list[tuple[SchedulableLoss, str]]:
        if self.hyperparameter is not None:
            name = self.hyperparameter
            driven = [(x, name) for x in losses if name in x.schedulable]
            if not driven:
                raise ValueError(
                    f"`hyperparameter`={self.hyperparameter!r} is not schedulable on any of "
                    f"{[f'{type(x).__name__} {x.name!r}' for x in losses]}."
                )
            return driven
        driven = [(x, x.schedulable[0]) for x in losses]
        if len({name for _, name in driven}) > 1:
            found = ", ".join(f"{type(x).__name__} {x.name!r} ({n})" for x, n in driven)
            raise ValueError(
                f"SmoothingScheduler found losses with different hyperparameters: {found}. "
                "Say which to drive with `loss=` or `hyperparameter=`."
            )
        return driven

    def on_train_begin(self, logs: dict | None = None) -> None:
        losses = self._given or find_losses(getattr(self.model, "loss", None))
        if not losses:
            raise ValueError(
                "SmoothingScheduler found no keras-ls loss with a schedulable "
                f"hyperparameter in the compiled model's loss "
                f"({getattr(self.model, 'loss', None)!r}); compile with one of "
                f"{_loss_kinds()}, or pass `loss=`."
            )
        self._driven = self._find_driven(losses) if self.schedule is not None else []
        rebuild = False
        for loss, name in self._driven:
            state = loss.hyperparameter_state
            if state.schedules[name] is not None:
                raise ValueError(
                    f"{loss.name!r} already follows {state.schedules[name]!r} for `{name}`; "
                    "use SmoothingScheduler() without a schedule to link it."
                )
            if self._in_step:
                state.schedules[name] = self.schedule
                self._installed.append((loss, name))
                rebuild = True
        own = [
            (x, n) for x in losses for n, s in x.hyperparameter_state.schedules.items()
            if s is not None and (x, n) not in self._installed
        ]
        if self.schedule is None and not own:
            raise ValueError(
                "SmoothingScheduler() without a schedule links losses built with one (e.g. "
                "SmoothedCE(keras_ls.schedules.Cosine(0.1, 0.0, steps=1000))); the model's "
                f"losses {[x.name for x in losses]} have none. Pass a schedule."
            )
        pairs = [*self._driven, *own]
        names = [n for _, n in pairs]
        self._scheduled = [
            (x, n, n if names.count(n) == 1 or (x, n) in self._driven else f"{x.name}_{n}")
            for x, n in pairs
        ]
        self._losses = [x for x in losses if any(x is y for y, _ in pairs)]
        iterations = self.model.optimizer.iterations
        for loss in self._losses:
            loss.hyperparameter_state.link(iterations)
            loss.hyperparameter_state.follow(True)
        attach_state(self.model, [x.hyperparameter_state for x in self._losses])
        if rebuild:
            rebuild_steps(self.model)
        self._in_fit = True
        self._steps_per_epoch = (self.params or {}).get("steps") or self._steps_per_epoch

    def on_train_end(self, logs: dict | None = None) -> None:
        self._in_fit = False
        for loss, name, _ in self._scheduled:
            state = loss.hyperparameter_state
            value = state.get(name)
            state.follow(False)
            state.set(name, value)  # `loss.label_smoothing` (and `evaluate`) use the last value
        for loss, name in self._installed:
            loss.hyperparameter_state.schedules[name] = None
        if self._installed:
            rebuild_steps(self.model)
        self._installed = []
        for loss in self._losses:
            loss.hyperparameter_state.unlink(self.model.optimizer.iterations)

    # -- the clock -------------------------------------------------------------------------
    def _iterations(self) -> int:
        return int(ops.convert_to_numpy(self.model.optimizer.iterations))

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch_start = self._iterations()
        for loss in self._losses:  # JAX: the step's own counter restarts from the optimizer
            loss.hyperparameter_state.link(self.model.optimizer.iterations)
        if self.schedule is not None and self.update == "epoch":
            steps = self._steps_per_epoch
            index = self._epoch_start // steps if steps else int(epoch)
            self._set(_schedules.evaluate(self.schedule, index))
        if self.verbose:
            values = ", ".join(f"{key}={self._value(x, n):.6g}" for x, n, key in self._scheduled)
            print(f"\nEpoch {epoch + 1}: SmoothingScheduler: {values}.")

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        if self.schedule is None or self.update != "batch" or self._in_step:
            return
        # A Python callable, per batch: a host write before each step.
        if keras.backend.backend() == "jax":
            self.model.jax_state_sync()  # mid-epoch, the state lives outside the variables
        self._set(_schedules.evaluate(self.schedule, self._epoch_start + int(batch)))

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if not self._steps_per_epoch:  # unknown length: learn it from the first epoch
            done = self._iterations() - self._epoch_start
            self._steps_per_epoch = done if done > 0 else None
        self._log(logs, self._iterations() - 1)

    #: Keras runs batch-end hooks asynchronously (no device sync per step on JAX and torch)
    #: only if every callback says it is safe. Ours only writes the step's value, a
    #: function of `batch`, into the logs.
    async_safe = True

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._log(logs, self._epoch_start + int(batch))

    # -- validation ------------------------------------------------------------------------
    def on_test_begin(self, logs: dict | None = None) -> None:
        if not self._in_fit:
            return
        for loss, name, _ in self._scheduled:
            state = loss.hyperparameter_state
            value = state.get(name) if self.validation_value is None else self.validation_value
            state.follow(False)
            state.set(name, value)

    def on_test_end(self, logs: dict | None = None) -> None:
        if not self._in_fit:
            return
        for loss, name, _ in self._scheduled:
            state = loss.hyperparameter_state
            state.follow(True)
            if state.schedules[name] is None and self.value is not None:
                state.set(name, self.value)

    # -- values ----------------------------------------------------------------------------
    def _value(self, loss: SchedulableLoss, name: str, step: int | None = None) -> float:
        schedule = loss.hyperparameter_state.schedules[name]
        if schedule is None:
            return loss.hyperparameter_state.get(name)
        step = self._epoch_start if step is None else step
        return _schedules.evaluate(schedule, max(step, 0))

    def _log(self, logs: dict | None, step: int) -> None:
        if logs is None:
            return
        for loss, name, key in self._scheduled:
            in_step = loss.hyperparameter_state.schedules[name] is not None
            logs[key] = self._value(loss, name, step) if in_step else self.value

    def _set(self, value: float) -> None:
        """The host value of the driven hyperparameters for the coming steps."""
        if self.value is None or np.float32(value) != np.float32(self.value):
            for loss, name in self._driven:
                loss.hyperparameter_state.set(name, value)
        self.value = value


class OnlineLabelSmoothing(keras.callbacks.Callback):
    """Drive online label smoothing (``keras_ls.OnlineSmoothedCE``) during ``fit``.

    - at train start: finds the ``OnlineSmoothedCE`` in ``model.loss`` (or uses ``loss``),
      attaches its state to the model (so the statistics accumulated inside the compiled
      step are kept on every backend and saved with checkpoints) and switches collection on.
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


# Let Keras deserialize our schedules by name (schedules.py stays Keras-free).
for _cls in _schedules.REGISTRY.values():
    keras.saving.register_keras_serializable(package="keras_ls")(_cls)

# Importing any Keras-side keras-ls module registers every keras-ls class with Keras.
import keras_ls  # noqa: E402

keras_ls.register_serializables()
