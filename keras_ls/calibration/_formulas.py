"""The binning rule and the formulas that turn per-bin sums into measures.

Written against an array namespace ``xp`` -- ``numpy`` for
``keras_ls.calibration`` and ``keras.ops`` for the streaming metrics in
``keras_ls.metrics`` -- so that both bin with the same code and compute every
measure with the same formula. Only functions the two share are used
(``ceil``, ``clip``, ``take``, ``reshape``, ``sum``, ``abs``, ``where``,
``amax``, ``mean``; a cast to integers is passed in), and nothing here imports
either. (``amax``, not ``max``: Keras' torch ``max`` breaks a ``torch.compile``
graph.)

Inputs are the per-bin (weighted) sample counts, confidence sums and hit sums
(a hit is a correct top-label prediction, or a label 1 for a sigmoid output),
of shape ``(M,)`` for one reading or ``(C, M)`` for ``C`` columns (labels of a
multi-label output, classes of the classwise measure). A measure is computed
per column and averaged over the columns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


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
