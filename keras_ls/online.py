"""Deprecated module (0.1): online label smoothing lives in ``keras_ls.losses.online``
(``OnlineSmoothedCE``, ``OnlineSoftTargets``) and ``keras_ls.callbacks``
(``OnlineLabelSmoothing``)."""

from __future__ import annotations

import warnings

from keras_ls.callbacks import OnlineLabelSmoothing
from keras_ls.losses.online import (
    MAX_CLASSES,
    OnlineSmoothedCE,
    OnlineSoftTargets,
    initial_soft_targets,
)

__all__ = [
    "MAX_CLASSES",
    "OnlineLabelSmoothing",
    "OnlineSmoothedCE",
    "OnlineSoftTargets",
    "initial_soft_targets",
]

warnings.warn(
    "`keras_ls.online` is deprecated; import from `keras_ls`, `keras_ls.losses` or "
    "`keras_ls.callbacks`.",
    DeprecationWarning,
    stacklevel=2,
)
