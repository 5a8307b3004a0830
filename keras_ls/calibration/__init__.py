"""Calibration measures for classifiers, in numpy (plus a matplotlib plot).

Which probability is binned depends on the shape of the output:

=====================================  ========================================
``y_prob``                             reading
=====================================  ========================================
``(N, K)``, ``K >= 2`` (softmax)       **top-label**: bin ``max_k p_k``; a hit is
                                       ``argmax_k p_k == label`` (the first
                                       maximum wins ties). Rows must sum to 1.
``(N,)`` or ``(N, 1)`` (sigmoid)       **positive class**: bin ``p``, compare with
                                       the frequency of label 1 (scikit-learn's
                                       ``calibration_curve``, torchmetrics'
                                       ``BinaryCalibrationError``).
``(N, L)`` with ``multi_label=True``   **per label**: each column is a binary
                                       output; measures are averaged over labels.
=====================================  ========================================

Logits (``from_logits=True``) go through a softmax, or a sigmoid for one
column and for ``multi_label=True``. Sigmoid outputs of several labels are
never read as one softmax: rows of an ``(N, K)`` input that do not sum to 1
raise an error that points to ``multi_label=True`` / ``from_logits=True``.

Measures, all from the same bins: :func:`expected_calibration_error` (ECE,
Guo et al. 2017), :func:`maximum_calibration_error` (MCE, the largest gap
over non-empty bins), :func:`classwise_calibration_error` (Kull et al. 2019:
the mean over classes of the ECE of ``p[:, k]`` against ``y == k``). Each takes
``binning="uniform"`` (equal-width bins on [0, 1]) or ``"quantile"``
(adaptive, equal-mass bins, Nixon et al. 2019).

The functional core is :func:`calibration_bins`: per bin, the (weighted)
sample count, the sum of binned probabilities and the number of hits. Bin
``i`` (0-based) holds ``(e_i, e_{i+1}]``, and 0 goes to bin 0 (Guo et al.,
2017); uniform edges are ``i / M`` (:func:`bin_edges`). The measures, the
:func:`reliability_diagram` and the streaming Keras metrics
(:class:`keras_ls.ExpectedCalibrationError` and its siblings in
``keras_ls.metrics``) run the same code for the readings, the binning rule,
the per-bin sums and the measures (``_formulas``, written against an array
namespace: numpy here, ``keras.ops`` in the metrics).

This module imports numpy only (matplotlib is imported inside
:func:`reliability_diagram`): importing it never loads TensorFlow or Keras.
"""

from __future__ import annotations

from keras_ls.calibration._checks import validate_num_bins
from keras_ls.calibration._core import (
    CalibrationBins,
    bin_edges,
    calibration_bins,
    classwise_calibration_error,
    ece_from_bins,
    expected_calibration_error,
    maximum_calibration_error,
    mce_from_bins,
)
from keras_ls.calibration._plot import reliability_diagram
from keras_ls.calibration._scores import brier_score, fit_temperature, nll

__all__ = [
    "CalibrationBins",
    "bin_edges",
    "brier_score",
    "calibration_bins",
    "classwise_calibration_error",
    "ece_from_bins",
    "expected_calibration_error",
    "fit_temperature",
    "maximum_calibration_error",
    "mce_from_bins",
    "nll",
    "reliability_diagram",
    "validate_num_bins",
]
