"""The four training keys the smoothed trainers add, parsed and validated.

``label_smoothing`` (start value), ``label_smoothing_mode`` (``uniform`` |
``yolov5``), ``label_smoothing_schedule`` (``constant`` | ``linear`` |
``cosine`` | ``step``) and ``label_smoothing_final`` (the value at the last
epoch). No Ultralytics import: errors surface before any training starts.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from detection.targets import check_mode
from keras_ls.schedules import SCHEDULE_NAMES, evaluate, from_name
from keras_ls.smoothing import validate_factor

__all__ = ["KEYS", "SmoothingConfig", "pop_config"]

KEYS = (
    "label_smoothing",
    "label_smoothing_mode",
    "label_smoothing_schedule",
    "label_smoothing_final",
)

DEFAULT_FACTOR = 0.1


@dataclass(frozen=True)
class SmoothingConfig:
    """Validated smoothing settings; :meth:`factor` gives the value at an epoch."""

    label_smoothing: float = DEFAULT_FACTOR
    label_smoothing_mode: str = "uniform"
    label_smoothing_schedule: str = "constant"
    label_smoothing_final: float | None = None

    def __post_init__(self) -> None:
        start = validate_factor(self.label_smoothing, "label_smoothing")
        mode = check_mode(self.label_smoothing_mode)
        sched = self.label_smoothing_schedule
        if not isinstance(sched, str) or sched.lower() not in SCHEDULE_NAMES:
            raise ValueError(
                f"`label_smoothing_schedule` must be one of {', '.join(SCHEDULE_NAMES)}; "
                f"received {sched!r}."
            )
        sched = sched.lower()
        final = self.label_smoothing_final
        if final is None:
            final = start
        final = validate_factor(final, "label_smoothing_final")
        if sched == "constant" and final != start:
            raise ValueError(
                f"`label_smoothing_final={final}` differs from `label_smoothing={start}` but "
                "`label_smoothing_schedule='constant'`; choose linear, cosine or step to "
                "change the factor during training."
            )
        object.__setattr__(self, "label_smoothing", start)
        object.__setattr__(self, "label_smoothing_mode", mode)
        object.__setattr__(self, "label_smoothing_schedule", sched)
        object.__setattr__(self, "label_smoothing_final", final)

    def schedule(self, epochs: int):
        """The ``keras_ls.schedules`` object, reaching the final value at epoch ``epochs - 1``."""
        return from_name(
            self.label_smoothing_schedule,
            self.label_smoothing,
            self.label_smoothing_final,
            max(int(epochs) - 1, 1),
        )

    def factor(self, epoch: int, epochs: int) -> float:
        """The smoothing factor for 0-based ``epoch`` of a run of ``epochs`` epochs."""
        return evaluate(self.schedule(epochs), epoch)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _coerce(key: str, value: Any) -> Any:
    # CLI / YAML strings: numbers for the factors, plain strings otherwise.
    if key in ("label_smoothing", "label_smoothing_final") and isinstance(value, str):
        text = value.strip()
        if text.lower() in ("", "none", "null") and key == "label_smoothing_final":
            return None
        try:
            number = float(text)
        except ValueError:
            raise TypeError(
                f"`{key}` must be a real number in [0, 1]; received {value!r}."
            ) from None
        if not math.isfinite(number):
            raise ValueError(f"`{key}` must be a finite number in [0, 1]; received {value!r}.")
        return number
    return value


def pop_config(*sources: dict | None) -> SmoothingConfig:
    """Remove the smoothing keys from each dict in ``sources`` (later ones win) and validate.

    Ultralytics' ``get_cfg`` rejects unknown keys and silently drops
    ``label_smoothing``, so they must leave the overrides before the base
    trainer sees them.
    """
    found: dict[str, Any] = {}
    for src in sources:
        if not isinstance(src, dict):
            continue
        for key in KEYS:
            if key in src:
                value = src.pop(key)
                if value is not None or key == "label_smoothing_final":
                    found[key] = _coerce(key, value)
    return SmoothingConfig(**found)
