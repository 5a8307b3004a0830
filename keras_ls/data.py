"""Deprecated alias of :mod:`keras_ls.datasets` (the 0.1.0 name of the Fashion-MNIST reader)."""

from __future__ import annotations

import warnings

from keras_ls import datasets as _datasets
from keras_ls.datasets import *  # noqa: F403 - the same public names

__all__ = list(_datasets.__all__)

warnings.warn(
    "`keras_ls.data` is deprecated; import `keras_ls.datasets` instead.",
    DeprecationWarning,
    stacklevel=2,
)
