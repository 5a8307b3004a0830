"""Smoothing-factor schedules: ``schedule(step) -> factor``.

Each schedule is a small, serializable object (``get_config`` / ``from_config``, the same
contract as ``keras.optimizers.schedules``) whose value depends on the step alone, so a
resumed run lands on the same factor. Like a Keras ``LearningRateSchedule`` it is
*traceable*: given a Python number it returns a float (computed in float64, as the YOLO
adapter and the callbacks use it); given a tensor -- the step counter inside a compiled
train step -- it returns a float32 tensor computed with ``keras.ops``, so a loss built with
a schedule (``SmoothedCE(Cosine(0.1, 0.0, steps=1000))``) evaluates it in the step, as
Keras evaluates a learning-rate schedule from ``optimizer.iterations``.

Anything else with that signature is accepted through :func:`get`: a Keras
``LearningRateSchedule`` (e.g. ``keras.optimizers.schedules.CosineDecay`` or
``PiecewiseConstantDecay`` -- reused, not re-implemented here), a plain
callable ``step -> float``, or a number (constant).

This module imports neither TensorFlow nor Keras (``keras.ops`` is imported only when a
tensor step arrives, i.e. when Keras is already loaded): the YOLO adapter uses it. Keras
serialization is registered when :mod:`keras_ls.losses` is imported.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from keras_ls.smoothing import validate_factor

__all__ = [
    "SmoothingSchedule",
    "Constant",
    "Linear",
    "Cosine",
    "Piecewise",
    "Warmup",
    "REGISTRY",
    "ALIASES",
    "START_END_NAMES",
    "canonical_name",
    "get",
    "is_traceable",
    "from_name",
    "evaluate",
    "serialize",
    "deserialize",
]


def _check_steps(steps: Any, name: str = "steps") -> int:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"`{name}` must be an integer >= 1; received {steps!r}.")
    return int(steps)


def _is_number(step: Any) -> bool:
    """A host step (Python or numpy scalar) rather than a tensor of a compiled step."""
    return isinstance(step, (int, float, np.integer, np.floating)) or (
        isinstance(step, np.ndarray) and step.ndim == 0
    )


def _ops() -> Any:
    from keras import ops  # a tensor step means Keras is loaded already

    return ops


def _float_step(step: Any) -> Any:
    return _ops().cast(step, "float32")


def _check_step(step: Any) -> float:
    step = float(np.asarray(step))
    if not math.isfinite(step) or step < 0:
        raise ValueError(f"`step` must be a finite number >= 0; received {step!r}.")
    return step


class SmoothingSchedule:
    """Base class: a factor that depends only on the step.

    Subclasses implement ``__call__(step) -> float`` and ``get_config()``.
    """

    def __call__(self, step: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def get_config(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: dict) -> SmoothingSchedule:
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.get_config() == other.get_config()

    __hash__ = None  # type: ignore[assignment]  # mutable-by-config objects


class Constant(SmoothingSchedule):
    """The same factor at every step."""

    def __init__(self, value: float = 0.1):
        self.value = validate_factor(value, "value")

    def __call__(self, step: Any) -> Any:
        if not _is_number(step):
            return _float_step(step) * 0.0 + self.value
        _check_step(step)
        return self.value

    def get_config(self) -> dict:
        return {"value": self.value}


class _StartEnd(SmoothingSchedule):
    """A path from ``start`` at step 0 to ``end`` at step ``steps``, then ``end``."""

    def __init__(self, start: float, end: float, steps: int):
        self.start = validate_factor(start, "start")
        self.end = validate_factor(end, "end")
        self.steps = _check_steps(steps)

    def _progress(self, step: Any) -> Any:
        """``t`` in ``[0, 1]``: how far along the path ``step`` is."""
        if not _is_number(step):
            return _ops().minimum(_float_step(step), float(self.steps)) / float(self.steps)
        return min(_check_step(step), self.steps) / self.steps

    def get_config(self) -> dict:
        return {"start": self.start, "end": self.end, "steps": self.steps}


class Linear(_StartEnd):
    """From ``start`` to ``end`` linearly over ``steps`` steps, then ``end``.

    ``Linear(0.2, 0.0, steps=10)(5) == 0.1``.
    """

    def __call__(self, step: Any) -> Any:
        return self.start + (self.end - self.start) * self._progress(step)


class Cosine(_StartEnd):
    """Half-cosine from ``start`` to ``end`` over ``steps`` steps, then ``end``."""

    def __call__(self, step: Any) -> Any:
        t = self._progress(step)
        cos = math.cos(math.pi * t) if _is_number(step) else _ops().cos(math.pi * t)
        # Written from `end`, so that the last step gives `end` exactly.
        return self.end + (self.start - self.end) * 0.5 * (1.0 + cos)


class Piecewise(SmoothingSchedule):
    """``values[i]`` for ``boundaries[i-1] <= step < boundaries[i]``.

    ``Piecewise([5, 10], [0.1, 0.05, 0.0])``: 0.1 for steps 0-4, 0.05 for
    5-9, 0.0 from 10 on (the step/staircase schedule).
    """

    def __init__(self, boundaries: Sequence[int], values: Sequence[float]):
        boundaries = [int(b) for b in boundaries]
        if len(values) != len(boundaries) + 1:
            raise ValueError(
                "`values` must have one more entry than `boundaries`; received "
                f"{len(values)} values for {len(boundaries)} boundaries."
            )
        if any(b < 0 for b in boundaries) or boundaries != sorted(set(boundaries)):
            raise ValueError(
                "`boundaries` must be strictly increasing non-negative steps; "
                f"received {boundaries}."
            )
        self.boundaries = boundaries
        self.values = [validate_factor(v, "values") for v in values]

    def __call__(self, step: Any) -> Any:
        if not _is_number(step):
            ops = _ops()
            if not self.boundaries:
                return _float_step(step) * 0.0 + self.values[0]
            passed = ops.greater_equal(_float_step(step)[None], ops.convert_to_tensor(
                np.asarray(self.boundaries, np.float32)))
            index = ops.sum(ops.cast(passed, "int32"))
            return ops.take(ops.convert_to_tensor(np.asarray(self.values, np.float32)), index)
        step = _check_step(step)
        i = sum(step >= b for b in self.boundaries)
        return self.values[i]

    def get_config(self) -> dict:
        return {"boundaries": list(self.boundaries), "values": list(self.values)}


class Warmup(SmoothingSchedule):
    """Linear warm-up from ``start`` over ``warmup_steps``, then ``after``.

    ``after`` is a number or any schedule accepted by :func:`get`; it is
    evaluated at ``step - warmup_steps`` so that it starts at its own step 0.
    The warm-up ends at ``after(0)``.
    """

    def __init__(self, warmup_steps: int, after: Any = 0.1, start: float = 0.0):
        self.warmup_steps = _check_steps(warmup_steps, "warmup_steps")
        self.start = validate_factor(start, "start")
        self.after = get(after)
        if not is_traceable(self.after):
            raise TypeError(
                "`after` must be a number, a keras_ls.schedules object or a Keras "
                f"LearningRateSchedule (evaluated inside the train step); received {after!r}."
            )

    def __call__(self, step: Any) -> Any:
        target = evaluate(self.after, 0)
        if not _is_number(step):
            ops = _ops()
            s = _float_step(step)
            warm = self.start + (target - self.start) * s / float(self.warmup_steps)
            after = self.after(ops.maximum(s - float(self.warmup_steps), 0.0))
            return ops.where(ops.less(s, float(self.warmup_steps)), warm, after)
        step = _check_step(step)
        if step < self.warmup_steps:
            return self.start + (target - self.start) * step / self.warmup_steps
        return evaluate(self.after, step - self.warmup_steps)

    def get_config(self) -> dict:
        return {
            "warmup_steps": self.warmup_steps,
            "after": serialize(self.after),
            "start": self.start,
        }

    @classmethod
    def from_config(cls, config: dict) -> Warmup:
        config = dict(config)
        config["after"] = deserialize(config["after"])
        return cls(**config)


#: The one registry of schedules: name -> class. ``from_name``, ``deserialize``
#: and the detection CLI all read it.
REGISTRY: dict[str, type[SmoothingSchedule]] = {
    "constant": Constant,
    "linear": Linear,
    "cosine": Cosine,
    "piecewise": Piecewise,
    "warmup": Warmup,
}
#: Other names accepted for a registry entry ("step" is the detection CLI's
#: name for a two-value piecewise schedule since 0.1.0).
ALIASES: dict[str, str] = {"step": "piecewise"}
#: Names that :func:`from_name` can build from (start, end, steps).
START_END_NAMES: tuple[str, ...] = ("constant", "linear", "cosine", "piecewise", "step")


def canonical_name(name: Any) -> str:
    """The registry name for ``name`` (case-insensitive, aliases resolved).

    Raises ``ValueError`` naming the accepted names for anything else.
    """
    key = name.lower() if isinstance(name, str) else None
    key = ALIASES.get(key, key)
    if key not in REGISTRY:
        accepted = ", ".join([*REGISTRY, *ALIASES])
        raise ValueError(f"Unknown smoothing schedule {name!r}; expected one of {accepted}.")
    return key


def from_name(name: str, start: float, end: float, steps: int) -> SmoothingSchedule:
    """Build a start→end schedule by name, reaching ``end`` at step ``steps``.

    ``constant`` ignores ``end``; ``piecewise`` (alias ``step``) holds ``start``
    for the first half and ``end`` from step ``ceil(steps / 2)`` on.
    ``warmup`` has no start→end form: build ``Warmup`` directly.

    Example:

    >>> from_name("cosine", 0.1, 0.0, steps=10)(5)
    0.05
    """
    key = canonical_name(name)
    if key not in START_END_NAMES:
        raise ValueError(
            f"Schedule {name!r} has no start/end form; expected one of "
            f"{', '.join(START_END_NAMES)}."
        )
    if key == "constant":
        return Constant(start)
    steps = max(int(steps), 1)
    if key == "linear":
        return Linear(start, end, steps)
    if key == "cosine":
        return Cosine(start, end, steps)
    return Piecewise([math.ceil(steps / 2)], [start, end])


def evaluate(schedule: Callable[[int], Any], step: int) -> float:
    """``schedule(step)`` as a validated Python float.

    Works for our schedules, Keras ``LearningRateSchedule`` objects (which
    return a backend tensor) and plain callables. Raises ``ValueError`` naming
    the schedule and step if the value is not finite or not in [0, 1].
    """
    value = schedule(step)
    try:
        return validate_factor(value, "label_smoothing")
    except (TypeError, ValueError) as e:
        raise type(e)(f"Schedule {schedule!r} at step {step}: {e}") from None


def is_traceable(schedule: Any) -> bool:
    """True if ``schedule(step)`` can be evaluated inside a compiled step from a tensor step:
    a keras-ls schedule or a Keras ``LearningRateSchedule`` (checked by its module, so that
    this stays importable without Keras). A plain Python callable is evaluated on the host
    (``keras_ls.SmoothingScheduler``)."""
    if isinstance(schedule, SmoothingSchedule):
        return True
    return any(
        c.__name__ == "LearningRateSchedule" and c.__module__.startswith("keras")
        for c in type(schedule).__mro__
    )


def get(identifier: Any) -> Callable[[int], Any]:
    """Resolve a schedule: a number, a callable, a config dict, or a name.

    - a number → :class:`Constant`;
    - a callable (our schedules, a Keras ``LearningRateSchedule``, a
      function ``step -> float``) → returned as is;
    - a dict ``{"class_name": ..., "config": ...}`` → :func:`deserialize`.
    """
    if isinstance(identifier, bool):
        raise TypeError(f"`schedule` must be a number or a callable; received {identifier!r}.")
    if isinstance(identifier, (int, float, np.integer, np.floating)):
        return Constant(float(identifier))
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if callable(identifier):
        return identifier
    raise TypeError(
        "`schedule` must be a number, a callable `step -> float` (e.g. a "
        "keras_ls.schedules object or a keras.optimizers.schedules."
        f"LearningRateSchedule), or a config dict; received {identifier!r}."
    )


def serialize(schedule: Any) -> Any:
    """A JSON-able form of a schedule (numbers stay numbers).

    Our schedules give ``{"class_name", "config"}``; other objects go through
    ``keras.saving.serialize_keras_object`` (imported only then).
    """
    if isinstance(schedule, (int, float)):
        return schedule
    if isinstance(schedule, SmoothingSchedule):
        return {"class_name": type(schedule).__name__, "config": schedule.get_config()}
    import keras  # only for foreign objects (Keras LR schedules)

    return keras.saving.serialize_keras_object(schedule)


def deserialize(config: Any) -> Any:
    """Inverse of :func:`serialize`."""
    if isinstance(config, (int, float)):
        return Constant(float(config))
    if isinstance(config, SmoothingSchedule) or callable(config):
        return config
    if not isinstance(config, dict) or "class_name" not in config:
        raise ValueError(f"Cannot deserialize a schedule from {config!r}.")
    name = config["class_name"]
    for cls in REGISTRY.values():
        if name in (cls.__name__, f"keras_ls>{cls.__name__}"):
            return cls.from_config(config.get("config", {}))
    import keras

    return keras.saving.deserialize_keras_object(config)
