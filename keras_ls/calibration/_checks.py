"""Argument and input checks shared by ``keras_ls.calibration`` and ``keras_ls.metrics``.

numpy only. Every check raises an error that names the argument, says what was
expected and what was received.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

# How an output is read, by the size of its last (class) axis; see reading_for.
TOP_LABEL = "top_label"
BINARY = "binary"
MULTI_LABEL = "multi_label"
CLASSWISE = "classwise"

BINNINGS = ("uniform", "quantile")

# Machine epsilon of the float dtypes a prediction may come in (bfloat16 is not a
# numpy dtype, so np.finfo cannot be asked for it).
_EPS = {"float16": 2.0**-10, "bfloat16": 2.0**-7, "float32": 2.0**-23, "float64": 2.0**-52}


def check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be a bool; received {value!r}.")
    return bool(value)


def validate_num_bins(num_bins: Any) -> int:
    """Check that ``num_bins`` is an integer >= 1; return it as ``int``."""
    if isinstance(num_bins, (bool, np.bool_)) or not isinstance(
        num_bins, (numbers.Integral, np.integer)
    ):
        raise TypeError(
            f"`num_bins` must be an integer >= 1; received {num_bins!r} of type "
            f"{type(num_bins).__name__}."
        )
    if int(num_bins) < 1:
        raise ValueError(f"`num_bins` must be an integer >= 1; received {num_bins!r}.")
    return int(num_bins)


def check_binning(binning: Any) -> str:
    if binning not in BINNINGS:
        raise ValueError(
            f"`binning` must be one of {BINNINGS}; received {binning!r}."
        )
    return str(binning)


def reading_for(num_columns: int, *, multi_label: bool, classwise: bool = False) -> str:
    """The convention an output with ``num_columns`` entries on its last axis gets.

    One column (or none, a ``(N,)`` vector) is a sigmoid output: positive-class
    calibration. Several columns are a softmax over classes (top-label, or per
    class for the classwise measure) unless ``multi_label`` says they are
    independent sigmoids.
    """
    if num_columns == 1:
        return BINARY
    if multi_label:
        return MULTI_LABEL
    return CLASSWISE if classwise else TOP_LABEL


def distribution_tolerance(dtype: Any) -> float:
    """How far from 1 a row of softmax probabilities stored in ``dtype`` may sum.

    Loose on purpose (1e-3 at float32): rounding of a softmax is far below it,
    while independent sigmoid outputs rarely sum to 1 that closely.
    """
    eps = _EPS.get(np.dtype(dtype).name if not isinstance(dtype, str) else dtype, 0.0)
    return max(1e-3, 16.0 * eps)


def as_float_array(x: Any, name: str) -> np.ndarray:
    try:
        arr = np.asarray(x)
    except Exception as e:  # noqa: BLE001 - anything not array-like is a type error
        raise TypeError(f"`{name}` must be array-like; received {type(x).__name__}.") from e
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"`{name}` must be a numeric array; received dtype {arr.dtype}.")
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float64)
    return arr


def check_prediction(y_prob: Any, from_logits: bool, name: str = "y_prob") -> np.ndarray:
    """``y_prob`` as a 2-D float array ``(N, C)``: ``(N,)`` becomes ``(N, 1)``.

    Checks the shape and NaN / inf only; value ranges depend on the reading
    (see :func:`check_probabilities`).
    """
    arr = as_float_array(y_prob, name)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] < 1:
        raise ValueError(
            f"`{name}` must have shape (num_samples,) or (num_samples, num_classes); "
            f"received shape {arr.shape}."
        )
    if np.isnan(arr).any():
        raise ValueError(f"`{name}` contains NaN.")
    if from_logits and not np.isfinite(arr).all():
        raise ValueError(f"`{name}` (logits) must be finite; received inf.")
    return arr


def check_probabilities(probs: np.ndarray, *, distribution: bool, name: str = "y_prob") -> None:
    """Probabilities in [0, 1]; with ``distribution`` (softmax rows) each row sums to 1."""
    if probs.size and (probs.min() < 0.0 or probs.max() > 1.0):
        raise ValueError(
            f"`{name}` must hold probabilities in [0, 1] (pass from_logits=True for "
            f"logits); received values in [{probs.min():.6g}, {probs.max():.6g}]."
        )
    if distribution and probs.size:
        sums = probs.sum(axis=-1, dtype=np.float64)
        worst = int(np.argmax(np.abs(sums - 1.0)))
        if abs(sums[worst] - 1.0) > distribution_tolerance(probs.dtype):
            raise ValueError(
                f"`{name}` of shape {probs.shape} is read as softmax probabilities over "
                f"{probs.shape[1]} classes, so each row must sum to 1; row {worst} sums to "
                f"{sums[worst]:.6g}. For independent sigmoid outputs (multi-label) pass "
                "multi_label=True; for logits pass from_logits=True."
            )


def check_labels(y_true: Any, num_samples: int, num_classes: int) -> np.ndarray:
    """Class labels of a softmax output: int64 ``(N,)``.

    Sparse labels ``(N,)`` / ``(N, 1)`` must be integers in ``[0, num_classes)``;
    one-hot or soft targets ``(N, num_classes)`` give their argmax.
    """
    arr = _check_target_array(y_true, num_samples)
    if _is_sparse(arr, num_classes):
        return _sparse_labels(arr, num_classes)
    return np.argmax(_dense_targets(arr, num_classes), axis=-1).astype(np.int64)


def check_dense_targets(y_true: Any, num_samples: int, num_classes: int) -> np.ndarray:
    """Targets as a float64 ``(N, K)`` matrix: one-hot of sparse labels, dense as given."""
    arr = _check_target_array(y_true, num_samples)
    if not _is_sparse(arr, num_classes):
        return _dense_targets(arr, num_classes).astype(np.float64)
    labels = _sparse_labels(arr, num_classes)
    onehot = np.zeros((num_samples, num_classes), dtype=np.float64)
    onehot[np.arange(num_samples), labels] = 1.0
    return onehot


def is_sparse(true_shape: tuple, pred_rank: int, num_classes: int) -> bool:
    """The one rule of ``keras_ls.calibration`` and ``keras_ls.metrics`` for softmax labels.

    ``y_true`` holds sparse (integer) labels when it has one dimension less than
    ``y_pred`` (rank ``pred_rank``), or the same rank with a last dimension of 1
    while there are several classes; otherwise one-hot / soft targets.
    """
    rank = len(true_shape)
    return rank == pred_rank - 1 or (
        rank == pred_rank and tuple(true_shape[-1:]) == (1,) and num_classes > 1
    )


def _is_sparse(arr: np.ndarray, num_classes: int) -> bool:
    return is_sparse(arr.shape, 2, num_classes)


def _sparse_labels(arr: np.ndarray, num_classes: int) -> np.ndarray:
    labels = arr.reshape(-1)
    if labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
            raise ValueError("`y_true` sparse labels must be integers; received non-integers.")
    labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"`y_true` labels must be in [0, {num_classes}); received values in "
            f"[{labels.min()}, {labels.max()}]."
        )
    return labels


def _dense_targets(arr: np.ndarray, num_classes: int) -> np.ndarray:
    if arr.ndim != 2 or arr.shape[1] != num_classes:
        raise ValueError(
            f"`y_true` must have shape (N,), (N, 1) or (N, {num_classes}) to match "
            f"`y_prob`; received shape {arr.shape}."
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError("`y_true` must be finite.")
    return arr


def check_binary_targets(y_true: Any, shape: tuple[int, int], reading: str) -> np.ndarray:
    """0/1 targets of sigmoid outputs as float64 ``shape`` = ``(N, C)``.

    Binary (``C == 1``): ``(N,)`` or ``(N, 1)``; multi-label: ``(N, C)``.
    """
    arr = _check_target_array(y_true, shape[0])
    n, c = shape
    if c == 1 and arr.ndim == 1:
        arr = arr[:, None]
    if arr.shape != (n, c):
        expected = "(N,) or (N, 1)" if c == 1 else f"(N, {c}), the shape of `y_prob`"
        raise ValueError(
            f"`y_true` of a {reading.replace('_', '-')} output must have shape {expected}; "
            f"received shape {arr.shape}."
        )
    if arr.size and not np.all((arr == 0) | (arr == 1)):
        bad = arr[(arr != 0) & (arr != 1)].reshape(-1)[0].item()
        raise ValueError(
            f"`y_true` of a {reading.replace('_', '-')} (sigmoid) output must hold 0/1 labels; "
            f"received {bad!r}."
        )
    return arr.astype(np.float64)


def check_sample_weight(sample_weight: Any, num_samples: int) -> np.ndarray:
    if sample_weight is None:
        return np.ones(num_samples, dtype=np.float64)
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.ndim == 2 and w.shape[1] == 1:
        w = w.reshape(-1)
    if w.shape != (num_samples,):
        raise ValueError(
            f"`sample_weight` must have shape ({num_samples},); received {w.shape}."
        )
    check_weight_values(w)
    return w


def check_weight_values(w: np.ndarray) -> None:
    """Sample weights must be finite and non-negative (any shape)."""
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("`sample_weight` must be finite and non-negative.")


def _check_target_array(y_true: Any, num_samples: int) -> np.ndarray:
    arr = np.asarray(y_true)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"`y_true` must be a numeric array; received dtype {arr.dtype}.")
    if arr.ndim == 0:
        raise ValueError("`y_true` must have shape (N,), (N, 1) or (N, K); received a scalar.")
    if arr.shape[0] != num_samples:
        raise ValueError(
            f"`y_true` and `y_prob` must have the same number of samples; received "
            f"{arr.shape[0]} and {num_samples}."
        )
    if arr.dtype.kind == "f" and np.isnan(arr).any():
        raise ValueError("`y_true` contains NaN.")
    return arr
