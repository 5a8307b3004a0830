"""The label-smoothing formula, framework-free.

Everything in keras-ls that smooths a target goes through :func:`mix`::

    smoothed = (1 - a) * target + a * prior

Because cross-entropy is linear in its target, the same line also mixes the
*loss terms* of the sparse path (``log p[y]`` and ``<prior, log p>``) without
ever building a dense target, and the detection adapter mixes foreground
class scores with it. Only ``+``, ``-`` and ``*`` are used, so it works on
Python floats, numpy arrays and TensorFlow, JAX or torch tensors alike.

This module imports numpy only: importing it never loads TensorFlow, Keras or
torch (the YOLO adapter relies on that).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "mix",
    "prior_for_axis",
    "smooth_labels",
    "validate_factor",
    "validate_factor_if_number",
    "validate_prior",
]


def mix(target: Any, prior: Any, label_smoothing: Any) -> Any:
    """Return ``(1 - label_smoothing) * target + label_smoothing * prior``.

    The one smoothing formula. No Python branch on ``label_smoothing`` (it may
    be a traced tensor or a backend variable), so it is safe under
    ``tf.function``, XLA and ``jax.jit``.
    """
    return (1.0 - label_smoothing) * target + label_smoothing * prior


def validate_factor(value: Any, name: str = "label_smoothing") -> float:
    """Check that ``value`` is a finite real number in [0, 1]; return it as float.

    Raises:
        TypeError: if ``value`` is not a real number (bools are refused too).
        ValueError: if it is NaN, infinite, or outside [0, 1].
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (numbers.Real, np.floating, np.integer)
    ):
        # 0-d arrays / tensors (e.g. from a Keras LR schedule) are accepted.
        try:
            arr = np.asarray(value)
        except Exception:  # noqa: BLE001 - anything not array-like is a type error
            arr = None
        if arr is None or arr.shape != () or arr.dtype.kind not in "fiu":
            raise TypeError(
                f"`{name}` must be a real number in [0, 1]; received "
                f"{value!r} of type {type(value).__name__}."
            )
        value = arr.item()
    value = float(value)
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"`{name}` must be a finite number in [0, 1]; received {value!r}.")
    return value


def validate_factor_if_number(value: Any, name: str = "label_smoothing") -> Any:
    """:func:`validate_factor` for a host number; a tensor is returned as it is.

    What the functional losses take: a number from the caller, or a scalar tensor read
    inside a compiled step (a scheduled factor), which cannot be checked there.
    """
    if isinstance(value, (numbers.Real, np.number)):
        return validate_factor(value, name)
    return value


def validate_prior(
    prior: Sequence[float] | np.ndarray | None,
    num_classes: int | None = None,
    name: str = "prior",
    atol: float = 1e-4,
) -> np.ndarray | None:
    """Check a class prior: 1-D, finite, non-negative, summing to 1.

    Returns it as a float64 numpy vector (or ``None`` if ``prior`` is None).
    ``num_classes``, when given, must equal its length.
    """
    if prior is None:
        return None
    try:
        arr = np.asarray(prior, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(
            f"`{name}` must be a 1-D sequence of class probabilities; received {prior!r}."
        ) from e
    if arr.ndim != 1 or arr.size < 1:
        raise ValueError(
            f"`{name}` must be a 1-D vector of length num_classes; received shape {arr.shape}."
        )
    if num_classes is not None and arr.size != num_classes:
        raise ValueError(
            f"`{name}` must have one entry per class ({num_classes}); received length {arr.size}."
        )
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"`{name}` must be finite and non-negative; received {arr.tolist()}.")
    total = float(arr.sum())
    if abs(total - 1.0) > atol:
        raise ValueError(f"`{name}` must sum to 1; received a sum of {total:.6g}.")
    return arr


def prior_for_axis(prior: np.ndarray | None, num_classes: int, ndim: int, axis: int) -> Any:
    """The prior shaped to broadcast along ``axis`` (a float when uniform)."""
    if prior is None:
        return 1.0 / num_classes
    axis = axis % ndim
    return prior.reshape((num_classes,) + (1,) * (ndim - axis - 1))


def smooth_labels(
    y: Any,
    label_smoothing: Any,
    *,
    prior: Sequence[float] | np.ndarray | None = None,
    axis: int = -1,
) -> Any:
    """Smooth dense (one-hot or soft) labels toward ``prior`` along ``axis``.

    ``(1 - a) * y + a * prior``; the prior is uniform ``1/K`` by default, with
    ``K = y.shape[axis]``. Works on numpy arrays and on any framework tensor
    that supports arithmetic with numpy arrays; returns the same kind.

    Example:

    >>> smooth_labels(np.array([[0.0, 1.0, 0.0]]), 0.3)
    array([[0.1, 0.8, 0.1]])
    """
    if isinstance(label_smoothing, (numbers.Real, np.floating, np.integer)):
        validate_factor(label_smoothing)
    shape = tuple(y.shape)
    if not shape:
        raise ValueError("`y` must have a class axis (one-hot or soft labels); received a scalar.")
    num_classes = int(shape[axis])
    prior_arr = validate_prior(prior, num_classes)
    if isinstance(y, (list, tuple)):
        y = np.asarray(y, dtype=np.float64)
    p = prior_for_axis(prior_arr, num_classes, len(shape), axis)
    if isinstance(p, np.ndarray):
        # Match the label dtype so that TF (which refuses mixed float widths)
        # and torch keep their precision.
        p = p.astype(_float_dtype_of(y))
        if type(y).__module__.startswith("torch"):
            # tensor + ndarray goes through numpy's __array_wrap__, which torch 2.14 implements
            # in the form numpy 2 deprecates: hand torch a tensor.
            import torch

            p = torch.as_tensor(p, device=y.device)
    return mix(y, p, label_smoothing)


def _float_dtype_of(y: Any) -> np.dtype:
    dtype = getattr(y, "dtype", None)
    name = getattr(dtype, "name", None) or str(dtype).rsplit(".", 1)[-1]
    try:
        dt = np.dtype(name)
    except TypeError:
        return np.dtype(np.float32)  # e.g. bfloat16 unknown to numpy
    return dt if dt.kind == "f" else np.dtype(np.float64)
