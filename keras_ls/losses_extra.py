"""Deprecated (0.1): `ConfidencePenaltyCE` and `SmoothedDice` now live in `keras_ls.losses`."""

from __future__ import annotations

import warnings

from keras_ls.losses.confidence_penalty import ConfidencePenaltyCE
from keras_ls.losses.dice import SmoothedDice

__all__ = ["ConfidencePenaltyCE", "SmoothedDice"]

warnings.warn(
    "`keras_ls.losses_extra` is deprecated; import from `keras_ls` or `keras_ls.losses`.",
    DeprecationWarning,
    stacklevel=2,
)
