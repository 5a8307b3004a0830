"""Label smoothing for Ultralytics YOLO class targets (detection and classification).

Quick start::

    import detection
    detection.offline()                      # optional: never touch the network
    from ultralytics import YOLO
    from detection import SmoothedDetectionTrainer

    YOLO("yolo11n.yaml").train(data="data.yaml", trainer=SmoothedDetectionTrainer,
                               label_smoothing=0.1, label_smoothing_schedule="cosine",
                               label_smoothing_final=0.0, epochs=3, imgsz=320, device="cpu")

CLI: ``python -m detection train key=value ...`` and ``python -m detection subset ...``.
Set ``KERAS_LS_OFFLINE=1`` to call :func:`offline` on ``import detection``.

Heavy names are imported lazily: ``import detection`` loads neither Ultralytics
(so :func:`offline` can run before it) nor TensorFlow/Keras (never, on this path).
"""

from __future__ import annotations

import importlib
import os
from typing import Any

_LAZY = {
    "SmoothedDetectionTrainer": "detection.trainer",
    "SmoothedClassificationTrainer": "detection.trainer",
    "SmoothedSegmentationTrainer": "detection.trainer",
    "SmoothedPoseTrainer": "detection.trainer",
    "SmoothedOBBTrainer": "detection.trainer",
    "offline": "detection.offline",
    "is_offline": "detection.offline",
    "resolve_model": "detection.offline",
    "make_subset": "detection.data",
    "check_detection_data": "detection.data",
    "SmoothingConfig": "detection.config",
    "smooth_class_targets": "detection.targets",
    "patch_detection_criterion": "detection.targets",
    "SmoothedBCEWithLogits": "detection.targets",
    "SmoothedClassificationLoss": "detection.targets",
    "MODES": "detection.targets",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'detection' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if os.environ.get("KERAS_LS_OFFLINE", "").strip().lower() in ("1", "true", "yes"):
    importlib.import_module("detection.offline").offline()
