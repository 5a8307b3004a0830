"""Deprecated alias of :mod:`keras_ls.datasets` (the 0.1.0 name of the Fashion-MNIST reader)."""

from __future__ import annotations

import warnings

from keras_ls.datasets import (  # noqa: F401 - re-exported names
    DEBIAN_DIR,
    ENV_VAR,
    FASHION_MNIST_CLASSES,
    find_fashion_mnist,
    load_fashion_mnist,
    read_idx,
)

__all__ = [
    "DEBIAN_DIR",
    "ENV_VAR",
    "FASHION_MNIST_CLASSES",
    "find_fashion_mnist",
    "load_fashion_mnist",
    "read_idx",
]

warnings.warn(
    "`keras_ls.data` is deprecated; import `keras_ls.datasets` instead.",
    DeprecationWarning,
    stacklevel=2,
)
