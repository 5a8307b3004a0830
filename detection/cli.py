r"""``python -m detection``: Ultralytics-style ``key=value`` command line.

    python -m detection train model=yolo11n.yaml data=path/to/data.yaml label_smoothing=0.1 \
        label_smoothing_schedule=cosine label_smoothing_final=0.0 epochs=3 imgsz=320 device=cpu
    python -m detection subset src=path/to/data.yaml classes=person,car,dog max_images=200 \
        out=coco_pcd [keep_background=true] [seed=0] [images=dir (COCO JSON)] [val_fraction=0.2]

``train`` takes every Ultralytics training key plus the four smoothing keys;
``task=`` (or the model name: ``*-cls``, ``*-seg``, ``*-pose``, ``*-obb``) picks the
classification, segmentation, pose or OBB trainer; detection otherwise.
``offline=true`` (or ``KERAS_LS_OFFLINE=1``) calls :func:`detection.offline` first.
Bad input exits with status 2 and a one-line ``error:`` message.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["main", "parse_kv"]

USAGE = __doc__


def _value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_kv(argv: list[str]) -> dict[str, Any]:
    """``["a=1", "b=x"]`` -> ``{"a": 1, "b": "x"}``; raises ValueError on a bare word."""
    out: dict[str, Any] = {}
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or not key:
            raise ValueError(f"arguments must be key=value; received {arg!r}.")
        out[key.strip()] = _value(value.strip())
    return out


def _offline(kw: dict[str, Any]) -> None:
    flag = kw.pop("offline", None)
    env = os.environ.get("KERAS_LS_OFFLINE", "").lower() in ("1", "true", "yes")
    if flag or (flag is None and env):
        from detection.offline import offline

        offline()


def cmd_train(kw: dict[str, Any]) -> int:
    from detection.config import pop_config

    _offline(kw)
    model = kw.pop("model", None)
    if model is None:
        raise ValueError("`model` is required, e.g. model=yolo11n.yaml or model=path/to/best.pt.")
    pop_config(dict(kw))  # validate the smoothing keys before anything heavy is imported
    stem = Path(str(model)).stem
    suffixes = {"-cls": "classify", "-seg": "segment", "-pose": "pose", "-obb": "obb"}
    task = kw.get("task") or next((t for s, t in suffixes.items() if s in stem), "detect")
    from detection.offline import resolve_model

    model = resolve_model(model)
    from ultralytics import YOLO

    from detection.trainer import TRAINERS

    if task not in TRAINERS:
        raise ValueError(f"`task` must be one of {', '.join(TRAINERS)}; received {task!r}.")
    trainer = TRAINERS[task]
    yolo = YOLO(model, task=task)
    yolo.train(trainer=trainer, **kw)
    if yolo.trainer is not None:
        print(f"weights: {yolo.trainer.best if yolo.trainer.best.exists() else yolo.trainer.last}")
    return 0


def cmd_subset(kw: dict[str, Any]) -> int:
    from detection.data import make_subset

    _offline(kw)
    missing = [k for k in ("src", "classes", "out") if k not in kw]
    if missing:
        raise ValueError(f"subset needs {', '.join(k + '=' for k in missing)}")
    kw["classes"] = str(kw["classes"])
    for key in ("src", "out", "images"):
        if key in kw and kw[key] is not None:
            kw[key] = str(kw[key])
    allowed = {
        "src",
        "classes",
        "out",
        "max_images",
        "keep_background",
        "seed",
        "images",
        "val_fraction",
        "overwrite",
    }
    unknown = sorted(set(kw) - allowed)
    if unknown:
        raise ValueError(f"unknown subset argument(s) {unknown}; expected {sorted(allowed)}.")
    path = make_subset(**kw)
    print(f"data: {path}")
    return 0


COMMANDS = {"train": cmd_train, "subset": cmd_subset}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(
            f"error: unknown command {command!r}; expected one of {', '.join(COMMANDS)}.",
            file=sys.stderr,
        )
        return 2
    try:
        return COMMANDS[command](parse_kv(rest))
    except (ValueError, TypeError, FileNotFoundError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
