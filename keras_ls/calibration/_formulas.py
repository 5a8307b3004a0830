"""The one calibration core: readings, binning rule, per-bin sums and measures.

Written against an array namespace ``xp`` -- numpy for ``keras_ls.calibration``
and ``keras.ops`` for the streaming metrics in ``keras_ls.metrics`` -- so that
both read predictions, bin them, sum per bin and compute every measure with
the same code. An ``xp`` is an :class:`ArrayNamespace`: the array module
(functions both spell alike: ``ceil``, ``clip``, ``take``, ``reshape``, ``sum``,
``exp``, ``abs``, ``where``, ``amax``, ``mean``, ``equal``, ``arange``,
``expand_dims``, ``broadcast_to``, ``shape``) plus the few they spell differently or that
depend on where the code runs (``top1``, ``softmax``, ``sigmoid``, ``to_int``,
``to_acc``, ``asarray``, ``segment_sum``). Nothing here imports numpy or Keras.
(``amax``, not ``max``: Keras' torch ``max`` breaks a ``torch.compile`` graph.)

Per-bin sums are accumulated in ``to_acc``'s dtype: float64 for numpy, and
float64 for the metrics wherever the backend has it (see
``docs/calibration-metrics.md``).

Inputs of the measures are the per-bin (weighted) sample counts, confidence
sums and hit sums (a hit is a correct top-label prediction, or a label 1 for a
sigmoid output), of shape ``(M,)`` for one reading or ``(C, M)`` for ``C``
columns (labels of a multi-label output, classes of the classwise measure). A
measure is computed per column and averaged over the columns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# How an output is read (see _checks.reading_for); repeated here, not imported,
# so that this module stays free of numpy.
_SIGMOID_READINGS = ("binary", "multi_label")


class ArrayNamespace:
    """An array module (``numpy``, ``keras.ops``) plus the functions named in the module doc."""

    def __init__(self, module: Any, **extra: Callable[..., Any]) -> None:
        self._module = module
        self.__dict__.update(extra)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)


def uniform_edge_tables(num_bins: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Lower and upper edge of each of ``num_bins`` equal-width bins, as Python floats.

    Bin ``i`` is ``(lower[i], upper[i]]`` with ``lower = (-inf, 1/M, ..., (M-1)/M)``
    and ``upper = (1/M, ..., (M-1)/M, inf)``: the interior edges ``i / M`` of
    ``bin_edges``, open-ended so that 0 (and anything below) falls in bin 0.
    """
    interior = [i / num_bins for i in range(1, num_bins)]
    return (float("-inf"), *interior), (*interior, float("inf"))


def uniform_bin_index(
    conf: Any, num_bins: int, lower: Any, upper: Any, xp: Any, to_int: Callable[[Any], Any]
) -> Any:
    """Bin of each confidence: the number of interior edges strictly below it.

    ``ceil(conf * M) - 1`` is that index up to one rounding of ``conf * M`` or of
    an edge near a bin boundary; one comparison with the edges of the guessed
    bin (``lower`` / ``upper`` from :func:`uniform_edge_tables`, in the dtype of
    ``conf``) corrects it. O(1) per value, where a binary search over the edges
    is O(log M) and much slower in practice.
    """
    guess = xp.clip(to_int(xp.ceil(conf * num_bins)) - 1, 0, num_bins - 1)
    below = to_int(conf <= xp.take(lower, guess))
    above = to_int(conf > xp.take(upper, guess))
    return guess - below + above


def read_outputs(x: Any, y: Any, reading: str, from_logits: bool, xp: Any) -> tuple:
    """``(conf, hits)``, both ``(N, C)``: the probabilities to bin and what they predict.

    ``x`` is ``(N, K)`` probabilities (logits with ``from_logits``); ``y`` the
    integer labels ``(N,)`` of a softmax output or the 0/1 targets ``(N, C)`` of
    a sigmoid output. Top-label: ``max_k p_k`` and whether ``argmax_k p_k`` (the
    first maximum, as ``np.argmax``) is the label; the maximum of a softmax is
    ``1 / sum_k exp(z_k - max z)``, so logits need no ``(N, K)`` division.
    Classwise: every column against ``y == k``. Sigmoid: ``p`` against ``y``.
    """
    if reading in _SIGMOID_READINGS:  # hits as booleans, as below (y is checked 0/1)
        return (xp.sigmoid(x) if from_logits else x), xp.greater(y, 0.5)
    if reading == "top_label":
        top, pred = xp.top1(x)
        conf = 1.0 / xp.sum(xp.exp(x - xp.expand_dims(top, -1)), axis=-1) if from_logits else top
        return xp.expand_dims(conf, -1), xp.expand_dims(xp.equal(pred, y), -1)
    conf = xp.softmax(x) if from_logits else x
    return conf, xp.equal(xp.expand_dims(y, -1), xp.to_int(xp.arange(x.shape[-1])))


