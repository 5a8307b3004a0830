"""``python -m detection``: Ultralytics-style ``key=value`` command line.

Two commands, each described by one table of :class:`Arg` rows that both the
parser and ``--help`` read:

- ``train``: a smoothed trainer (picked by the model's task). The keras-ls keys
  are :data:`TRAIN_ARGS`; every other ``key=value`` is an Ultralytics training
  key, parsed by Ultralytics' own ``parse_key_value_pair`` (as ``yolo train``
  parses it) and checked by Ultralytics.
- ``subset``: :func:`detection.data.make_subset`, then a report of what it wrote.
  Its keys are :data:`SUBSET_ARGS`; their defaults are ``make_subset``'s own.

Bad input exits with status 2 and a one-line ``error:`` message; a missing
``detection`` extra with status 1 and the ``pip install`` line.
"""

from __future__ import annotations

import inspect
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from detection._extra import MissingExtraError, import_extra
from detection.config import SmoothingConfig, pop_config

__all__ = ["Arg", "TRAIN_ARGS", "SUBSET_ARGS", "main"]

PROG = "python -m detection"
HELP_FLAGS = ("-h", "--help")


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


#: Default of an argument that has none.
REQUIRED: Any = _Required()
#: Default taken from ``make_subset``'s signature.
_SIGNATURE: Any = object()


def _flag(text: str) -> bool:
    low = text.lower()
    if low in ("true", "1", "yes", "false", "0", "no"):
        return low in ("true", "1", "yes")
    raise ValueError("true or false")


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError("an integer") from None


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError("a number") from None


