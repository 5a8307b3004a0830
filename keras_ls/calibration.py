"""Calibration measures for classifiers, in numpy (plus a matplotlib plot).

The functional core is :func:`calibration_bins`: it sorts the top-label
confidence of every sample into ``num_bins`` equal-width bins on [0, 1] and
returns, per bin, the (weighted) sample count, the sum of confidences and the
number of correct predictions. :func:`expected_calibration_error` and
:func:`reliability_diagram` are computed from it, and the streaming Keras
metric :class:`keras_ls.ExpectedCalibrationError` accumulates exactly the same
three vectors and bins with the same rule (:func:`bin_edges` +
"index = number of interior edges strictly below the confidence").

Binning follows Guo et al. (2017), *On Calibration of Modern Neural
Networks*: bin ``i`` (0-based) holds confidences in ``(i/M, (i+1)/M]``; a
confidence of exactly 0 goes to bin 0.

This module imports numpy only (matplotlib is imported inside
:func:`reliability_diagram`): importing it never loads TensorFlow or Keras.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "CalibrationBins",
    "bin_edges",
    "brier_score",
    "calibration_bins",
    "expected_calibration_error",
    "fit_temperature",
    "nll",
    "reliability_diagram",
]


class CalibrationBins(NamedTuple):
    """Per-bin accumulators, float64 vectors of shape ``(num_bins,)``."""

    counts: np.ndarray
    confidence_sums: np.ndarray
    correct_sums: np.ndarray

    @property
    def accuracy(self) -> np.ndarray:
        """Accuracy per bin (NaN for empty bins)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.counts > 0, self.correct_sums / self.counts, np.nan)

    @property
    def confidence(self) -> np.ndarray:
        """Mean confidence per bin (NaN for empty bins)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.counts > 0, self.confidence_sums / self.counts, np.nan)


# --------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------


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


def bin_edges(num_bins: int) -> np.ndarray:
    """The ``num_bins - 1`` interior bin edges ``i / num_bins``, float64.

    A confidence ``c`` goes to bin ``sum(c > edges)``: bin ``i`` is then
    ``(i/M, (i+1)/M]`` and ``c == 0`` lands in bin 0. Callers compare in the
    precision of ``c`` (casting the edges to it), so a float32 ``0.2`` sits
    exactly on the float32 edge ``0.2`` in numpy and in Keras alike.
    """
    num_bins = validate_num_bins(num_bins)
    return np.arange(1, num_bins, dtype=np.float64) / num_bins


def _as_float_array(x: Any, name: str) -> np.ndarray:
    try:
        arr = np.asarray(x)
    except Exception as e:  # noqa: BLE001 - anything not array-like is a type error
        raise TypeError(f"`{name}` must be array-like; received {type(x).__name__}.") from e
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"`{name}` must be a numeric array; received dtype {arr.dtype}.")
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float64)
    return arr


def _check_probs(y_prob: Any, from_logits: bool, name: str = "y_prob") -> np.ndarray:
    """Validate ``y_prob`` (N, K); return probabilities in the input float dtype."""
    arr = _as_float_array(y_prob, name)
    if arr.ndim != 2:
        raise ValueError(
            f"`{name}` must be 2-D with shape (num_samples, num_classes); received "
            f"shape {arr.shape}."
        )
    if arr.shape[1] < 1:
        raise ValueError(f"`{name}` must have at least one class column; received {arr.shape}.")
    if np.isnan(arr).any():
        raise ValueError(f"`{name}` contains NaN.")
    if from_logits:
        if not np.isfinite(arr).all():
            raise ValueError(f"`{name}` (logits) must be finite; received inf.")
        return _softmax(arr.astype(np.float64))
    if arr.size and (arr.min() < 0.0 or arr.max() > 1.0):
        raise ValueError(
            f"`{name}` must hold probabilities in [0, 1] (pass from_logits=True for "
            f"logits); received values in [{arr.min():.6g}, {arr.max():.6g}]."
        )
    return arr


def _softmax(logits: np.ndarray) -> np.ndarray:
    # Subtracting the row max keeps exp() from overflowing.
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _check_targets(
    y_true: Any, num_samples: int, num_classes: int, *, dense: bool = False
) -> np.ndarray:
    """Validate ``y_true``.

    Returns int64 labels ``(N,)``, or with ``dense=True`` a float64 target
    matrix ``(N, K)`` (one-hot built from sparse labels; dense targets as given).
    """
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
    is_sparse = arr.ndim == 1 or (arr.ndim == 2 and arr.shape[1] == 1 and num_classes > 1)
    if is_sparse:
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
        if dense:
            onehot = np.zeros((num_samples, num_classes), dtype=np.float64)
            onehot[np.arange(num_samples), labels] = 1.0
            return onehot
        return labels
    if arr.ndim != 2 or arr.shape[1] != num_classes:
        raise ValueError(
            f"`y_true` must have shape (N,), (N, 1) or (N, {num_classes}) to match "
            f"`y_prob`; received shape {arr.shape}."
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError("`y_true` must be finite.")
    if dense:
        return arr.astype(np.float64)
    return np.argmax(arr, axis=-1).astype(np.int64)


def _check_sample_weight(sample_weight: Any, num_samples: int) -> np.ndarray:
    if sample_weight is None:
        return np.ones(num_samples, dtype=np.float64)
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.ndim == 2 and w.shape[1] == 1:
        w = w.reshape(-1)
    if w.shape != (num_samples,):
        raise ValueError(f"`sample_weight` must have shape ({num_samples},); received {w.shape}.")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("`sample_weight` must be finite and non-negative.")
    return w


def _check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be a bool; received {value!r}.")
    return bool(value)


# --------------------------------------------------------------------------
# Functional core
# --------------------------------------------------------------------------


def calibration_bins(
    y_true: Any,
    y_prob: Any,
    num_bins: int = 15,
    from_logits: bool = False,
    *,
    sample_weight: Any = None,
) -> CalibrationBins:
    """Per-bin counts, confidence sums and correct sums of the top-label confidence.

    Confidence is ``max_k p_k``; a prediction is correct when ``argmax_k p_k``
    equals the label (the first maximum wins ties, as in ``np.argmax``). Bins
    are equal-width on [0, 1]: bin ``i`` holds ``(i/M, (i+1)/M]``, and 0 goes
    to bin 0 (Guo et al., 2017).

    Args:
        y_true: Labels: sparse integers of shape ``(N,)`` or ``(N, 1)``, or
            one-hot / soft targets of shape ``(N, K)`` (their argmax is used).
        y_prob: Predicted probabilities, shape ``(N, K)``; logits if
            ``from_logits=True`` (a numerically stable softmax is applied).
        num_bins: Number of equal-width confidence bins ``M >= 1``.
        from_logits: Whether ``y_prob`` holds logits.
        sample_weight: Optional non-negative weights of shape ``(N,)``; counts
            and sums become weighted sums.

    Returns:
        A :class:`CalibrationBins` of three float64 vectors of shape ``(M,)``.

    Example:

    >>> b = calibration_bins([0, 1], [[0.9, 0.1], [0.7, 0.3]], num_bins=2)
    >>> b.counts.tolist(), b.correct_sums.tolist()
    ([0.0, 2.0], [0.0, 1.0])
    """
    num_bins = validate_num_bins(num_bins)
    from_logits = _check_bool(from_logits, "from_logits")
    probs = _check_probs(y_prob, from_logits)
    n, k = probs.shape
    labels = _check_targets(y_true, n, k)
    weights = _check_sample_weight(sample_weight, n)

    conf = probs.max(axis=-1)
    pred = probs.argmax(axis=-1)
    # Compare in the confidence's own precision (see bin_edges).
    edges = bin_edges(num_bins).astype(conf.dtype)
    idx = np.sum(conf[:, None] > edges[None, :], axis=1)

    conf64 = conf.astype(np.float64)
    correct = (pred == labels).astype(np.float64)
    counts = np.bincount(idx, weights=weights, minlength=num_bins)
    conf_sums = np.bincount(idx, weights=weights * conf64, minlength=num_bins)
    correct_sums = np.bincount(idx, weights=weights * correct, minlength=num_bins)
    return CalibrationBins(
        counts.astype(np.float64), conf_sums.astype(np.float64), correct_sums.astype(np.float64)
    )


def ece_from_bins(bins: CalibrationBins) -> float:
    """ECE from accumulated bins: ``sum_b |correct_b - conf_b| / N`` (0 if empty)."""
    total = float(np.sum(bins.counts))
    if total <= 0.0:
        return 0.0
    # (n_b/N) |acc_b - conf_b| == |correct_sum_b - conf_sum_b| / N, no 0/0 for empty bins.
    return float(np.sum(np.abs(bins.correct_sums - bins.confidence_sums)) / total)


def expected_calibration_error(
    y_true: Any,
    y_prob: Any,
    num_bins: int = 15,
    from_logits: bool = False,
    *,
    sample_weight: Any = None,
) -> float:
    """Expected calibration error ``sum_b (n_b / N) |acc_b - conf_b|``.

    Top-label ECE with ``num_bins`` equal-width bins (Guo et al., 2017),
    computed in float64 from :func:`calibration_bins`. Returns a value in
    [0, 1] (multiply by 100 for the usual "ECE in %").

    Args:
        y_true: Sparse labels ``(N,)`` / ``(N, 1)`` or one-hot/soft ``(N, K)``.
        y_prob: Probabilities ``(N, K)``, or logits with ``from_logits=True``.
        num_bins: Number of bins ``M >= 1``.
        from_logits: Whether ``y_prob`` holds logits.
        sample_weight: Optional per-sample weights ``(N,)``.

    Example:

    >>> # 0.9 -> bin (0.8, 0.9], correct; 0.8 -> bin (0.7, 0.8], wrong.
    >>> expected_calibration_error([0, 1], [[0.9, 0.1], [0.8, 0.2]], num_bins=10)
    0.45
    """
    bins = calibration_bins(y_true, y_prob, num_bins, from_logits, sample_weight=sample_weight)
    return ece_from_bins(bins)


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
    from_logits = _check_bool(from_logits, "from_logits")
    if from_logits:
        logits = _as_float_array(y_prob, "y_prob")
        if logits.ndim != 2:
            raise ValueError(
                f"`y_prob` must be 2-D with shape (num_samples, num_classes); received "
                f"shape {logits.shape}."
            )
        if not np.all(np.isfinite(logits)):
            raise ValueError("`y_prob` (logits) must be finite (no NaN or inf).")
        log_p = _log_softmax(logits.astype(np.float64))
    else:
        probs = _check_probs(y_prob, from_logits=False).astype(np.float64)
        log_p = np.log(np.clip(probs, eps, 1.0))
    n, k = log_p.shape
    targets = _check_targets(y_true, n, k, dense=True)
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
    from_logits = _check_bool(from_logits, "from_logits")
    probs = _check_probs(y_prob, from_logits).astype(np.float64)
    n, k = probs.shape
    targets = _check_targets(y_true, n, k, dense=True)
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
    z = _as_float_array(logits, "logits").astype(np.float64)
    if z.ndim != 2:
        raise ValueError(
            f"`logits` must be 2-D with shape (num_samples, num_classes); received shape {z.shape}."
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
    targets = _check_targets(y_true, z.shape[0], z.shape[1], dense=True)

    def objective(log_t: float) -> float:
        log_p = _log_softmax(z / math.exp(log_t))
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


# --------------------------------------------------------------------------
# Plot
# --------------------------------------------------------------------------


def reliability_diagram(
    y_true: Any,
    y_prob: Any,
    num_bins: int = 15,
    ax: Any = None,
    from_logits: bool = False,
    title: str | None = None,
    *,
    show_histogram: bool = True,
) -> Any:
    """Reliability diagram: accuracy per confidence bin against the diagonal.

    Draws one bar per non-empty bin at height ``acc_b``, shades the gap
    between ``acc_b`` and the bin's mean confidence ``conf_b`` in red, draws
    the diagonal of perfect calibration and puts ``ECE = x.xx%`` in the title.
    With ``show_histogram=True`` the share of samples per bin is drawn as a
    light step line on a secondary axis. Uses the object-oriented
    ``matplotlib.figure.Figure`` API, so it works headless (no pyplot state).

    Args:
        y_true: Sparse labels ``(N,)`` / ``(N, 1)`` or one-hot/soft ``(N, K)``.
        y_prob: Probabilities ``(N, K)``, or logits with ``from_logits=True``.
        num_bins: Number of bins ``M >= 1``.
        ax: Optional matplotlib ``Axes`` to draw into; otherwise a new
            ``Figure`` is created.
        from_logits: Whether ``y_prob`` holds logits.
        title: Optional title line put above the ECE line.
        show_histogram: Whether to draw the per-bin sample share.

    Returns:
        The ``matplotlib.figure.Figure`` holding the plot (``ax.figure`` when
        ``ax`` is given); call ``fig.savefig("reliability.png")`` to save it.

    Example:

    >>> fig = reliability_diagram(y_val, probs, title="LS 0.1")  # doctest: +SKIP
    >>> fig.savefig("reliability.png")                            # doctest: +SKIP
    """
    from matplotlib.figure import Figure

    bins = calibration_bins(y_true, y_prob, num_bins, from_logits)
    ece = ece_from_bins(bins)
    num_bins = len(bins.counts)
    if ax is None:
        fig = Figure(figsize=(4.5, 4.5), layout="constrained")
        ax = fig.add_subplot()
    else:
        fig = ax.figure

    width = 1.0 / num_bins
    centers = (np.arange(num_bins) + 0.5) * width
    filled = bins.counts > 0
    acc = bins.accuracy[filled]
    conf = bins.confidence[filled]
    x = centers[filled]
    ax.bar(
        x,
        acc,
        width=width,
        color="#4c72b0",
        edgecolor="black",
        linewidth=0.6,
        label="Accuracy",
        zorder=2,
    )
    ax.bar(
        x,
        conf - acc,
        bottom=acc,
        width=width,
        color="#dd4444",
        alpha=0.35,
        edgecolor="#aa0000",
        linewidth=0.6,
        hatch="//",
        label="Gap",
        zorder=3,
    )
    ax.plot(
        [0, 1],
        [0, 1],
        linestyle="--",
        color="gray",
        linewidth=1.0,
        label="Perfect calibration",
        zorder=4,
    )
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("Confidence")
    ax.set_ylabel("Accuracy")
    if show_histogram:
        total = bins.counts.sum()
        share = bins.counts / total if total > 0 else bins.counts
        ax2 = ax.twinx()
        ax2.step(
            np.r_[0.0, centers + width / 2],
            np.r_[share[0], share],
            where="pre",
            color="#55a868",
            linewidth=1.0,
            alpha=0.8,
        )
        ax2.set_ylim(0.0, 1.0)
        ax2.set_ylabel("Share of samples", color="#55a868")
        ax2.tick_params(axis="y", colors="#55a868")
    ax.legend(loc="upper left", fontsize="small")
    ece_line = f"ECE = {100.0 * ece:.2f}%"
    ax.set_title(f"{title}\n{ece_line}" if title else ece_line)
    return fig