def uniform_bin_ids(conf: Any, num_bins: int, xp: Any) -> Any:
    """Flat segment ids ``column * M + bin`` of the ``(N, C)`` confidences, ``(N * C,)``."""
    lower, upper = (xp.asarray(t, conf.dtype) for t in uniform_edge_tables(num_bins))
    index = uniform_bin_index(conf, num_bins, lower, upper, xp, xp.to_int)
    return column_ids(index, num_bins, xp)


def column_ids(index: Any, num_bins: int, xp: Any) -> Any:
    """Bin indices ``(N, C)`` -> flat segment ids ``column * num_bins + bin``, ``(N * C,)``."""
    num_columns = index.shape[-1]
    if num_columns != 1:
        index = index + xp.to_int(xp.arange(num_columns)) * num_bins
    return xp.reshape(index, (-1,))


def scatter_inputs(ids: Any, conf: Any, hits: Any, weights: Any, length: int, xp: Any) -> tuple:
    """What the scatter-adds of :func:`sums_per_bin` add, flat, in the accumulation dtype.

    ``ids`` are the flat segment ids (``length`` segments), ``conf`` / ``hits``
    ``(N, C)``, ``weights`` ``(N,)`` or None. Unweighted, hits are 0/1: one count
    over ``hit * length + id`` gives the counts and the hit sums together (an
    integer bincount in place of two float ones), and the confidences are summed
    over the same ids. The cast to the accumulation dtype comes before any
    product or sum, so that they carry its precision.
    """
    conf = xp.reshape(xp.to_acc(conf), (-1,))
    if weights is None:
        return ids + length * xp.to_int(xp.reshape(hits, (-1,))), conf
    w = xp.broadcast_to(xp.expand_dims(xp.to_acc(weights), -1), xp.shape(hits))
    hits = xp.reshape(xp.to_acc(hits) * w, (-1,))
    w = xp.reshape(w, (-1,))
    return ids, w, conf * w, hits


def sums_per_bin(inputs: tuple, num_columns: int, num_bins: int, xp: Any) -> tuple:
    """``(counts, confidence_sums, hit_sums)``, each ``(C, M)``, from :func:`scatter_inputs`."""
    length = num_columns * num_bins
    if len(inputs) == 2:  # unweighted: segments (hit, column, bin)
        ids, conf = inputs
        pairs = xp.reshape(xp.to_acc(xp.segment_sum(ids, None, 2 * length)), (2, length))
        conf_sums = xp.sum(xp.reshape(xp.segment_sum(ids, conf, 2 * length), (2, length)), 0)
        sums = (pairs[0] + pairs[1], conf_sums, pairs[1])
    else:
        ids, *data = inputs
        sums = tuple(xp.segment_sum(ids, d, length) for d in data)
    return tuple(xp.reshape(v, (num_columns, num_bins)) for v in sums)


def _per_column(counts: Any, confidence_sums: Any, hit_sums: Any, xp: Any) -> tuple:
    num_bins = counts.shape[-1]
    return tuple(xp.reshape(v, (-1, num_bins)) for v in (counts, confidence_sums, hit_sums))


def ece_from_sums(counts: Any, confidence_sums: Any, hit_sums: Any, xp: Any) -> Any:
    """``mean_c sum_b (n_cb / N_c) |acc_cb - conf_cb|``; 0 for a column without samples.

    ``(n_b / N) |acc_b - conf_b| == |hit_sum_b - conf_sum_b| / N``: no division
    per bin, so empty bins need no special case.
    """
    counts, confidence_sums, hit_sums = _per_column(counts, confidence_sums, hit_sums, xp)
    total = xp.sum(counts, axis=-1)
    gaps = xp.sum(xp.abs(hit_sums - confidence_sums), axis=-1)
    return xp.mean(gaps / xp.where(total > 0, total, 1))


def mce_from_sums(counts: Any, confidence_sums: Any, hit_sums: Any, xp: Any) -> Any:
    """``mean_c max_{b: n_cb > 0} |acc_cb - conf_cb|`` (Guo et al., 2017); 0 without samples."""
    counts, confidence_sums, hit_sums = _per_column(counts, confidence_sums, hit_sums, xp)
    filled = counts > 0
    gaps = xp.abs(hit_sums - confidence_sums) / xp.where(filled, counts, 1)
    return xp.mean(xp.amax(xp.where(filled, gaps, 0), axis=-1))


MEASURES = {"ece": ece_from_sums, "mce": mce_from_sums}
