"""Synthetic label noise, to measure how label smoothing copes with it (numpy only)."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from keras_ls.smoothing import validate_factor

__all__ = ["NOISE_MODES", "flip_labels"]

NOISE_MODES = ("symmetric", "pair")


def flip_labels(
    y: Any,
    rate: float,
    num_classes: int,
    *,
    mode: str = "symmetric",
    seed: int | np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Corrupt integer labels: each one is flipped independently with probability ``rate``.

    Modes:

    - ``"symmetric"``: a flipped label becomes a class drawn uniformly among
      the ``num_classes - 1`` *other* classes.
    - ``"pair"``: a flipped label ``c`` becomes ``(c + 1) % num_classes``
      (the "pair flipping" asymmetric noise of Han et al., 2018, *Co-teaching*).

    ``rate`` is the probability that a label is flipped, so the true-label
    probability after corruption is ``1 - rate`` in both modes. The input is
    never modified.

    Args:
        y: Integer class labels of any shape (integer-valued floats are
            accepted), each in ``[0, num_classes)``.
        rate: Flip probability in [0, 1].
        num_classes: Number of classes, ``>= 2``.
        mode: ``"symmetric"`` or ``"pair"``.
        seed: Seed (or a ``numpy.random.Generator``) for reproducibility;
            the same seed always gives the same result.

    Returns:
        ``(noisy_labels, flipped_mask)``: an int64 array and a bool array,
        both of the shape of ``y``; ``noisy_labels != y`` exactly where
        ``flipped_mask`` is True.

    Example:

    >>> noisy, flipped = flip_labels([0, 1, 2, 3], rate=1.0, num_classes=4, mode="pair")
    >>> noisy.tolist(), flipped.tolist()
    ([1, 2, 3, 0], [True, True, True, True])
    """
    rate = validate_factor(rate, "rate")  # same check as a smoothing factor
    if isinstance(num_classes, (bool, np.bool_)) or not isinstance(
        num_classes, (numbers.Integral, np.integer)
    ):
        raise TypeError(f"`num_classes` must be an integer >= 2; received {num_classes!r}.")
    num_classes = int(num_classes)
    if num_classes < 2:
        raise ValueError(f"`num_classes` must be an integer >= 2; received {num_classes}.")
    if mode not in NOISE_MODES:
        raise ValueError(f"`mode` must be one of {NOISE_MODES}; received {mode!r}.")

    labels = np.asarray(y)
    if labels.dtype.kind not in "iuf" and labels.size:
        raise TypeError(f"`y` must hold integer labels; received dtype {labels.dtype}.")
    if labels.dtype.kind == "f" and (
        not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels))
    ):
        raise ValueError("`y` must hold integer labels; received non-integer values.")
    labels = labels.astype(np.int64)  # a copy: the caller's array is never touched
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"`y` labels must be in [0, {num_classes}); received values in "
            f"[{labels.min()}, {labels.max()}]."
        )

    rng = np.random.default_rng(seed)
    # Both draws happen in every mode, so a seed picks the same flipped samples
    # whatever the mode.
    flipped = rng.random(labels.shape) < rate
    # An offset in [1, K-1] added mod K is uniform over the K-1 other classes.
    offsets = rng.integers(1, num_classes, size=labels.shape)
    if mode == "pair":
        offsets = np.ones_like(offsets)
    noisy = np.where(flipped, (labels + offsets) % num_classes, labels)
    return noisy.astype(np.int64), flipped
