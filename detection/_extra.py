"""The ``detection`` extra: one clear error when it is not installed.

Ultralytics, torch and PyYAML come with ``pip install "keras-ls[detection]"``.
``import detection`` and ``import detection.config`` need none of them; every
other way in (the lazy names of ``detection``, the CLI commands,
:func:`detection.offline`, a COCO JSON subset) imports them through
:func:`import_extra`, so a missing one says what to install instead of
``No module named 'ultralytics'``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["INSTALL_HINT", "MissingExtraError", "import_extra"]

INSTALL_HINT = 'pip install "keras-ls[detection]"'
#: Top-level modules the extra provides.
EXTRA_MODULES = ("ultralytics", "torch", "yaml")


class MissingExtraError(ModuleNotFoundError):
    """A module of the ``detection`` extra is not installed (an ``ImportError``)."""


def import_extra(module: str, needed_by: str) -> ModuleType:
    """``importlib.import_module(module)``, naming the extra if one of its modules is missing.

    Args:
        module: the module to import, e.g. ``"detection.trainer"``.
        needed_by: what the user asked for, for the message
            (e.g. ``"detection.SmoothedDetectionTrainer"``).

    Returns:
        The imported module.

    Raises:
        MissingExtraError: Ultralytics, torch or PyYAML is not installed. Any
            other import error propagates unchanged.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        missing = (e.name or "").partition(".")[0]
        if missing not in EXTRA_MODULES:
            raise
        raise MissingExtraError(
            f"{needed_by} needs the `detection` extra (Ultralytics, torch), but {missing!r} "
            f"is not installed: {INSTALL_HINT}",
            name=missing,
        ) from e