def _or_none(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse_or_none(text: str) -> Any:
        if text.lower() in ("none", "null"):
            return None
        try:
            return parse(text)
        except ValueError as e:
            raise ValueError(f"{e} or none") from None

    return parse_or_none


@dataclass(frozen=True)
class Arg:
    """One ``key=value`` argument: its default, its meaning, how its text is read.

    Args:
        name: the key.
        default: its value when not given (:data:`REQUIRED`: must be given).
        help: what it means, for ``--help``.
        parse: text -> value; raises ValueError with what was expected (e.g.
            ``"an integer"``). None: Ultralytics' ``parse_key_value_pair``.
    """

    name: str
    default: Any
    help: str
    parse: Callable[[str], Any] | None = None

    def value(self, text: str) -> Any:
        """``text`` read with :attr:`parse`; the error names the key."""
        try:
            return self.parse(text) if self.parse is not None else text
        except ValueError as e:
            raise ValueError(f"`{self.name}` must be {e}; received {text!r}.") from None


OFFLINE = Arg(
    "offline",
    False,
    "true: call detection.offline() first (no network: local fonts, private settings, "
    "weights must be on disk); KERAS_LS_OFFLINE=1 does the same on `import detection`",
    _flag,
)

#: The keras-ls keys of ``train``: three of the CLI, then the four of SmoothingConfig.
TRAIN_ARGS: tuple[Arg, ...] = (
    Arg(
        "model",
        REQUIRED,
        "a model config (yolo11n.yaml: built from scratch) or weights (path/to/best.pt)",
    ),
    Arg(
        "task",
        None,
        "detect | segment | pose | obb | classify: picks the smoothed trainer; none: the "
        "model's own task, as Ultralytics reads it (yolo11n-cls.yaml -> classify)",
    ),
    OFFLINE,
    *(Arg(f.name, f.default, f.metadata["help"]) for f in fields(SmoothingConfig)),
)

#: The keys of ``subset`` (the parameters of ``make_subset``, and ``offline``).
SUBSET_ARGS: tuple[Arg, ...] = (
    Arg(
        "src",
        _SIGNATURE,
        "a YOLO data.yaml (its train/val splits are kept) or a COCO instances .json",
        str,
    ),
    Arg(
        "classes",
        _SIGNATURE,
        "the class names to keep, comma-separated (person,car,dog); new ids 0..k-1 in this order",
        str,
    ),
    Arg("out", _SIGNATURE, "output folder (images/, labels/, data.yaml); absent or empty", str),
    Arg(
        "max_images",
        _SIGNATURE,
        "at most this many images per split, a seeded random pick; none: all",
        _or_none(_int),
    ),
    Arg(
        "keep_background",
        _SIGNATURE,
        "also keep images with none of the classes, with an empty label file",
        _flag,
    ),
    Arg(
        "seed", _SIGNATURE, "seed of every random choice (same inputs and seed: same dataset)", _int
    ),
    Arg(
        "images",
        _SIGNATURE,
        "COCO JSON only: the folder of its images; none: looked for next to the JSON",
        _or_none(str),
    ),
    Arg("val_fraction", _SIGNATURE, "COCO JSON only: the share of images that go to val", _float),
    Arg("overwrite", _SIGNATURE, "true: replace `out` if it is not empty", _flag),
    OFFLINE,
)


def _subset_args() -> tuple[Arg, ...]:
    """SUBSET_ARGS with the defaults read from ``make_subset``'s signature."""
    data = import_extra("detection.data", f"{PROG} subset")
    params = inspect.signature(data.make_subset).parameters
    out = []
    for arg in SUBSET_ARGS:
        if arg.default is _SIGNATURE:
            default = params[arg.name].default
            default = REQUIRED if default is inspect.Parameter.empty else default
            arg = Arg(arg.name, default, arg.help, arg.parse)
        out.append(arg)
    return tuple(out)


# --------------------------------------------------------------------------- help


def _shown(value: Any) -> str:
    if value is REQUIRED:
        return "..."
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _table(args: tuple[Arg, ...]) -> str:
    left = [f"  {a.name}={_shown(a.default)}" for a in args]
    width = max(len(x) for x in left) + 2
    lines = []
    for head, arg in zip(left, args):
        text = ("(required) " if arg.default is REQUIRED else "") + arg.help
        wrapped = textwrap.wrap(text, 100 - width) or [""]
        lines.append(head.ljust(width) + wrapped[0])
        lines += [" " * width + w for w in wrapped[1:]]
    return "\n".join(lines)


def train_help() -> str:
    """The text of ``python -m detection train --help``."""
    return f"""usage: {PROG} train model=MODEL data=DATA.yaml [key=value ...]

Train an Ultralytics YOLO model with label-smoothed class targets (a smoothed
trainer for detect, segment, pose, obb or classify). Bad settings fail before
any run folder is created.

keras-ls keys (key=default, then what it means):
{_table(TRAIN_ARGS)}

Ultralytics keys: every other key=value is an Ultralytics training key and
passes through unchanged, parsed as `yolo train` parses it and checked by
Ultralytics (an unknown key fails with the closest valid ones). For example:
  data=coco_pcd/data.yaml   the dataset (required unless resume=true)
  epochs=3 imgsz=320 batch=16 device=cpu   (device=0 for a GPU, 0,1 for DDP)
  project=runs name=ls resume=true seed=0 workers=0 plots=false
All keys and their defaults: `yolo cfg`, or https://docs.ultralytics.com/usage/cfg/

examples:
  {PROG} train model=yolo11n.yaml data=coco_pcd/data.yaml epochs=3 imgsz=320 \\
      device=cpu label_smoothing=0.1 label_smoothing_schedule=cosine \\
      label_smoothing_final=0 offline=true
  {PROG} train model=runs/detect/ls/weights/last.pt resume=true
"""


def subset_help() -> str:
    """The text of ``python -m detection subset --help``."""
    return f"""usage: {PROG} subset src=SRC classes=A,B,... out=DIR [key=value ...]

Write a YOLO dataset with only the chosen classes (ids remapped to 0..k-1 in
the order given, names in its data.yaml), from a YOLO data.yaml or a COCO
instances JSON, then print what it holds: per split the images (and how many
are background) and the label rows per class, and the data.yaml path.

keys (key=default, then what it means):
{_table(_subset_args())}

example:
  {PROG} subset src=$KERAS_LS_COCO128/data.yaml classes=person,car,dog \\
      max_images=200 out=coco_pcd
"""


def main_help() -> str:
    """The text of ``python -m detection --help``."""
    return f"""usage: {PROG} <command> [key=value ...]

Label smoothing for Ultralytics YOLO (keras-ls).

commands:
  train    train YOLO with label-smoothed class targets; Ultralytics keys pass through
  subset   write a YOLO dataset of chosen classes (from a data.yaml or COCO JSON)

`{PROG} <command> --help` lists the command's keys, defaults and meanings.
Bad input exits with status 2; a missing `detection` extra with status 1.
"""


# --------------------------------------------------------------------------- parsing


def _split(argv: list[str]) -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}`` (texts); later keys win."""
    out: dict[str, str] = {}
    for arg in argv:
        key, sep, text = arg.partition("=")
        key, text = key.strip(), text.strip()
        if not sep or not key:
            raise ValueError(f"arguments must be key=value; received {arg!r}.")
        if not text:
            raise ValueError(f"`{key}` has no value; write {key}=VALUE.")
        out[key] = text
    return out


def _check_required(args: tuple[Arg, ...], given: dict[str, Any], command: str) -> None:
    missing = [a.name for a in args if a.default is REQUIRED and a.name not in given]
    if missing:
        keys = " ".join(f"{k}=..." for k in missing)
        raise ValueError(f"{command} needs {keys} (see `{PROG} {command} --help`).")


def _go_offline(texts: dict[str, str]) -> None:
    # Before Ultralytics is imported: it reads YOLO_CONFIG_DIR / YOLO_OFFLINE at import time.
    if OFFLINE.value(texts.pop(OFFLINE.name, "false")):
        import_extra("detection.network", f"{PROG} offline=true").offline()


# --------------------------------------------------------------------------- commands


def cmd_train(texts: dict[str, str]) -> int:
    _check_required(TRAIN_ARGS, texts, "train")
    _go_offline(texts)
    cfg = import_extra("ultralytics.cfg", f"{PROG} train")
    kw = dict(cfg.parse_key_value_pair(f"{k}={v}") for k, v in texts.items())
    model, task = kw.pop("model"), kw.pop("task", None)
    pop_config(dict(kw))  # bad smoothing keys fail before a model is built
    model = import_extra("detection.network", f"{PROG} train").resolve_model(model)
    trainers = import_extra("detection.trainer", f"{PROG} train").TRAINERS
    if task is not None and task not in trainers:
        raise ValueError(f"`task` must be one of {', '.join(trainers)}; received {task!r}.")
    yolo = import_extra("ultralytics", f"{PROG} train").YOLO(model, task=task)
    if yolo.task not in trainers:
        raise ValueError(
            f"model {model!r} has task {yolo.task!r}; label smoothing supports "
            f"{', '.join(trainers)}."
        )
    yolo.train(trainer=trainers[yolo.task], **kw)
    if yolo.trainer is not None:
        print(f"weights: {yolo.trainer.best if yolo.trainer.best.exists() else yolo.trainer.last}")
    return 0


def cmd_subset(texts: dict[str, str]) -> int:
    data = import_extra("detection.data", f"{PROG} subset")
    args = {a.name: a for a in _subset_args()}
    unknown = sorted(set(texts) - set(args))
    if unknown:
        raise ValueError(f"unknown subset argument(s) {unknown}; expected {sorted(args)}.")
    _check_required(tuple(args.values()), texts, "subset")
    _go_offline(texts)
    path = data.make_subset(**{k: args[k].value(v) for k, v in texts.items()})
    print(data.summarize_dataset(path))
    print(f"data: {path}")
    return 0


COMMANDS: dict[str, tuple[Callable[[dict[str, str]], int], Callable[[], str]]] = {
    "train": (cmd_train, train_help),
    "subset": (cmd_subset, subset_help),
}


def main(argv: list[str] | None = None) -> int:
    """Run ``python -m detection`` with ``argv`` (default ``sys.argv[1:]``); the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in (*HELP_FLAGS, "help"):
        print(main_help().rstrip("\n"))
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(
            f"error: unknown command {name!r}; expected one of {', '.join(COMMANDS)}.",
            file=sys.stderr,
        )
        return 2
    run, show_help = COMMANDS[name]
    try:
        if any(a in HELP_FLAGS for a in rest):
            print(show_help().rstrip("\n"))
            return 0
        return run(_split(rest))
    except MissingExtraError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    # SyntaxError: how Ultralytics' get_cfg rejects an unknown key.
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, SyntaxError) as e:
        print(f"error: {str(e).strip()}", file=sys.stderr)
        return 2
