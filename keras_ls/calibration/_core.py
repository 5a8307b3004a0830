"""The functional core: read predictions, bin them, sum per bin, reduce (numpy, float64)."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from keras_ls.calibration._checks import (
    BINARY,
    MULTI_LABEL,
    TOP_LABEL,
    check_binary_targets,
    check_binning,
    check_bool,
    check_labels,
    check_prediction,
    check_probabilities,
    check_sample_weight,
    reading_for,
    validate_num_bins,
)
from keras_ls.calibration._formulas import (
    MEASURES,
    ArrayNamespace,
    column_ids,
    read_outputs,
    scatter_inputs,
    sums_per_bin,
    uniform_bin_ids,
    uniform_edge_tables,
)


class CalibrationBins(NamedTuple):
    """Per-bin accumulators, float64 arrays of shape ``(num_bins,)``.

    For a multi-label output and for the classwise measure there is one row of
    bins per label / class: shape ``(num_columns, num_bins)``.

    ``counts`` are the (weighted) numbers of samples per bin,
    ``confidence_sums`` the sums of the binned probabilities and
    ``correct_sums`` the sums of the hits: correct top-label predictions, or
    labels equal to 1 for a sigmoid output (positive class) and for a class
    column of the classwise measure.
    """

    counts: np.ndarray
    confidence_sums: np.ndarray
    correct_sums: np.ndarray

    @property
    def accuracy(self) -> np.ndarray:
        """Accuracy (hit rate) per bin (NaN for empty bins)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.counts > 0, self.correct_sums / self.counts, np.nan)

    @property
    def confidence(self) -> np.ndarray:
        """Mean confidence per bin (NaN for empty bins)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.counts > 0, self.confidence_sums / self.counts, np.nan)


def bin_edges(num_bins: int) -> np.ndarray:
    """The ``num_bins - 1`` interior bin edges ``i / num_bins``, float64.

    A confidence ``c`` goes to bin ``sum(c > edges)``: bin ``i`` is then
    ``(i/M, (i+1)/M]`` and ``c == 0`` lands in bin 0. Callers compare in the
    precision of ``c`` (casting the edges to it), so a float32 ``0.2`` sits
    exactly on the float32 edge ``0.2`` in numpy and in Keras alike.

    Example:

    >>> bin_edges(4).tolist()
    [0.25, 0.5, 0.75]
    """
    num_bins = validate_num_bins(num_bins)
    return np.asarray(uniform_edge_tables(num_bins)[1][:-1], dtype=np.float64)


def softmax(logits: np.ndarray) -> np.ndarray:
    # Subtracting the row max keeps exp() from overflowing.
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def sigmoid(logits: np.ndarray) -> np.ndarray:
    # exp of a non-positive number only: no overflow for large |logits|.
    e = np.exp(-np.abs(logits))
    return np.where(logits >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _top1(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = x.argmax(axis=-1)  # the first maximum wins ties
    return np.take_along_axis(x, pred[:, None], axis=-1)[:, 0], pred


NUMPY = ArrayNamespace(
    np,
    top1=_top1,
    softmax=softmax,
    sigmoid=sigmoid,
    to_int=lambda a: np.asarray(a, dtype=np.intp),
    to_acc=lambda a: np.asarray(a, dtype=np.float64),
    asarray=lambda a, dtype: np.asarray(a, dtype=dtype),
    segment_sum=lambda ids, w, length: np.bincount(ids, weights=w, minlength=length),
)
"""numpy as the ``xp`` of the shared core (_formulas): float64 sums, ``np.bincount``."""


def read_predictions(
    y_true: Any, y_prob: Any, from_logits: bool, multi_label: bool, classwise: bool
) -> tuple[np.ndarray, np.ndarray, str]:
    """Validate and read predictions as binned quantities.

    Returns ``(conf, hits, reading)``: the probabilities to bin, ``(N, C)`` in
    the prediction's float precision; the float64 hits ``(N, C)`` to compare
    them with; and the reading (see :func:`reading_for`).
    """
    arr = check_prediction(y_prob, from_logits)
    n, k = arr.shape
    reading = reading_for(k, multi_label=multi_label, classwise=classwise)
    sigmoid_output = reading in (BINARY, MULTI_LABEL)
    if from_logits:
        arr = arr.astype(np.float64)
    else:
        check_probabilities(arr, distribution=not sigmoid_output)
    if sigmoid_output:
        y = check_binary_targets(y_true, (n, k), reading)
    else:
        y = check_labels(y_true, n, k)
    conf, hits = read_outputs(arr, y, reading, from_logits, NUMPY)
    return conf, np.asarray(hits, dtype=np.float64), reading


def binned_sums(
    conf: np.ndarray,
    hits: np.ndarray,
    weights: np.ndarray,
    num_bins: int,
    binning: str,
) -> tuple[CalibrationBins, np.ndarray]:
    """Per-column bin sums ``(C, M)`` and the bin edges ``(C, M + 1)`` on [0, 1].

    Bin ``i`` of a column holds ``(e_i, e_{i+1}]`` (``e_0 = 0`` included):
    ``index = number of interior edges strictly below the confidence``. Uniform
    edges are ``i / M``; quantile edges are the ``i / M`` quantiles (numpy's
    default linear interpolation) of the column's confidences with positive
    weight, so each bin holds about ``N / M`` samples (fewer when ties straddle
    an edge; bins can then be empty).
    """
    n, c = conf.shape
    if binning == "uniform":
        interior = np.broadcast_to(bin_edges(num_bins), (c, num_bins - 1))
        ids = uniform_bin_ids(conf, num_bins, NUMPY)
    else:
        q = np.arange(1, num_bins) / num_bins
        used = conf[weights > 0]
        interior = (
            np.quantile(used.astype(np.float64), q, axis=0).T.reshape(c, num_bins - 1)
            if used.shape[0] else np.broadcast_to(bin_edges(num_bins), (c, num_bins - 1))
        )
        idx = np.empty(conf.shape, dtype=np.intp)
        for j in range(c):
            edges_j = interior[j].astype(conf.dtype)
            idx[:, j] = np.searchsorted(edges_j, conf[:, j], side="left")
        ids = column_ids(idx, num_bins, NUMPY)
    inputs = scatter_inputs(ids, conf, hits, weights, c * num_bins, NUMPY)
    bins = CalibrationBins(*sums_per_bin(inputs, c, num_bins, NUMPY))
    zeros, ones = np.zeros((c, 1)), np.ones((c, 1))
    return bins, np.concatenate([zeros, interior, ones], axis=1)


def bins_and_edges(
    y_true: Any,
    y_prob: Any,
    num_bins: int,
    from_logits: bool,
    sample_weight: Any,
    multi_label: bool,
    binning: str,
    classwise: bool = False,
) -> tuple[CalibrationBins, np.ndarray, str]:
    """Checked arguments -> (bins, edges, reading); one column is squeezed to ``(M,)``."""
    num_bins = validate_num_bins(num_bins)
    from_logits = check_bool(from_logits, "from_logits")
    multi_label = check_bool(multi_label, "multi_label")
    binning = check_binning(binning)
    conf, hits, reading = read_predictions(y_true, y_prob, from_logits, multi_label, classwise)
    weights = check_sample_weight(sample_weight, conf.shape[0])
    bins, edges = binned_sums(conf, hits, weights, num_bins, binning)
    if reading in (TOP_LABEL, BINARY):
        bins, edges = CalibrationBins(*(v[0] for v in bins)), edges[0]
    return bins, edges, reading


def calibration_bins(
    y_true: Any,
    y_prob: Any,
    num_bins: int = 15,
    from_logits: bool = False,
    *,
    sample_weight: Any = None,
    multi_label: bool = False,
    binning: str = "uniform",
    classwise: bool = False,
) -> CalibrationBins:
    """Per-bin counts, confidence sums and hit sums: the functional core.

    Which probability is binned depends on the output (see the module
    docstring): the top-label confidence ``max_k p_k`` of a softmax output
    ``(N, K)`` (a hit is ``argmax_k p_k == label``, the first maximum winning
    ties, as in ``np.argmax``); ``p`` itself for a sigmoid output ``(N,)`` /
    ``(N, 1)`` (a hit is a label 1); every column of a multi-label output with
    ``multi_label=True``, and every class column ``p[:, k]`` against
    ``y == k`` with ``classwise=True``. Bin ``i`` holds ``(e_i, e_{i+1}]``
    and 0 goes to bin 0 (Guo et al., 2017).

    Args:
        y_true: Labels. Softmax output: sparse integers ``(N,)`` / ``(N, 1)``,
            or one-hot / soft targets ``(N, K)`` (their argmax is used).
            Sigmoid output: 0/1 labels ``(N,)`` / ``(N, 1)``, or ``(N, L)``
            for a multi-label output.
        y_prob: Predicted probabilities ``(N,)``, ``(N, 1)`` or ``(N, K)``;
            logits if ``from_logits=True`` (softmax, or sigmoid for a single
            column and with ``multi_label=True``).
        num_bins: Number of bins ``M >= 1``.
        from_logits: Whether ``y_prob`` holds logits.
        sample_weight: Optional non-negative weights of shape ``(N,)``; counts
            and sums become weighted sums.
        multi_label: Whether the ``L`` columns of ``y_prob`` are independent
            sigmoid outputs (one row of bins per label).
        binning: ``"uniform"`` (equal-width bins on [0, 1]) or ``"quantile"``
            (equal-mass bins: the edges are quantiles of the binned
            probabilities of the samples with positive weight, per column).
        classwise: One row of bins per class of a softmax output.

    Returns:
        A :class:`CalibrationBins` of three float64 arrays of shape ``(M,)``,
        or ``(L, M)`` / ``(K, M)`` with ``multi_label`` / ``classwise``.

    Example:

    >>> b = calibration_bins([0, 1], [[0.9, 0.1], [0.7, 0.3]], num_bins=2)
    >>> b.counts.tolist(), b.correct_sums.tolist()
    ([0.0, 2.0], [0.0, 1.0])
    >>> calibration_bins([1, 0, 1], [0.9, 0.2, 0.6], num_bins=2).counts.tolist()
    [1.0, 2.0]
    """
    return bins_and_edges(
        y_true, y_prob, num_bins, from_logits, sample_weight, multi_label, binning, classwise
    )[0]


def ece_from_bins(bins: CalibrationBins) -> float:
    """ECE from accumulated bins: ``sum_b |correct_b - conf_b| / N`` (0 if empty).

    Bins of shape ``(C, M)`` give the mean over the ``C`` columns.

    Example:

    >>> ece_from_bins(calibration_bins([0, 1], [[0.9, 0.1], [0.8, 0.2]], 10))
    0.45
    """
    return float(MEASURES["ece"](*bins, xp=np))


def mce_from_bins(bins: CalibrationBins) -> float:
    """MCE from accumulated bins: the largest ``|acc_b - conf_b|`` over non-empty bins.

    Bins of shape ``(C, M)`` give the mean over the ``C`` columns.

    Example:

    >>> round(mce_from_bins(calibration_bins([0, 1], [[0.9, 0.1], [0.8, 0.2]], 10)), 6)
    0.8
    """
    return float(MEASURES["mce"](*bins, xp=np))


def _measure(
    measure: str, y_true: Any, y_prob: Any, num_bins: int, from_logits: bool,
    sample_weight: Any, multi_label: bool, binning: str, classwise: bool = False,
) -> float:
    bins = bins_and_edges(
        y_true, y_prob, num_bins, from_logits, sample_weight, multi_label, binning, classwise
    )[0]
    return float(MEASURES[measure](*bins, xp=np))


def expected_calibration_error(
    y_true: Any,
    y_prob: Any,
    num_bins: int = 15,
    from_logits: bool = False,
    *,
    sample_weight: Any = None,
    multi_label: bool = False,
    binning: str = "uniform",
) -> float:
    """Expected calibration error ``sum_b (n_b / N) |acc_b - conf_b|``.

    Top-label ECE of a softmax output ``(N, K)`` (Guo et al., 2017),
    positive-class ECE of a sigmoid output ``(N,)`` / ``(N, 1)`` (the
    convention of scikit-learn's ``calibration_curve`` and torchmetrics'
    ``BinaryCalibrationError``), and with ``multi_label=True`` the mean over
    the labels of their positive-class ECE. ``binning="quantile"`` gives the
    adaptive, equal-mass binning of Nixon et al. (2019). Computed in float64
    from :func:`calibration_bins`; returns a value in [0, 1] (multiply by 100
    for the usual "ECE in %").

    Args:
        y_true: Labels (see :func:`calibration_bins`).
        y_prob: Probabilities ``(N,)``, ``(N, 1)`` or ``(N, K)``, or logits
            with ``from_logits=True``. Rows of a softmax output must sum to 1:
            sigmoid outputs need ``multi_label=True``.
        num_bins: Number of bins ``M >= 1``.
        from_logits: Whether ``y_prob`` holds logits.
        sample_weight: Optional per-sample weights ``(N,)``.
        multi_label: Whether the columns are independent sigmoid outputs.
        binning: ``"uniform"`` or ``"quantile"``.

    Returns:
        The ECE as a Python float.

    Example:

    >>> # 0.9 -> bin (0.8, 0.9], correct; 0.8 -> bin (0.7, 0.8], wrong.
    >>> expected_calibration_error([0, 1], [[0.9, 0.1], [0.8, 0.2]], num_bins=10)
    0.45
    >>> # Sigmoid output: bin p, compare with the frequency of label 1:
    >>> # (0.5, 1]: |1 - (0.9 + 0.8)|; [0, 0.5]: |2 - (0.3 + 0.2)|; over 4 samples.
    >>> round(expected_calibration_error([1, 0, 1, 1], [0.9, 0.8, 0.3, 0.2], num_bins=2), 6)
    0.55
    """
    return _measure(
        "ece", y_true, y_prob, num_bins, from_logits, sample_weight, multi_label, binning
    )


def maximum_calibration_error(
    y_true: Any,
    y_prob: Any,
    num_bins: int = 15,
    from_logits: bool = False,
    *,
    sample_weight: Any = None,
    multi_label: bool = False,
    binning: str = "uniform",
) -> float:
    """Maximum calibration error ``max_{b: n_b > 0} |acc_b - conf_b|`` (Guo et al., 2017).

    Same arguments, readings and bins as :func:`expected_calibration_error`;
    with ``multi_label=True`` the mean over the labels of their MCE.

    Example:

    >>> round(maximum_calibration_error([0, 1], [[0.9, 0.1], [0.8, 0.2]], num_bins=10), 6)
    0.8
    """
    return _measure(
        "mce", y_true, y_prob, num_bins, from_logits, sample_weight, multi_label, binning
    )


def classwise_calibration_error(
    y_true: Any,
    y_prob: Any,
    num_bins: int = 15,
    from_logits: bool = False,
    *,
    sample_weight: Any = None,
    multi_label: bool = False,
    binning: str = "uniform",
) -> float:
    """Classwise ECE (Kull et al., 2019): mean over classes of the ECE of ``p[:, k]`` vs ``y == k``.

    Every class column of a softmax output is binned on its own (so the
    probabilities of the classes that were not predicted count too). A sigmoid
    output ``(N,)`` / ``(N, 1)`` gives its positive-class ECE (the negative
    class ``1 - p`` mirrors it bin for bin), and a multi-label output the mean
    over labels of their positive-class ECE, as
    :func:`expected_calibration_error` with ``multi_label=True``.

    Example:

    >>> # class 0: (|1 - 0.9| + |0 - 0.8|) / 2; class 1: (|0 - 0.1| + |1 - 0.2|) / 2
    >>> round(classwise_calibration_error([0, 1], [[0.9, 0.1], [0.8, 0.2]], num_bins=10), 6)
    0.45
    """
    return _measure(
        "ece", y_true, y_prob, num_bins, from_logits, sample_weight, multi_label, binning,
        classwise=True,
    )
