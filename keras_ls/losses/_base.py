"""What every keras-ls loss shares: hyperparameters that are numbers or schedules.

A keras-ls loss class holds configuration and its *schedulable hyperparameters*: the factors
that may change during ``fit`` (``SmoothedCE.label_smoothing``, ``ConfidencePenaltyCE.beta``),
named by a class attribute (``schedulable = ("beta",)``). Each one is given, as Keras'
optimizers take a learning rate, either as a number or as a schedule (a ``keras_ls.schedules``
object or a Keras ``LearningRateSchedule``).

The values live in a :class:`HyperparameterState`: a ``keras.metrics.Metric`` (on JAX only
model-tracked state travels through a compiled step, and metric variables are the kind a
callback may add to a built model) with one float32 variable per hyperparameter and an int
``iterations`` counter. Inside the compiled step a number is read from its variable; a
schedule is evaluated with ``keras.ops`` at the training step, as Keras evaluates a
learning-rate schedule at ``optimizer.iterations``:

- ``keras_ls.SmoothingScheduler`` *links* the losses of the model it trains: on TensorFlow and
  torch the step reads ``optimizer.iterations`` itself; on JAX (optimizer variables are not
  in scope of ``compute_loss`` there) the state is attached to the model, the callback sets
  ``iterations`` from ``optimizer.iterations`` at each epoch start and the step adds one per
  training step;
- ``following`` is 1 while a schedule is followed and 0 while the plain value is used
  (validation, ``validation_value``; after ``fit``), so validation never moves the step.

Unlinked, a schedule is evaluated at the ``iterations`` saved with the loss (the last
training step of a linked ``fit``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import partial
from typing import Any, ClassVar

import keras
import numpy as np
from keras import ops, tree

from keras_ls import _compat
from keras_ls import schedules as _schedules
from keras_ls.losses._labels import check_axis, check_ignore_class
from keras_ls.smoothing import validate_factor, validate_prior

__all__ = [
    "Hyperparameter",
    "HyperparameterState",
    "LabelSmoothingLoss",
    "SchedulableLoss",
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

# Host checks of a schedule given to a loss: its values at these steps must be factors.
_CHECK_STEPS = (0, 1, 10, 100, 1_000, 10_000, 100_000, 1_000_000)


def as_number_or_schedule(value: Any, name: str) -> tuple[float, Any]:
    """``(initial value, schedule or None)`` for a hyperparameter given to a loss."""
    if isinstance(value, dict):  # a serialized schedule (get_config)
        value = _schedules.deserialize(value)
    if _schedules.is_traceable(value):
        for step in _CHECK_STEPS:
            _schedules.evaluate(value, step)  # a clear error now, not a NaN in the step
        return _schedules.evaluate(value, 0), value
    if callable(value) and not isinstance(value, bool):
        raise TypeError(
            f"`{name}` must be a number in [0, 1] or a schedule evaluated inside the train "
            "step (a keras_ls.schedules object or a keras.optimizers.schedules."
            f"LearningRateSchedule); received {value!r}. A Python callable is evaluated on the "
            "host by keras_ls.SmoothingScheduler(fn)."
        )
    return validate_factor(value, name), None


@keras.saving.register_keras_serializable(package="keras_ls")
class HyperparameterState(keras.metrics.Metric):
    """The schedulable hyperparameters of one loss: values, schedules and the step.

    Args:
        values: ``{name: number or schedule}``.
        name: Metric name.
    """

    def __init__(self, values: dict[str, Any] | None = None, name: str | None = None):
        super().__init__(name=name, dtype="float32")
        self.schedules: dict[str, Any] = {}
        self._vars: dict[str, keras.Variable] = {}
        for key, given in (values or {}).items():
            value, self.schedules[key] = as_number_or_schedule(given, key)
            self._vars[key] = self._add(key, keras.initializers.Constant(value))
        self.iterations = self._add("iterations", "zeros", dtype="int32")
        self.following = self._add("following", "ones")
        self.source: keras.Variable | None = None  # optimizer.iterations, once linked
        self.mirrors = False  # JAX: `iterations` follows the optimizer (see `step`)
        self.baked = False  # JAX: traced as constants into a jitted function
        self._memo: tuple[Any, Any] = (None, None)

    def _add(self, name: str, initializer: Any, dtype: str = "float32") -> keras.Variable:
        # Assigned from callbacks (cross-replica under tf.distribute): one value for all.
        return self.add_variable(
            shape=(), initializer=initializer, dtype=dtype, aggregation="only_first_replica",
            name=name,
        )

    # -- the host side ---------------------------------------------------------------------
    def host_step(self) -> int:
        """The training step the next compiled step will use."""
        counter = self.source if self.source is not None else self.iterations
        return int(ops.convert_to_numpy(counter.value))

    def get(self, name: str) -> float:
        """The value the compiled step uses now, as a Python float."""
        following = float(ops.convert_to_numpy(self.following.value)) > 0
        if self.schedules[name] is not None and following:
            return _schedules.evaluate(self.schedules[name], self.host_step())
        return float(ops.convert_to_numpy(self._vars[name].value))

    def set(self, name: str, value: Any) -> None:
        """Assign a number (the loss's own value, or a callback's epoch/validation value)."""
        if self.baked:
            raise RuntimeError(
                f"`{name}` of this loss was compiled into a jax.jit function as a constant "
                "(JAX carries only model state through a jitted step), so a new value would "
                "be silently ignored there. In `model.fit`, let keras_ls.SmoothingScheduler "
                "set it (its state then travels as model state); in your own jax.jit step, "
                "pass the factor as an argument of the functional loss, e.g. "
                f"keras_ls.losses.smoothed_crossentropy(y, logits, {name}=a)."
            )
        self._vars[name].assign(validate_factor(value, name))

    def follow(self, on: bool) -> None:
        self.following.assign(1.0 if on else 0.0)

    def link(self, iterations: keras.Variable) -> None:
        """Evaluate the schedules at ``iterations`` (a model's ``optimizer.iterations``)."""
        self.iterations.assign(ops.convert_to_numpy(iterations.value))
        if keras.backend.backend() == "jax":
            self.mirrors, self.baked = True, False
        else:
            self.source = iterations

    def unlink(self, iterations: keras.Variable) -> None:
        """Stop following ``iterations``; keep its value (saved with the loss)."""
        self.iterations.assign(ops.convert_to_numpy(iterations.value))
        self.source, self.mirrors = None, False

    # -- inside the compiled step ----------------------------------------------------------
    def step(self) -> Any:
        """The training step, inside the compiled step."""
        if self.source is not None:
            return self.source.value
        if not self.mirrors:
            return self.iterations.value
        # JAX: Keras runs each step's loss in one StatelessScope; a loss serving several
        # outputs is called once per output, and must count the step once.
        scope = _compat.stateless_scope()
        if scope is None:
            return self.iterations.value
        if self._memo[0] is not scope:
            step = self.iterations.value
            self.iterations.assign(step + ops.cast(self.following.value, step.dtype))
            self._memo = (scope, step)
        return self._memo[1]

    def read(self, name: str) -> Any:
        """The value for this step, inside the compiled step."""
        value = self._vars[name].value
        schedule = self.schedules[name]
        if schedule is None:
            return value
        scheduled = ops.cast(schedule(self.step()), "float32")
        return ops.where(ops.greater(self.following.value, 0.0), scheduled, value)

    def note_trace(self, y_pred: Any) -> None:
        """JAX: remember when a jitted function traced this state as constants."""
        if keras.backend.backend() != "jax" or self.baked:
            return
        import jax

        if not isinstance(y_pred, jax.core.Tracer):
            return
        scope = _compat.stateless_scope()
        travels = scope is not None and scope.get_current_value(self.following) is not None
        if not travels:
            self.baked = True

    # Not a measurement: Keras resets metrics at every epoch and `evaluate`.
    def update_state(self, *args: Any, **kwargs: Any) -> None:
        """No-op (the values are assigned by the loss owner or a callback)."""

    def reset_state(self) -> None:
        """No-op on purpose: the values outlive epochs and evaluations."""

    def result(self) -> dict:
        return {}

    def get_config(self) -> dict:
        values = {
            k: self.get(k) if s is None else _schedules.serialize(s)
            for k, s in self.schedules.items()
        }
        return {"name": self.name, "values": values}


class Hyperparameter:
    """A loss attribute held in its :class:`HyperparameterState`.

    Reads give the value the compiled step uses now (a schedule's value at the current
    step); assignment validates and ``assign``s the variable, which the compiled step reads
    without retracing. A hyperparameter given as a schedule follows it: assigning a number to
    it is an error (build the loss with a number instead).
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
        state = obj.hyperparameter_state
        if state.schedules[self.name] is not None:
            raise ValueError(
                f"`{self.name}` of {obj.name!r} follows {state.schedules[self.name]!r}; "
                "build the loss with a number to set it by hand."
            )
        state.set(self.name, value)


class SchedulableLoss(keras.losses.Loss):
    """Base of the keras-ls losses: a functional loss, its configuration, and its
    schedulable hyperparameters (as ``keras.losses.LossFunctionWrapper`` wraps a function).

    Subclasses declare ``schedulable = ("name", ...)`` (the first is the one a
    ``SmoothingScheduler`` drives by default), each a :class:`Hyperparameter` attribute, and
    pass to ``__init__`` the functional loss ``fn``, the hyperparameters' initial values
    (numbers or schedules), ``fn``'s other keyword arguments (each becomes an attribute and a
    ``get_config`` entry; the shared ones are validated by ``ARGUMENT_CHECKS``, any other by
    the subclass) and the ``keras.losses.Loss`` arguments (``name``, ``reduction``, ``dtype``)
    as ``**kwargs``. ``call`` is ``fn(y_true, y_pred, **hyperparameters, **arguments)`` with
    the hyperparameters read inside the compiled step.
    """

    schedulable: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        fn: Callable[..., Any],
        hyperparameters: dict[str, Any],
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
        self._warned_unlinked = False

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

    def _check_state(self, y_pred: Any) -> None:
        if _compat.in_symbolic_scope():  # Keras computing shapes, not a step
            return
        state = self._hyperparameters
        state.note_trace(y_pred)
        scheduled = [k for k, s in state.schedules.items() if s is not None]
        linked = state.source is not None or state.mirrors
        if scheduled and not linked and not self._warned_unlinked:
            self._warned_unlinked = True
            warnings.warn(
                f"{self.name!r} follows a schedule for {', '.join(scheduled)}, evaluated at "
                "the training step, but no keras_ls.SmoothingScheduler links it to a model's "
                f"optimizer: it stays at step {state.host_step()}. Add "
                "`callbacks=[keras_ls.SmoothingScheduler()]` to `fit`.",
                stacklevel=3,
            )

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        # Keras' Loss.__call__ casts y_true to the loss dtype, which rounds integer labels
        # above 256 under bfloat16. Same steps, with labels left as given.
        in_mask = _compat.get_keras_mask(y_pred)
        self._check_state(y_pred)
        with keras.name_scope(self.name):
            y_pred = ops.convert_to_tensor(y_pred, self.dtype)
            y_true = ops.convert_to_tensor(y_true)
            losses = self.call(y_true, y_pred)
            out_mask = _compat.get_keras_mask(losses)
            if out_mask is not None:
                losses, out_mask = global_masked_mean(losses, out_mask, self.reduction)
            if in_mask is not None and out_mask is not None:
                mask = in_mask & out_mask
            else:
                mask = out_mask if out_mask is not None else in_mask
            return _compat.reduce_weighted_values(
                losses, sample_weight, mask, self.reduction, self.dtype
            )

    def get_config(self) -> dict:
        config = super().get_config()
        # A number: the *current* value (a model saved mid-schedule reloads with it); a
        # schedule: its config (the step comes back with the optimizer).
        config.update(self._hyperparameters.get_config()["values"])
        for key in self._arguments:
            value = getattr(self, key)
            config[key] = value.tolist() if isinstance(value, np.ndarray) else value
        config["dtype"] = self._dtype_policy.name
        return config

    # Keras' saving walks the model's `loss` attribute (model.save, save_weights, hence
    # BackupAndRestore): the step a schedule is evaluated at comes back with the loss.
    def save_own_variables(self, store: Any) -> None:
        store["iterations"] = ops.convert_to_numpy(self._hyperparameters.iterations.value)

    def load_own_variables(self, store: Any) -> None:
        if "iterations" in store:  # files of keras-ls 0.2.0 have none
            self._hyperparameters.iterations.assign(np.asarray(store["iterations"]))


class LabelSmoothingLoss(SchedulableLoss):
    """A :class:`SchedulableLoss` whose schedulable hyperparameter is ``label_smoothing``."""

    schedulable = ("label_smoothing",)
    label_smoothing = Hyperparameter("The smoothing factor ``a`` in ``[0, 1]``.")

    def __init__(self, fn: Callable[..., Any], label_smoothing: Any, **kwargs: Any):
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


def attach_state(model: keras.Model, metrics: list[keras.metrics.Metric]) -> None:
    """Make ``metrics``' variables part of ``model``'s state (threaded through its step).

    Keras threads a model's metric variables through its compiled train step on every
    backend (on JAX nothing else reaches it). A metric already among the model's metrics
    (e.g. compiled with ``metrics=[...]``) is left alone. On JAX a step built for the old
    state layout is rebuilt (it is traced at its first call).
    """
    have = {id(v) for v in model.metrics_variables}
    for metric in _compat.compiled_user_metrics(model):
        have.update(id(v) for v in metric.variables)
    added = False
    for metric in metrics:
        if metric.variables and all(id(v) in have for v in metric.variables):
            continue
        _compat.track_metric(model, metric)
        have.update(id(v) for v in metric.variables)
        added = True
    if added and keras.backend.backend() == "jax":
        rebuild_steps(model)


def rebuild_steps(model: keras.Model) -> None:
    """Drop the model's compiled train and test steps: the next call traces them anew."""
    if getattr(model, "train_function", None) is not None:
        model.make_train_function(force=True)
    if getattr(model, "test_function", None) is not None:
        model.make_test_function(force=True)
