"""keras-ls: label smoothing as a first-class, measured tool for Keras 3.

Public names are imported lazily: ``import keras_ls``, ``keras_ls.smoothing`` and
``keras_ls.schedules`` never load Keras or TensorFlow (the Ultralytics adapter in
``detection/`` relies on it), while ``from keras_ls import SmoothedCE`` loads Keras.

Registration with Keras serialization (so that ``keras.saving.load_model`` rebuilds
keras-ls losses and metrics without ``custom_objects``) happens when the Keras-side modules
(``keras_ls.losses``, ``keras_ls.metrics``, ``keras_ls.callbacks``) are imported: importing
any one of them imports all three. For the one order that imports none of them --
``import keras_ls`` first, ``import keras`` later, then ``load_model`` -- a one-shot import
hook registers them right after Keras has loaded (``keras_ls._compat.RegisterAfterKeras``).
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from keras_ls._compat import RegisterAfterKeras, module_initializing

__version__ = "0.2.0"

_LAZY = {
    "SmoothedCE": "keras_ls.losses",
    "SmoothedBCE": "keras_ls.losses",
    "ConfidencePenaltyCE": "keras_ls.losses",
    "SmoothedDice": "keras_ls.losses",
    "OnlineSmoothedCE": "keras_ls.losses",
    "LinearSmoothedCE": "keras_ls.losses",
    "SmoothingScheduler": "keras_ls.callbacks",
    "OnlineLabelSmoothing": "keras_ls.callbacks",
    "ExpectedCalibrationError": "keras_ls.metrics",
    "MaximumCalibrationError": "keras_ls.metrics",
    "ClasswiseCalibrationError": "keras_ls.metrics",
}
_SUBMODULES = (
    "smoothing",
    "schedules",
    "calibration",
    "noise",
    "datasets",
    "losses",
    "callbacks",
    "metrics",
)

__all__ = sorted(_LAZY) + list(_SUBMODULES)

# The modules that define (and so register) keras-ls classes for Keras serialization.
_KERAS_MODULES = ("keras_ls.losses", "keras_ls.metrics", "keras_ls.callbacks")


def register_serializables() -> None:
    """Import the modules that register keras-ls classes with Keras serialization.

    Needed before ``keras.saving.load_model`` can rebuild a model compiled with a keras-ls
    loss or metric. It runs by itself whenever Keras and ``keras_ls`` are both imported,
    in any order (see the module docstring); calling it again does nothing.
    """
    for module in _KERAS_MODULES:
        importlib.import_module(module)


def _importing_keras_ls() -> bool:
    """True while a ``keras_ls`` module is executing (an import of ours is in progress)."""
    return any(
        (name == "keras_ls" or name.startswith("keras_ls.")) and module_initializing(module)
        for name, module in list(sys.modules.items())
    )


if "keras" in sys.modules:  # never import Keras (and TF) ourselves here
    register_serializables()
else:
    RegisterAfterKeras.install(register_serializables, _importing_keras_ls)


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
