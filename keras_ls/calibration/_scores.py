"""Proper scores and temperature scaling (numpy, float64)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from keras_ls.calibration._checks import (
    as_float_array,
    check_bool,
    check_dense_targets,
    check_prediction,
    check_probabilities,
)
from keras_ls.calibration._core import log_softmax, softmax


def _probabilities(y_prob: Any, from_logits: bool) -> np.ndarray:
    """``(N, K)`` probabilities (softmax of logits), values in [0, 1]."""
    arr = as_float_array(y_prob, "y_prob")
    if arr.ndim != 2:
        raise ValueError(
            f"`y_prob` must be 2-D with shape (num_samples, num_classes); received "
            f"shape {arr.shape}."
        )
    arr = check_prediction(arr, from_logits)
    if from_logits:
        return softmax(arr.astype(np.float64))
    check_probabilities(arr, distribution=False)  # soft rows allowed, as before
    return arr


def nll(y_true: Any, y_prob: Any, from_logits: bool = False, eps: float = 1e-12) -> float:
    """Mean negative log-likelihood (cross-entropy), float64.

    ``mean_n( -sum_k t_nk log p_nk )`` with ``t`` the one-hot of sparse labels
    (or dense targets as given). Probabilities are clipped to ``[eps, 1]``
    so that a confident mistake costs ``-log(eps)`` instead of ``inf``; with
    ``from_logits=True`` an exact log-softmax is used and nothing is clipped.

    Example:

    >>> round(nll([0], [[0.5, 0.5]]), 6)
    0.693147
    """
    from_logits = check_bool(from_logits, "from_logits")
    if from_logits:
        logits = as_float_array(y_prob, "y_prob")
        if logits.ndim != 2:
            raise ValueError(
                f"`y_prob` must be 2-D with shape (num_samples, num_classes); received "
                f"shape {logits.shape}."
            )
        if not np.all(np.isfinite(logits)):
            raise ValueError("`y_prob` (logits) must be finite (no NaN or inf).")
        log_p = log_softmax(logits.astype(np.float64))
    else:
        probs = _probabilities(y_prob, from_logits=False).astype(np.float64)
        log_p = np.log(np.clip(probs, eps, 1.0))
    n, k = log_p.shape
    targets = check_dense_targets(y_true, n, k)
    if n == 0:
        raise ValueError("`y_prob` must hold at least one sample; received 0.")
    return float(-np.mean(np.sum(targets * log_p, axis=-1)))


def brier_score(y_true: Any, y_prob: Any, from_logits: bool = False) -> float:
    """Multi-class Brier score ``mean_n sum_k (p_nk - t_nk)^2``, float64.

    ``t`` is the one-hot of sparse labels (dense targets are used as given).
    Ranges over [0, 2].

    Example:

    >>> round(brier_score([0], [[0.75, 0.25]]), 6)
    0.125
    """
    from_logits = check_bool(from_logits, "from_logits")
    probs = _probabilities(y_prob, from_logits).astype(np.float64)
    n, k = probs.shape
    targets = check_dense_targets(y_true, n, k)
    if n == 0:
        raise ValueError("`y_prob` must hold at least one sample; received 0.")
    return float(np.mean(np.sum((probs - targets) ** 2, axis=-1)))


def fit_temperature(
    logits: Any,
    y_true: Any,
    *,
    bounds: tuple[float, float] = (0.01, 100.0),
    tol: float = 1e-7,
) -> float:
    """Temperature scaling (Guo et al., 2017): the ``T > 0`` minimising NLL.

    Minimises ``nll(y_true, logits / T, from_logits=True)`` over
    ``log T`` in ``log(bounds)`` by golden-section search. NLL is convex in
    ``1/T`` (log-sum-exp minus a linear term), so it is unimodal in ``log T``
    and the search finds the global minimum within the bounds. numpy only.

    Args:
        logits: Validation-set logits, shape ``(N, K)``.
        y_true: Labels ``(N,)`` / ``(N, 1)`` or one-hot ``(N, K)``.
        bounds: Search interval ``(T_min, T_max)``, ``0 < T_min < T_max``.
        tol: Stop when the ``log T`` bracket is narrower than this.

    Returns:
        The fitted temperature; calibrated probabilities are
        ``softmax(logits / T)``.

    Example:

    >>> logits = np.array([[4.0, 0.0], [4.0, 0.0], [0.0, 4.0], [4.0, 0.0]])
    >>> T = fit_temperature(logits, [0, 1, 1, 0])   # one confident mistake
    >>> T > 1.0
    True
    """
    z = as_float_array(logits, "logits").astype(np.float64)
    if z.ndim != 2:
        raise ValueError(
            f"`logits` must be 2-D with shape (num_samples, num_classes); received "
            f"shape {z.shape}."
        )
    if z.shape[0] == 0:
        raise ValueError("`logits` must hold at least one sample; received 0.")
    if not np.all(np.isfinite(z)):
        raise ValueError("`logits` must be finite (no NaN or inf).")
    try:
        lo_t, hi_t = (float(b) for b in bounds)
    except (TypeError, ValueError) as e:
        raise TypeError(f"`bounds` must be a pair of floats; received {bounds!r}.") from e
    if not (0.0 < lo_t < hi_t and math.isfinite(hi_t)):
        raise ValueError(f"`bounds` must satisfy 0 < T_min < T_max < inf; received {bounds!r}.")
    targets = check_dense_targets(y_true, z.shape[0], z.shape[1])

    def objective(log_t: float) -> float:
        log_p = log_softmax(z / math.exp(log_t))
        return float(-np.mean(np.sum(targets * log_p, axis=-1)))

    a, b = math.log(lo_t), math.log(hi_t)
    inv_phi = (math.sqrt(5.0) - 1.0) / 2.0
    c, d = b - inv_phi * (b - a), a + inv_phi * (b - a)
    fc, fd = objective(c), objective(d)
    while b - a > tol:
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - inv_phi * (b - a)
            fc = objective(c)
        else:
            a, c, fc = c, d, fd
            d = a + inv_phi * (b - a)
            fd = objective(d)
    # A flat objective (e.g. all-equal logits) leaves the bracket anywhere; the
    # end points are also candidates when the minimum sits on a bound.
    candidates = [(objective(x), x) for x in (math.log(lo_t), (a + b) / 2.0, math.log(hi_t))]
    best = min(candidates, key=lambda t: t[0])
    return float(math.exp(best[1]))
