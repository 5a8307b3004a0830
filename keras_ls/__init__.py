"""keras-ls: label smoothing as a first-class, measured tool for Keras 3.

Heavy names (anything touching Keras) are imported lazily, so that
``import keras_ls.smoothing`` / ``keras_ls.schedules`` never loads TensorFlow
-- the Ultralytics adapter in ``detection/`` depends on that.
"""

from __future__ import annotations

import importlib
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
    with a keras-ls loss or metric. ``import keras_ls`` does it by itself when
    Keras is already imported (``import keras, keras_ls``); otherwise call it,
    or import any Keras-side name (``from keras_ls import SmoothedCE``).
    """
    for module in _REGISTERING:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:  # optional module not present
            if e.name != module:
                raise


if "keras" in sys.modules:  # never import Keras (and TF) ourselves here
    register_serializables()


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
