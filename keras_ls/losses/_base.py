"""What every keras-ls loss shares: schedulable hyperparameters held as model state.

A keras-ls loss class holds configuration and its *schedulable hyperparameters*: the
factors that may change during ``fit`` (``SmoothedCE.label_smoothing``,
``ConfidencePenaltyCE.beta``...). The protocol is a class attribute,
``schedulable = ("beta",)``, naming attributes declared with :class:`Hyperparameter`;
``keras_ls.SmoothingScheduler`` drives any loss that declares one, and its messages are
derived from it.

The values live in a :class:`HyperparameterState`, a ``keras.metrics.Metric`` with one
non-trainable float32 variable per hyperparameter (as ``keras.optimizers.Optimizer`` holds
its learning rate in a variable with an ``assign`` setter). Why a metric: on JAX only
model-tracked state (trainable, non-trainable, optimizer and *metric* variables) travels
through the compiled train step, so the keras-ls callbacks attach the state to the model
(:func:`attach_state`) and the value changes from step to step without re-jitting. On TF
and torch the compiled step reads the variable directly. ``reset_state`` is a no-op and
``result()`` is empty: the state is not a measurement.
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Callable
from functools import partial
from typing import Any, ClassVar

import keras
import numpy as np
from keras import ops, tree

# Keras' own helpers for the masked, weighted reduction of `Loss.__call__` (reused, see
# SchedulableLoss.__call__); no public alias exists.
from keras.src.backend import get_keras_mask
from keras.src.backend.common.stateless_scope import get_stateless_scope
from keras.src.losses.loss import reduce_weighted_values

from keras_ls.losses._labels import check_axis, check_ignore_class
from keras_ls.smoothing import validate_factor, validate_prior

__all__ = [
    "PLAN_LENGTH",
    "Hyperparameter",
    "HyperparameterState",
    "LabelSmoothingLoss",
    "SchedulableLoss",
    "attach_state",
    "compiled_user_metrics",
    "find_losses",
    "global_masked_mean",
    "schedulable_loss_classes",
]

# The arguments several losses share, validated once here, where they enter a loss; an
# argument not listed is validated by its own class.
ARGUMENT_CHECKS: dict[str, Callable[[Any], Any]] = {
    "from_logits": bool,
    "ignore_class": check_ignore_class,
    "axis": check_axis,
    "prior": partial(validate_prior, name="prior"),
}


#: Steps of a per-step schedule held on the device at once (see HyperparameterState).
PLAN_LENGTH = 256


@keras.saving.register_keras_serializable(package="keras_ls")
class HyperparameterState(keras.metrics.Metric):
    """The schedulable hyperparameters of one loss, as non-trainable variables.

    One float32 variable per hyperparameter. A per-batch schedule adds a *plan*
    (:meth:`enable_plan`): per hyperparameter the values of the next :data:`PLAN_LENGTH`
    training steps, which the compiled step looks up itself, so the value changes at every
    step with one small host write every ``PLAN_LENGTH`` steps instead of one per step (on
    JAX each host write means copying the whole model state back and forth). The step is
    counted by the loss in an int32 ``clock`` vector, ``[calls, calls_per_step, counting,
    plan_start, on_0, on_1, ...]``: ``calls`` grows by ``counting`` (1 while ``fit`` trains,
    0 while it validates) at every call, a loss that serves ``calls_per_step`` outputs is
    called that many times per step, and ``on_i`` switches hyperparameter ``i``'s plan on.
    Everything is packed into few variables because each one is an argument of every
    compiled step. ``keras_ls.SmoothingScheduler`` sets all of this up.

    Only the values are saved (``save_own_variables``): plans and clocks are rebuilt by the
    scheduler from ``optimizer.iterations``.

    Args:
        values: ``{name: initial value}``; every value is a factor in ``[0, 1]``.
        name: Metric name.
    """

    _CALLS, _PER_STEP, _COUNTING, _START, _ON = range(5)

    def __init__(self, values: dict[str, float] | None = None, name: str | None = None):
        super().__init__(name=name, dtype="float32")
        self._vars: dict[str, keras.Variable] = {}
        for key, value in (values or {}).items():
            value = validate_factor(value, key)
            self._vars[key] = self._add((), keras.initializers.Constant(value), key)
        self._plans: dict[str, keras.Variable] = {}
        self._clock: keras.Variable | None = None
        self._constant_in: weakref.WeakSet = weakref.WeakSet()

    def _add(self, shape: tuple, initializer: Any, name: str, dtype: str = "float32") -> Any:
        # Assigned from callbacks (cross-replica under tf.distribute): one value for all.
        return self.add_variable(
            shape=shape,
            initializer=initializer,
            dtype=dtype,
            aggregation="only_first_replica",
            name=name,
        )

    def get(self, name: str) -> float:
        return float(ops.convert_to_numpy(self._vars[name].value))

    def set(self, name: str, value: Any) -> None:
        self._vars[name].assign(validate_factor(value, name))
        self._rejoin_models()

    # -- the per-step plan (host side) ---------------------------------------------------------
    def enable_plan(self) -> bool:
        """Create the plan variables (before the step is traced); True if they are new."""
        if self._clock is not None:
            return False
        for key in self._vars:
            self._plans[key] = self._add((PLAN_LENGTH,), "zeros", f"{key}_plan")
        clock = np.zeros(self._ON + len(self._vars), np.int32)
        clock[self._PER_STEP] = 1
        self._clock = self._add(
            clock.shape, keras.initializers.Constant(clock), "clock", dtype="int32"
        )
        return True

    def _update_clock(self, changes: dict[int, int]) -> None:
        """Write ``{position: value}`` into the clock (one small host-to-device copy)."""
        clock = np.array(ops.convert_to_numpy(self._clock.value))
        for index, value in changes.items():
            clock[index] = value
        if self._CALLS in changes:  # given as a step: count it in calls
            clock[self._CALLS] = changes[self._CALLS] * max(int(clock[self._PER_STEP]), 1)
        self._clock.assign(clock)

    def set_clock(
        self,
        *,
        step: int | None = None,
        calls_per_step: int | None = None,
        counting: bool | None = None,
    ) -> None:
        """Set the step the next call counts as, the calls per step, or the counting switch."""
        changes = {
            self._CALLS: step,
            self._PER_STEP: calls_per_step,
            self._COUNTING: None if counting is None else int(counting),
        }
        self._update_clock({k: int(v) for k, v in changes.items() if v is not None})

    def _on(self, name: str) -> int:
        return self._ON + list(self._vars).index(name)

    def set_plan(self, name: str, start: int, values: Any) -> None:
        """Use ``values[i]`` at step ``start + i`` (a step past the end keeps the last)."""
        values = np.asarray(values, dtype=np.float32)[:PLAN_LENGTH]
        self._plans[name].assign(np.pad(values, (0, PLAN_LENGTH - len(values)), mode="edge"))
        self._update_clock({self._START: int(start), self._on(name): 1})

    def pause_plan(self, name: str) -> None:
        """Stop counting steps and use the plain value of ``name`` (validation, end of
        ``fit``); the plan is kept. One clock write."""
        if self._clock is not None:
            self._update_clock({self._COUNTING: 0, self._on(name): 0})

    def resume_plan(self, name: str) -> None:
        """Count steps and follow the plan of ``name`` again (after validation)."""
        self._update_clock({self._COUNTING: 1, self._on(name): 1})

    # -- inside the compiled step ------------------------------------------------------------
    def read(self, name: str) -> Any:
        """The value for this step, inside the compiled step."""
        if keras.backend.backend() == "jax":
            self._note_jax_constant(self._vars[name])
        value = self._vars[name].value
        if self._clock is None:
            return value
        clock = self._clock.value
        step = ops.floor_divide(clock[self._CALLS], ops.maximum(clock[self._PER_STEP], 1))
        index = ops.clip(step - clock[self._START], 0, PLAN_LENGTH - 1)
        on = clock[self._on(name)]
        return ops.where(ops.greater(on, 0), ops.take(self._plans[name].value, index), value)

    def count_call(self) -> None:
        """One more loss call inside the step (only counts while ``counting`` is 1)."""
        if self._clock is not None:
            clock = self._clock.value
            one_hot = ops.cast(ops.equal(ops.arange(clock.shape[0]), self._CALLS), "int32")
            self._clock.assign(clock + one_hot * clock[self._COUNTING])

    def _note_jax_constant(self, variable: keras.Variable) -> None:
        """Remember the model whose jitted step is tracing this state as a constant.

        On JAX, a variable that is not model state is baked into a jitted step as a
        constant. When that happens (no keras-ls callback attached the state), the model
        is found on the stack of the trace -- its ``train_step``/``test_step`` -- so that a
        later assignment can make the state part of that model (:meth:`_rejoin_models`).
        """
        scope = get_stateless_scope()
        if (
            scope is None
            or not scope.state_mapping
            or scope.get_current_value(variable) is not None
        ):
            return  # eager, a shape inference (empty mapping), or the value travels as state
        frame = sys._getframe(1)
        for _ in range(40):
            frame = frame.f_back
            if frame is None:
                return
            model = frame.f_locals.get("self")
            if isinstance(model, keras.Model):
                self._constant_in.add(model)
                return

    def _rejoin_models(self) -> None:
        for model in list(self._constant_in):
            # One retrace, after which the value travels through the step as state.
            attach_state(model, [self])  # rebuilds the JAX step when it adds the state
        self._constant_in.clear()

    # Not a measurement: Keras resets metrics at every epoch and `evaluate`.
    def update_state(self, *args: Any, **kwargs: Any) -> None:
        """No-op (the values are assigned by the loss owner or a callback)."""

    def reset_state(self) -> None:
        """No-op on purpose: the values outlive epochs and evaluations."""

    def result(self) -> dict:
        return {}

    def save_own_variables(self, store: Any) -> None:
        for i, var in enumerate(self._vars.values()):
            store[str(i)] = ops.convert_to_numpy(var.value)

    def load_own_variables(self, store: Any) -> None:
        # Files written by keras-ls 0.1 hold no state here: keep the value from the config.
        for i, var in enumerate(self._vars.values()):
            if str(i) in store:
                var.assign(np.asarray(store[str(i)]))

    def get_config(self) -> dict:
        return {"name": self.name, "values": {k: self.get(k) for k in self._vars}}


class Hyperparameter:
    """A loss attribute held in its :class:`HyperparameterState`.

    Reads give a Python float; assignment validates (a factor in ``[0, 1]``) and ``assign``s
    the variable, which the compiled train step reads without retracing.
    """

    def __init__(self, doc: str = ""):
        self.__doc__ = doc

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        return obj.hyperparameter_state.get(self.name)

    def __set__(self, obj: Any, value: Any) -> None:
        obj.hyperparameter_state.set(self.name, value)


class SchedulableLoss(keras.losses.Loss):
    """Base of the keras-ls losses: a functional loss, its configuration, and its
    schedulable hyperparameters (as ``keras.losses.LossFunctionWrapper`` wraps a function).

    Subclasses declare ``schedulable = ("name", ...)`` (the first is the one a
    ``SmoothingScheduler`` drives by default), each a :class:`Hyperparameter` attribute, and
    pass to ``__init__`` the functional loss ``fn``, the hyperparameters' initial values,
    ``fn``'s other keyword arguments (each becomes an attribute and a ``get_config`` entry;
    the shared ones are validated by ``ARGUMENT_CHECKS``, any other by the subclass) and the
    ``keras.losses.Loss`` arguments (``name``, ``reduction``, ``dtype``) as ``**kwargs``.
    ``call`` is ``fn(y_true, y_pred, **hyperparameters, **arguments)`` with the
    hyperparameters read inside the compiled step.
    """

    schedulable: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        fn: Callable[..., Any],
        hyperparameters: dict[str, float],
        *,
        name: str | None = None,
        reduction: str | None = "sum_over_batch_size",
        dtype: Any = None,
        **arguments: Any,
    ):
        # name=None: Keras names the loss after its class (SmoothedCE -> "smoothed_ce").
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if set(hyperparameters) != set(self.schedulable):
            raise TypeError(  # a programming error in a subclass
                f"{type(self).__name__} declares {self.schedulable}; got {sorted(hyperparameters)}."
            )
        self.fn = fn
        self._arguments = tuple(arguments)
        for key, value in arguments.items():
            setattr(self, key, ARGUMENT_CHECKS[key](value) if key in ARGUMENT_CHECKS else value)
        self._hyperparameters = HyperparameterState(hyperparameters, name=f"{self.name}_state")

    def call(self, y_true: Any, y_pred: Any) -> Any:
        values = {k: self.factor(k, "float32") for k in self.schedulable}
        return self.fn(y_true, y_pred, **values, **{k: getattr(self, k) for k in self._arguments})

    @property
    def hyperparameter_state(self) -> HyperparameterState:
        """The metric holding the hyperparameters (what the callbacks attach to the model)."""
        return self._hyperparameters

    def factor(self, name: str, dtype: Any) -> Any:
        """Hyperparameter ``name`` as a scalar tensor of ``dtype``, read inside the step."""
        return ops.cast(self._hyperparameters.read(name), dtype)

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        # Keras' Loss.__call__ casts y_true to the loss dtype, which rounds integer labels
        # above 256 under bfloat16. Same steps, with labels left as given.
        in_mask = get_keras_mask(y_pred)
        with keras.name_scope(self.name):
            y_pred = ops.convert_to_tensor(y_pred, self.dtype)
            y_true = ops.convert_to_tensor(y_true)
            losses = self.call(y_true, y_pred)
            self._hyperparameters.count_call()
            out_mask = get_keras_mask(losses)
            if out_mask is not None:
                losses, out_mask = global_masked_mean(losses, out_mask, self.reduction)
            if in_mask is not None and out_mask is not None:
                mask = in_mask & out_mask
            else:
                mask = out_mask if out_mask is not None else in_mask
            return reduce_weighted_values(
                losses,
                sample_weight=sample_weight,
                mask=mask,
                reduction=self.reduction,
                dtype=self.dtype,
            )

    def get_config(self) -> dict:
        config = super().get_config()
        # The *current* values: a model saved mid-schedule reloads with them.
        config.update({k: self._hyperparameters.get(k) for k in self.schedulable})
        for key in self._arguments:
            value = getattr(self, key)
            config[key] = value.tolist() if isinstance(value, np.ndarray) else value
        config["dtype"] = self._dtype_policy.name
        return config


class LabelSmoothingLoss(SchedulableLoss):
    """A :class:`SchedulableLoss` whose schedulable hyperparameter is ``label_smoothing``."""

    schedulable = ("label_smoothing",)
    label_smoothing = Hyperparameter("The smoothing factor ``a`` in ``[0, 1]``.")

    def __init__(self, fn: Callable[..., Any], label_smoothing: float, **kwargs: Any):
        super().__init__(fn, {"label_smoothing": label_smoothing}, **kwargs)


def global_masked_mean(loss: Any, mask: Any, reduction: str | None) -> tuple[Any, Any]:
    """Make a masked mean span every replica under ``tf.distribute``: ``(loss, mask)`` for Keras.

    Single device (and JAX ``DataParallel``, where ``ops.sum`` already spans the global
    batch) the Keras mask is kept and Keras divides by the valid count. With several
    ``tf.distribute`` replicas that would divide each replica's sum by its *own* valid count
    (then Keras scales by ``1/num_replicas``), a mean of per-replica means that differs from
    single-device training whenever replicas hold different numbers of valid positions.
    Instead, all-reduce the valid count and pre-scale the values by ``local_size *
    num_replicas / global_valid``, which Keras' ``sum / local_size / num_replicas`` turns into
    ``sum / global_valid`` on every replica -- and the summed gradients into the global mean.
    """
    if keras.backend.backend() != "tensorflow" or reduction not in ("sum_over_batch_size", "mean"):
        return loss, mask
    import tensorflow as tf

    ctx = tf.distribute.get_replica_context()
    replicas = getattr(ctx, "num_replicas_in_sync", 1)
    if ctx is None or replicas <= 1:
        return loss, mask
    dtype = loss.dtype
    local_valid = tf.reduce_sum(tf.cast(mask, dtype))
    global_valid = ctx.all_reduce(tf.distribute.ReduceOp.SUM, local_valid)
    local_size = tf.cast(tf.size(mask), dtype)
    scale = tf.math.divide_no_nan(local_size * replicas, global_valid)
    return loss * tf.stop_gradient(scale), None


def schedulable_loss_classes() -> list[type[SchedulableLoss]]:
    """Every loss class that declares a schedulable hyperparameter (for messages)."""
    out, stack = [], list(SchedulableLoss.__subclasses__())
    while stack:
        cls = stack.pop(0)
        if cls.schedulable and cls not in out:
            out.append(cls)
        stack.extend(cls.__subclasses__())
    return out


def find_losses(obj: Any, cls: type = SchedulableLoss) -> list:
    """Every loss of type ``cls`` in a loss structure (single, list or dict), once each."""
    out: list = []
    for leaf in tree.flatten(obj) if obj is not None else []:
        if isinstance(leaf, cls) and all(leaf is not x for x in out):
            out.append(leaf)
    return out


def compiled_user_metrics(model: keras.Model) -> list[keras.metrics.Metric]:
    """The metric objects given to ``model.compile`` (``metrics`` and ``weighted_metrics``).

    Keras adds them to ``model.metrics`` only when it builds its compiled-metrics container
    (lazily, at the first traced step on a single device), so callbacks that run before
    that read them from the container's private lists.
    """
    compiled = getattr(model, "_compile_metrics", None)
    found = []
    for user in ("_user_metrics", "_user_weighted_metrics"):
        for metric in tree.flatten(getattr(compiled, user, None) or []):
            if isinstance(metric, keras.metrics.Metric):
                found.append(metric)
    return found


def attach_state(
    model: keras.Model, metrics: list[keras.metrics.Metric], rebuild: bool = False
) -> bool:
    """Make ``metrics``' variables part of ``model``'s state; True if any was added.

    ``rebuild=True`` also drops the compiled train/test steps (their next call traces
    them again), for a loss whose step now reads its state differently.

    Keras threads a model's metric variables through its compiled train step on every
    backend (on JAX nothing else reaches it). A metric already among the model's metrics
    (e.g. compiled with ``metrics=[...]``) is left alone. Keras exposes no public way to add
    a metric to a built model, so this appends to the tracked list ``model._metrics``; that
    list is not part of the saved weights (the losses save their own state).
    """
    have = {id(v) for v in model.metrics_variables}
    for metric in compiled_user_metrics(model):
        have.update(id(v) for v in metric.variables)
    added = False
    for metric in metrics:
        if metric.variables and all(id(v) in have for v in metric.variables):
            continue
        model._metrics.append(metric)
        have.update(id(v) for v in metric.variables)
        added = True
    if rebuild or (added and keras.backend.backend() == "jax"):
        # A JAX step was built for the old state layout (and, under a distribution, with
        # its shardings): rebuild it once; it is traced at its first call.
        if getattr(model, "train_function", None) is not None:
            model.make_train_function(force=True)
        model.test_function = None
    return added
