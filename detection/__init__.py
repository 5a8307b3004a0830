"""Label smoothing for Ultralytics YOLO class targets (detection and classification).

Quick start::

    import detection
    detection.offline()                      # optional: never touch the network
    from ultralytics import YOLO
    from detection import SmoothedDetectionTrainer

    YOLO("yolo11n.yaml").train(data="data.yaml", trainer=SmoothedDetectionTrainer,
                               label_smoothing=0.1, label_smoothing_schedule="cosine",
                               label_smoothing_final=0.0, epochs=3, imgsz=320, device="cpu")

CLI: ``python -m detection train key=value ...`` and ``python -m detection subset ...``
(``--help`` on each). Set ``KERAS_LS_OFFLINE=1`` to call :func:`offline` on
``import detection``.

Exported: the five trainers; :func:`offline`; :func:`make_subset`;
:class:`SmoothingConfig` (the four keys, validated, and the factor per epoch);
:func:`patch_detection_criterion` and :func:`smooth_class_targets` for custom
training loops. Helpers live in their modules (``detection.data``,
``detection.network``, ``detection.targets``, ``detection.config``). No exported
name is also a submodule's name (``detection.offline`` is the function, defined in
``detection.network``), so no import order can make one shadow the other.

Names are imported lazily: ``import detection`` loads neither Ultralytics (so
:func:`offline` can run before it) nor torch, and never TensorFlow/Keras.
Without the ``detection`` extra, a name that needs it raises an ``ImportError``
that says ``pip install "keras-ls[detection]"``.
"""

from __future__ import annotations

import os
from typing import Any

from detection._extra import import_extra

_LAZY = {
    "SmoothedDetectionTrainer": "detection.trainer",
    "SmoothedSegmentationTrainer": "detection.trainer",
    "SmoothedPoseTrainer": "detection.trainer",
    "SmoothedOBBTrainer": "detection.trainer",
    "SmoothedClassificationTrainer": "detection.trainer",
    "offline": "detection.network",
    "make_subset": "detection.data",
    "SmoothingConfig": "detection.config",
    "patch_detection_criterion": "detection.targets",
    "smooth_class_targets": "detection.targets",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_extra(_LAZY[name], f"detection.{name}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'detection' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if os.environ.get("KERAS_LS_OFFLINE", "").strip().lower() in ("1", "true", "yes"):
    __getattr__("offline")()
