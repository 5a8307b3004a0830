"""keras-ls: label smoothing as a first-class, measured tool for Keras 3.

Heavy names (anything touching Keras) are imported lazily, so that
``import keras_ls.smoothing`` / ``keras_ls.schedules`` never loads TensorFlow
-- the Ultralytics adapter in ``detection/`` depends on that.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "SmoothedCE": "keras_ls.losses",
    "SmoothedBCE": "keras_ls.losses",
    "SmoothingScheduler": "keras_ls.callbacks",
    "ExpectedCalibrationError": "keras_ls.metrics",
    "OnlineSmoothedCE": "keras_ls.online",
    "OnlineLabelSmoothing": "keras_ls.online",
    "ConfidencePenaltyCE": "keras_ls.losses_extra",
    "SmoothedDice": "keras_ls.losses_extra",
}
_SUBMODULES = (
    "smoothing",
    "schedules",
    "calibration",
    "noise",
    "datasets",
    "data",
    "losses",
    "callbacks",
    "metrics",
)

__all__ = sorted(_LAZY) + list(_SUBMODULES)


# Modules whose classes are registered with Keras serialization.
_REGISTERING = ("keras_ls.losses", "keras_ls.metrics", "keras_ls.online", "keras_ls.losses_extra")


def register_serializables() -> None:
    """Import the modules that register keras-ls classes with Keras.

    Needed before ``keras.saving.load_model`` can rebuild a model compiled
    with a keras-ls loss or metric. ``import keras_ls`` arranges it in either
    import order: at once if Keras is already imported, else right after
    ``import keras`` (see :class:`_RegisterWhenKerasLoads`).
    """
    for module in _REGISTERING:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:  # optional module not present
            if e.name != module:
                raise


class _RegisterWhenKerasLoads(importlib.abc.MetaPathFinder):
    """One-shot import hook: register our classes right after ``import keras``.

    ``import keras_ls`` must not import Keras (and TensorFlow) itself, yet
    ``keras.saving.load_model`` should find our classes whatever the import
    order. This finder wraps the real loader of the ``keras`` package and calls
    :func:`register_serializables` once the package has executed.
    """

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "keras":
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)  # one shot, and no recursion below
        spec = importlib.util.find_spec("keras")
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module

        def exec_then_register(module: Any) -> None:
            exec_module(module)
            register_serializables()

        loader.exec_module = exec_then_register
        return spec


if "keras" in sys.modules:  # never import Keras (and TF) ourselves here
    register_serializables()
elif not any(isinstance(f, _RegisterWhenKerasLoads) for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterWhenKerasLoads())


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"keras_ls.{name}")
    raise AttributeError(f"module 'keras_ls' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
