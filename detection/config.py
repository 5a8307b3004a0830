"""The four training keys the smoothed trainers add: the one place they are validated.

``label_smoothing`` (start value), ``label_smoothing_mode`` (``uniform`` |
``yolov5``), ``label_smoothing_schedule`` (a start→end name of
:mod:`keras_ls.schedules`: ``constant`` | ``linear`` | ``cosine`` |
``piecewise``, alias ``step``) and ``label_smoothing_final`` (the value at the
last epoch). As Ultralytics' learning rate starts at ``lr0``, the first epoch trains
at ``label_smoothing``; so a one-epoch run never moves from it (the trainer says so
in a warning), and ``label_smoothing_final`` is reached at the last epoch from 2
epochs on. Every way in -- trainer overrides, the CLI, a checkpoint being
resumed, :func:`detection.patch_detection_criterion` -- goes through
:class:`SmoothingConfig`; the layers below (``targets.py``) take its values as
they are.

Imports neither torch nor Ultralytics (nor TensorFlow/Keras), so bad settings
fail before anything heavy is loaded and before any run folder is created.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from keras_ls.schedules import START_END_NAMES, canonical_name, evaluate, from_name
from keras_ls.smoothing import validate_factor

__all__ = ["KEYS", "MODES", "SmoothingConfig", "pop_config"]

#: Detection smoothing modes: the prior a foreground row of score ``s`` is mixed with
#: (``targets.smooth_class_targets`` has the formulas).
MODES = ("uniform", "yolov5")


def _one_of(key: str, value: Any, accepted: tuple[str, ...], canonical=None) -> str:
    """``value`` lower-cased if it (or its ``canonical`` name) is in ``accepted``."""
    text = value.lower() if isinstance(value, str) else None
    try:
        name = canonical(text) if canonical is not None and text is not None else text
    except ValueError:  # canonical_name: not a schedule at all
        name = None
    if name not in accepted:
        raise ValueError(f"`{key}` must be one of {', '.join(accepted)}; received {value!r}.")
    return text


@dataclass(frozen=True)
class SmoothingConfig:
    """Validated smoothing settings; :meth:`factor` gives the value at an epoch.

    The fields are the four training keys, with their defaults; ``help`` in each
    field's metadata is what ``python -m detection train --help`` prints.

    Args:
        label_smoothing: factor ``a`` in [0, 1] at the first epoch.
        label_smoothing_mode: ``uniform`` or ``yolov5``.
        label_smoothing_schedule: how ``a`` moves from ``label_smoothing`` to
            ``label_smoothing_final`` over the epochs. Stored as given
            (lower-cased), so ``step`` stays ``step`` in ``args.yaml`` and in
            checkpoints.
        label_smoothing_final: ``a`` at the last epoch (of a run of 2 or more epochs:
            the first epoch always trains at ``label_smoothing``); None means
            ``label_smoothing``.

    Example:

    >>> SmoothingConfig(0.2, "uniform", "linear", 0.0).factor(epoch=1, epochs=3)
    0.1
    >>> SmoothingConfig(0.2, "uniform", "linear", 0.0).factor(epoch=0, epochs=1)  # one epoch
    0.2
    """

    label_smoothing: float = field(
        default=0.1, metadata={"help": "smoothing factor a in [0, 1] at the first epoch"}
    )
    label_smoothing_mode: str = field(
        default="uniform",
        metadata={
            "help": "uniform: mix each foreground row toward score/nc (keeps the row total); "
            "yolov5: toward score/2 (the old YOLOv5 smooth_bce). Classification: uniform only"
        },
    )
    label_smoothing_schedule: str = field(
        default="constant",
        metadata={
            "help": f"{' | '.join(START_END_NAMES)}: how a moves from label_smoothing to "
            "label_smoothing_final, evaluated once per epoch (piecewise/step: the start value "
            "for the first half of the epochs, then the final one)"
        },
    )
    label_smoothing_final: float | None = field(
        default=None,
        metadata={
            "help": "a at the last epoch; none: equal to label_smoothing. The first epoch "
            "trains at label_smoothing (as Ultralytics' lr starts at lr0), so with epochs=1 "
            "the factor stays label_smoothing and this value is not reached"
        },
    )

    def __post_init__(self) -> None:
        start = validate_factor(self.label_smoothing, "label_smoothing")
        mode = _one_of("label_smoothing_mode", self.label_smoothing_mode, MODES)
        sched = _one_of(
            "label_smoothing_schedule",
            self.label_smoothing_schedule,
            START_END_NAMES,
            canonical_name,  # aliases of keras_ls.schedules (e.g. step -> piecewise)
        )
        final = start if self.label_smoothing_final is None else self.label_smoothing_final
        final = validate_factor(final, "label_smoothing_final")
        if canonical_name(sched) == "constant" and final != start:
            others = ", ".join(n for n in START_END_NAMES if n != "constant")
            raise ValueError(
                f"`label_smoothing_final={final}` differs from `label_smoothing={start}` but "
                f"`label_smoothing_schedule='constant'`; choose one of {others} to "
                "change the factor during training."
            )
        object.__setattr__(self, "label_smoothing", start)
        object.__setattr__(self, "label_smoothing_mode", mode)
        object.__setattr__(self, "label_smoothing_schedule", sched)
        object.__setattr__(self, "label_smoothing_final", final)

    def schedule(self, epochs: int):
        """The ``keras_ls.schedules`` object: the start value at epoch 0, the final value at
        epoch ``epochs - 1`` (with ``epochs >= 2``; one epoch keeps the start value)."""
        return from_name(
            self.label_smoothing_schedule,
            self.label_smoothing,
            self.label_smoothing_final,
            max(int(epochs) - 1, 1),
        )

    def factor(self, epoch: int, epochs: int) -> float:
        """The smoothing factor for 0-based ``epoch`` of a run of ``epochs`` epochs."""
        return evaluate(self.schedule(epochs), epoch)

    def short_run_warning(self, epochs: int) -> str | None:
        """Why ``label_smoothing_final`` is not reached in a run of ``epochs`` epochs, or None."""
        if int(epochs) >= 2 or self.label_smoothing_final == self.label_smoothing:
            return None
        return (
            f"label_smoothing_schedule={self.label_smoothing_schedule} with epochs={epochs}: "
            f"the first epoch trains at label_smoothing={self.label_smoothing:g} (as the "
            f"learning rate starts at lr0), so label_smoothing_final="
            f"{self.label_smoothing_final:g} is not reached; it is the value at the last "
            "epoch of a run of 2 or more epochs."
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


#: The four training keys, in order (the fields of :class:`SmoothingConfig`).
KEYS = tuple(f.name for f in fields(SmoothingConfig))


def _coerce(key: str, value: Any) -> Any:
    # Strings from a YAML cfg or a Python caller: numbers for the factors, as is otherwise.
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
    trainer sees them. A key given as None keeps its default.
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
