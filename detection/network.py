"""One switch that keeps Ultralytics off the network: :func:`offline` (exported as
``detection.offline``), and the helpers around it (``from detection.network import
is_offline, resolve_model``).

Ultralytics reaches out for settings sync/telemetry, a pip version check, an
``Arial.ttf`` font (``check_det_dataset`` calls ``check_font`` on every
train/val, even with ``plots=False``), weights and datasets given by name, and
the AMP check on CUDA. :func:`offline` (or ``KERAS_LS_OFFLINE=1`` in the
environment before ``import detection``) turns all of that off:

- ``YOLO_OFFLINE=1`` (Ultralytics' own flag: ``ONLINE`` is False, so no
  version check, no events, AMP check is skipped with a warning);
- a private ``YOLO_CONFIG_DIR`` (settings file and fonts; default
  ``$XDG_CACHE_HOME/keras_ls/ultralytics`` unless ``YOLO_CONFIG_DIR`` is already
  set), with ``sync=False`` in it;
- a local TTF (matplotlib's DejaVuSans) copied in as ``Arial.ttf`` and
  ``Arial.Unicode.ttf``, so the font check never downloads;
- :func:`resolve_model` fails at once, with a clear message, for a ``*.pt``
  that is not on disk instead of attempting a download.

Call it before ``ultralytics`` is first imported: Ultralytics reads
``YOLO_CONFIG_DIR`` and ``YOLO_OFFLINE`` at import time. Called later it still
places the fonts in the active config directory and turns sync off, and says so.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path

from detection._extra import import_extra

__all__ = ["offline", "is_offline", "resolve_model", "local_font"]

_LOG = logging.getLogger("detection")


def is_offline() -> bool:
    """True once :func:`offline` ran in this process (or ``YOLO_OFFLINE`` is set)."""
    return os.environ.get("YOLO_OFFLINE", "").lower() in ("1", "true", "yes")


def local_font() -> Path:
    """A TTF that ships with matplotlib (an Ultralytics dependency)."""
    import matplotlib

    font = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    if not font.is_file():  # pragma: no cover - matplotlib always ships it
        raise FileNotFoundError(f"No local TTF font found at {font}.")
    return font


def _default_config_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "keras_ls" / "ultralytics"


def _place_fonts(user_config_dir: Path) -> None:
    user_config_dir.mkdir(parents=True, exist_ok=True)
    src = local_font()
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        dst = user_config_dir / name
        if not dst.exists():
            shutil.copyfile(src, dst)


def offline(config_dir: str | os.PathLike | None = None) -> Path:
    """Make this process's Ultralytics work fully offline; returns its settings directory.

    Args:
        config_dir: where Ultralytics keeps its settings and fonts (becomes
            ``YOLO_CONFIG_DIR``). Default: ``$YOLO_CONFIG_DIR`` if set, else
            ``$XDG_CACHE_HOME/keras_ls/ultralytics`` (``~/.cache/...``).
            Ignored (with a warning) if ``ultralytics`` was already imported
            with another directory.
    """
    if config_dir is None:  # an explicit YOLO_CONFIG_DIR from the user wins over ours
        config_dir = os.environ.get("YOLO_CONFIG_DIR") or _default_config_dir()
    config_dir = Path(config_dir)
    already = "ultralytics" in sys.modules
    os.environ["YOLO_OFFLINE"] = "1"
    if not already:
        os.environ["YOLO_CONFIG_DIR"] = str(config_dir)
        # Ultralytics appends "Ultralytics" to YOLO_CONFIG_DIR; fonts go there.
        _place_fonts(config_dir / "Ultralytics")
    uu = import_extra("ultralytics.utils", "detection.offline()")

    if already:
        uu.ONLINE = False  # best effort: modules that imported ONLINE by name keep their copy
        if Path(uu.USER_CONFIG_DIR) != config_dir / "Ultralytics":
            _LOG.warning(
                "detection.offline(): ultralytics was imported before; using its config dir "
                "%s. Call offline() before importing ultralytics for a private one.",
                uu.USER_CONFIG_DIR,
            )
    _place_fonts(Path(uu.USER_CONFIG_DIR))
    if uu.SETTINGS.get("sync", True):
        uu.SETTINGS.update({"sync": False})
    return Path(uu.USER_CONFIG_DIR)


def resolve_model(model: str | os.PathLike) -> str:
    """Return ``model`` if it can be used without the network, else raise FileNotFoundError.

    ``*.yaml`` configs are built locally; a ``*.pt`` must exist on disk (as
    given, or in Ultralytics' ``weights_dir``). Names without a suffix get
    ``.pt`` as Ultralytics does (``yolo11n`` -> ``yolo11n.pt``). Only checks when
    offline; online, Ultralytics may download official weights by name.
    """
    if not isinstance(model, (str, os.PathLike)) or not str(model).strip():
        raise TypeError(f"`model` must be a path or a model name; received {model!r}.")
    text = str(model)
    path = Path(text)
    if path.suffix.lower() in (".yaml", ".yml"):
        return text
    if not path.suffix:
        path = path.with_suffix(".pt")
    if path.exists():
        return str(path)
    if not is_offline():
        return text
    from ultralytics.utils import SETTINGS

    cached = Path(SETTINGS["weights_dir"]) / path.name
    if cached.exists():
        return str(cached)
    raise FileNotFoundError(
        f"`model={text}`: {path.name} is not on disk and detection.offline() is on, so it "
        "cannot be downloaded. Pass a local .pt file (e.g. a previous run's weights/best.pt) or a "
        "model config such as yolo11n.yaml to train from scratch."
    )
