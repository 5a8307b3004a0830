"""Streaming calibration metrics for Keras 3 (any backend).

:class:`ExpectedCalibrationError`, :class:`MaximumCalibrationError` and
:class:`ClasswiseCalibrationError` accumulate the per-bin sums of
:func:`keras_ls.calibration.calibration_bins` batch by batch and turn them into
a measure with the formulas of :mod:`keras_ls.calibration` (one binning rule,
one place for the formulas). Each update is O(batch): an O(1) bin index per
probability, then one scatter-add (weighted bincount) per accumulator -- no
``(batch, num_bins)`` one-hot.
"""

from __future__ import annotations

import inspect
from typing import Any

import keras
import numpy as np
from keras import ops

from keras_ls.calibration import CalibrationBins, validate_num_bins
from keras_ls.calibration._checks import (
    BINARY,
    MULTI_LABEL,
    TOP_LABEL,
    check_bool,
    check_weight_values,
    distribution_tolerance,
    reading_for,
)
from keras_ls.calibration._core import read_predictions
from keras_ls.calibration._formulas import MEASURES, uniform_bin_index, uniform_edge_tables

__all__ = ["ClasswiseCalibrationError", "ExpectedCalibrationError", "MaximumCalibrationError"]

# Most segments (lanes x columns x bins) one update scatters into; see _lanes.
_SEGMENT_BUDGET = 2**16
# keras.ops.scatter_update(..., reduction="add") exists (recent Keras, e.g. 3.15).
_SCATTER_ADD = "reduction" in inspect.signature(ops.scatter_update).parameters


def _lanes(num_samples: Any, num_segments: int) -> int:
    """How many interleaved partial sums ("lanes") each bin gets in one update.

    A scatter-add adds one value after the other, so a float32 bin sum over a
    million samples drifts by ~1e-5 relative; sample ``n`` goes to lane
    ``n % lanes`` instead, and the lanes are added by a (pairwise) reduction.
    With a static batch size up to the budget every sample has a lane of its own.
    """
    cap = max(1, _SEGMENT_BUDGET // num_segments)
    return min(cap, num_samples) if isinstance(num_samples, int) and num_samples > 0 else cap


def _uncompiled_kernels() -> bool:
    """Whether this update runs op by op or in a TF graph without XLA.

    Then the kernels that are fastest there are used (see ``_scatter_add`` and
    ``_read_softmax``); compiled code (XLA, ``jax.jit``, ``torch.compile``) gets
    the static-shape ones. Eager TF is run as our own (non-XLA) graph.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        from keras_ls._backend.tensorflow import in_xla_context

        # Cannot tell: the kernels that compile everywhere.
        return tf.executing_eagerly() or not in_xla_context(default=True)
    if backend == "torch":
        import torch

        return not torch.compiler.is_compiling()
    return False


def _executing_eagerly_tf() -> bool:
    import tensorflow as tf

    return tf.executing_eagerly()


def _scatter_add(ids: Any, data: Any, length: int, uncompiled: bool) -> Any:
    """``out[i] = sum(data[ids == i])`` for ``i < length`` (counts when ``data`` is None).

    Uncompiled (eager torch, a plain TF graph), ``ops.bincount`` is several
    times faster than the alternatives; but its output size depends on the
    data, which XLA, ``jax.jit`` and ``torch.compile`` cannot take. Compiled
    code adds into a fixed-size zero tensor instead: ``scatter_update(...,
    reduction="add")``, or ``segment_sum`` on a Keras without that argument
    (whose torch version breaks a ``torch.compile`` graph).
    """
    if uncompiled:
        return ops.bincount(ids, weights=data, minlength=length)
    if data is None:
        data = ops.ones(ops.shape(ids), dtype="float32")
    if _SCATTER_ADD:
        zeros = ops.zeros((length,), dtype=data.dtype)
        return ops.scatter_update(zeros, ops.expand_dims(ids, -1), data, reduction="add")
    return ops.segment_sum(data, ids, num_segments=length)


def _is_sparse(true_shape: tuple, pred_rank: int, num_classes: int) -> bool:
    """Labels of a softmax output are sparse with ``y_pred``'s rank minus one, or with a
    last axis of 1 (``(B, 1)``) when there are several classes; else one-hot / soft."""
    return len(true_shape) == pred_rank - 1 or (
        len(true_shape) == pred_rank and true_shape[-1:] == (1,) and num_classes > 1
    )


def _is_host_array(x: Any) -> bool:
    return x is None or isinstance(x, (np.ndarray, np.generic, list, tuple, int, float))


class _CalibrationMetric(keras.metrics.Metric):
    """Shared state and update of the calibration metrics (one measure per subclass)."""

    _measure = "ece"
    _classwise = False
    _default_name = "ece"

    def __init__(
        self,
        num_bins: int = 15,
        from_logits: bool = False,
        name: str | None = None,
        dtype: Any = None,
        *,
        multi_label: bool = False,
    ) -> None:
        super().__init__(name=name or self._default_name, dtype=dtype)
        self.num_bins = validate_num_bins(num_bins)
        self.from_logits = check_bool(from_logits, "from_logits")
        self.multi_label = check_bool(multi_label, "multi_label")
        # The bins of keras_ls.calibration: each bin's lower and upper edge.
        self._lower_edges, self._upper_edges = uniform_edge_tables(self.num_bins)
        self._num_columns = None
        self._graph_updates = {}  # eager TF: input signature -> tf.function
        if not (self.multi_label or self._classwise):
            self._build(1)  # one reading (top-label / positive class): bins of shape (M,)

    # ---------------------------------------------------------------- state

    def _build(self, num_columns: int) -> None:
        lazy = self.multi_label or self._classwise
        shape = (num_columns, self.num_bins) if lazy else (self.num_bins,)
        self._num_columns = num_columns
        self.counts = self.add_variable(
            shape=shape, initializer="zeros", dtype=self.dtype, name="counts"
        )
        self.confidence_sums = self.add_variable(
            shape=shape, initializer="zeros", dtype=self.dtype, name="confidence_sums"
        )
        self.correct_sums = self.add_variable(
            shape=shape, initializer="zeros", dtype=self.dtype, name="correct_sums"
        )
        # Rounding errors of the three sums above (compensated summation): the
        # accumulators hold sum = value + residual exactly, also without float64.
        self.residuals = self.add_variable(
            shape=(3, *shape), initializer="zeros", dtype=self.dtype, name="residuals"
        )
        # Batches with values that are not what the reading expects (see update_state).
        self.invalid_batches = self.add_variable(
            shape=(), initializer="zeros", dtype=self.dtype, name="invalid_batches"
        )

    @property
    def _sums(self) -> tuple:
        return (self.counts, self.confidence_sums, self.correct_sums)

    def reset_state(self) -> None:
        for v in self.variables:
            v.assign(ops.zeros(v.shape, dtype=v.dtype))

    def bins(self) -> CalibrationBins:
        """The accumulated per-bin statistics as float64 numpy arrays.

        Shape ``(num_bins,)``, or ``(num_columns, num_bins)`` for a multi-label
        or classwise metric (empty before its first update). Feed them to
        :func:`keras_ls.calibration.ece_from_bins` /
        :func:`~keras_ls.calibration.mce_from_bins`, or plot them.
        """
        if self._num_columns is None:
            return CalibrationBins(*(np.zeros((0, self.num_bins)) for _ in range(3)))
        residuals = np.asarray(ops.convert_to_numpy(self.residuals), dtype=np.float64)
        return CalibrationBins(
            *(np.asarray(ops.convert_to_numpy(v), dtype=np.float64) + r
              for v, r in zip(self._sums, residuals))
        )

    def result(self) -> Any:
        if self._num_columns is None:
            return ops.zeros((), dtype=self.dtype)
        residuals = ops.convert_to_tensor(self.residuals)
        sums = [v + residuals[i] for i, v in enumerate(self._sums)]
        value = MEASURES[self._measure](*sums, xp=ops)
        # Bad values seen inside a compiled step cannot raise there: say it with NaN.
        return ops.where(self.invalid_batches > 0, float("nan"), value)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {"num_bins": self.num_bins, "from_logits": self.from_logits,
             "multi_label": self.multi_label}
        )
        return config

    # ---------------------------------------------------------------- update

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        """Accumulate the per-bin statistics of one batch.

        Args:
            y_true: Softmax output: sparse labels ``(B,)`` / ``(B, 1)`` or
                one-hot / soft targets ``(B, K)``. Sigmoid output: 0/1 labels
                of the shape of ``y_pred`` (``(B,)`` for ``(B, 1)`` too).
            y_pred: Probabilities ``(B, K)``, ``(B, 1)`` or ``(B,)`` (logits
                if ``from_logits=True``).
            sample_weight: Optional per-sample weights: scalar, ``(B,)``,
                ``(B, 1)``, or broadcastable to ``y_pred.shape[:-1]``.
        """
        if _is_host_array(y_true) and _is_host_array(y_pred) and _is_host_array(sample_weight):
            self._check_host_values(y_true, y_pred, sample_weight)
        y_pred = ops.convert_to_tensor(y_pred)
        y_true = ops.convert_to_tensor(y_true)
        if sample_weight is not None:
            sample_weight = ops.convert_to_tensor(sample_weight)
        if len(y_pred.shape) == 0:
            raise ValueError(
                "`y_pred` must have shape (batch,), (batch, 1) or (batch, num_classes); "
                "received a scalar."
            )
        num_columns = 1 if len(y_pred.shape) == 1 else y_pred.shape[-1]
        if num_columns is None:
            raise ValueError("`y_pred` must have a static number of classes (last dimension).")
        if self._num_columns is None:
            self._build(num_columns)
        elif (self.multi_label or self._classwise) and num_columns != self._num_columns:
            raise ValueError(
                f"`y_pred` must keep its {self._num_columns} columns from batch to batch; "
                f"received shape {tuple(y_pred.shape)}."
            )
        uncompiled = _uncompiled_kernels()
        if keras.backend.backend() == "tensorflow" and uncompiled and _executing_eagerly_tf():
            self._tf_graph_update(y_true, y_pred, sample_weight)
        else:
            self._update(y_true, y_pred, sample_weight, uncompiled=uncompiled)

    def _tf_graph_update(self, y_true: Any, y_pred: Any, sample_weight: Any) -> None:
        """Eager TF: run the update as one graph (~0.1 ms per op saved; no XLA).

        One ``tf.function`` per input ranks, dtypes and trailing dimensions,
        traced once with a free batch dimension.
        """
        import tensorflow as tf

        tensors = [t for t in (y_true, y_pred, sample_weight) if t is not None]
        specs = tuple(
            tf.TensorSpec((None, *t.shape[1:]) if len(t.shape) else (), t.dtype)
            for t in tensors
        )
        key = (specs, sample_weight is None)
        if key not in self._graph_updates:

            def update(*args: Any) -> None:
                weight = None if sample_weight is None else args[2]
                self._update(args[0], args[1], weight, uncompiled=True)

            self._graph_updates[key] = tf.function(update, input_signature=specs)
        self._graph_updates[key](*tensors)

    def _update(self, y_true: Any, y_pred: Any, sample_weight: Any, uncompiled: bool) -> None:
        pred_rank = len(y_pred.shape)
        num_columns = 1 if pred_rank == 1 else y_pred.shape[-1]
        reading = reading_for(
            num_columns, multi_label=self.multi_label, classwise=self._classwise
        )
        sample_shape = ops.shape(y_pred)[:-1] if pred_rank > 1 else ops.shape(y_pred)
        tolerance = distribution_tolerance(keras.backend.standardize_dtype(y_pred.dtype))
        x = ops.reshape(ops.cast(y_pred, self.dtype), (-1, num_columns))
        if reading in (BINARY, MULTI_LABEL):
            targets = self._binary_targets(y_true, y_pred.shape, reading)
            conf, hits, bad = self._read_sigmoid(x, targets)
        else:
            labels = self._labels(y_true, y_pred.shape)
            top_k = uncompiled and keras.backend.backend() == "tensorflow"
            conf, hits, bad = self._read_softmax(x, labels, reading, tolerance, top_k)
        weight = None
        if sample_weight is not None:
            weight = self._weights(sample_weight, pred_rank, sample_shape)
            bad = ops.logical_or(bad, ops.logical_not(ops.all(weight >= 0)))
        self._accumulate(self._binned_sums(conf, hits, weight, uncompiled))
        self.invalid_batches.assign_add(ops.cast(bad, self.dtype))

    def _check_host_values(self, y_true: Any, y_pred: Any, sample_weight: Any) -> None:
        """NumPy inputs are checked on the host, so that bad values raise right away."""
        pred = np.asarray(y_pred)
        if pred.ndim == 0:
            return  # the shape check below raises
        k = 1 if pred.ndim == 1 else pred.shape[-1]
        true = np.asarray(y_true)
        reading = reading_for(k, multi_label=self.multi_label, classwise=self._classwise)
        sparse = _is_sparse(true.shape, pred.ndim, k)
        if reading == MULTI_LABEL or not (sparse or reading == BINARY):
            true = true.reshape(-1, k)
        else:
            true = true.reshape(-1)
        read_predictions(true, pred.reshape(-1, k), self.from_logits, self.multi_label,
                         self._classwise)
        if sample_weight is not None:
            check_weight_values(np.asarray(sample_weight, dtype=np.float64))

    def _binary_targets(self, y_true: Any, pred_shape: tuple, reading: str) -> Any:
        """0/1 labels of a sigmoid output, ``(N, C)``."""
        pred_rank, true_rank = len(pred_shape), len(y_true.shape)
        if reading == BINARY:  # (B, ..., 1) or (B, ...) labels for (B, ..., 1) or (B,)
            same_rank = true_rank == max(pred_rank, 2) and y_true.shape[-1] == 1
            ok = same_rank or true_rank == max(pred_rank - 1, 1)
        else:
            ok = true_rank == pred_rank and y_true.shape[-1] == pred_shape[-1]
        if not ok:
            raise ValueError(
                f"`y_true` of a {reading.replace('_', '-')} (sigmoid) output must hold 0/1 "
                f"labels of the shape of `y_pred` {tuple(pred_shape)}; received shape "
                f"{tuple(y_true.shape)}."
            )
        return ops.reshape(y_true, (-1, pred_shape[-1] if pred_rank > 1 else 1))

    def _labels(self, y_true: Any, pred_shape: tuple) -> Any:
        """Class labels ``(N,)`` of a softmax output from sparse or one-hot ``y_true``."""
        pred_rank, true_rank = len(pred_shape), len(y_true.shape)
        num_classes = pred_shape[-1]
        is_sparse = _is_sparse(tuple(y_true.shape), pred_rank, num_classes)
        if not is_sparse and true_rank != pred_rank:
            raise ValueError(
                f"`y_true` must be sparse labels (rank {pred_rank - 1}, or last dimension "
                f"1) or one-hot with the shape of `y_pred` {tuple(pred_shape)}; "
                f"received shape {tuple(y_true.shape)}."
            )
        if is_sparse:
            return ops.cast(ops.reshape(y_true, (-1,)), "int32")
        return ops.cast(ops.argmax(ops.reshape(y_true, (-1, num_classes)), axis=-1), "int32")

    def _weights(self, sample_weight: Any, pred_rank: int, sample_shape: Any) -> Any:
        weight = ops.cast(ops.convert_to_tensor(sample_weight), self.dtype)
        sample_rank = max(pred_rank - 1, 1)
        # (B, 1) -> (B,); (B,) with y_pred (B, T, K) -> (B, 1) -> broadcast (B, T).
        if len(weight.shape) == sample_rank + 1 and weight.shape[-1] == 1:
            weight = ops.squeeze(weight, axis=-1)
        while 0 < len(weight.shape) < sample_rank:
            weight = ops.expand_dims(weight, -1)
        return ops.reshape(ops.broadcast_to(weight, sample_shape), (-1,))

    def _read_sigmoid(self, x: Any, targets: Any) -> tuple:
        probs = ops.sigmoid(x) if self.from_logits else x
        hits = ops.cast(targets, self.dtype)
        # Written so that NaN counts as bad (every comparison with NaN is False).
        in_range = ops.all(ops.logical_and(probs >= 0, probs <= 1))
        binary = ops.all(ops.logical_or(hits == 0, hits == 1))
        return probs, hits, ops.logical_not(ops.logical_and(in_range, binary))

    def _read_softmax(
        self, x: Any, labels: Any, reading: str, tolerance: float, top_k: bool
    ) -> tuple:
        num_classes = x.shape[-1]
        if reading == TOP_LABEL:
            # top_k in TF graphs without XLA only: there TF's argmax makes four extra
            # passes (Keras' -0.0 fix) where top_k is one kernel that, like
            # np.argmax, puts the lower index first among ties. XLA's top_k is a slow
            # sort, and torch.topk does not order ties by index. (amax, not max: Keras'
            # torch max breaks a torch.compile graph.)
            if top_k:
                top, pred = ops.top_k(x, 1)
                top, pred = top[:, 0], pred[:, 0]
            else:
                top, pred = ops.amax(x, axis=-1), ops.argmax(x, axis=-1)
            # max softmax = 1 / sum_k exp(z_k - max z): no (B, K) division.
            conf = 1.0 / ops.sum(ops.exp(x - top[:, None]), axis=-1) if self.from_logits else top
            hits = ops.cast(ops.equal(ops.cast(pred, "int32"), labels), self.dtype)
            conf, hits = ops.expand_dims(conf, -1), ops.expand_dims(hits, -1)
        else:
            conf = ops.softmax(x, axis=-1) if self.from_logits else x
            hits = ops.one_hot(labels, num_classes, dtype=self.dtype)
        valid_labels = ops.all(ops.logical_and(labels >= 0, labels < num_classes))
        if self.from_logits:
            valid = ops.all(conf == conf)  # NaN logits
        else:
            row_sums = ops.sum(x, axis=-1)
            # all(...), not amin: the batch may be empty.
            valid = ops.logical_and(
                ops.all(x >= 0), ops.all(ops.abs(row_sums - 1.0) <= tolerance)
            )
        return conf, hits, ops.logical_not(ops.logical_and(valid, valid_labels))

    def _bin_index(self, conf: Any) -> Any:
        lower = ops.convert_to_tensor(self._lower_edges, dtype=conf.dtype)
        upper = ops.convert_to_tensor(self._upper_edges, dtype=conf.dtype)
        return uniform_bin_index(
            conf, self.num_bins, lower, upper, ops, lambda a: ops.cast(a, "int32")
        )

    def _binned_sums(self, conf: Any, hits: Any, weight: Any, uncompiled: bool) -> list:
        """This batch's counts, confidence sums and hit sums, each of the variables' shape.

        Confidences are summed as offsets from their bin's centre (at most half a
        bin width), so that float32 sums of many similar values drift far less;
        the centres come back as ``count * centre`` (one rounding).
        """
        m = self.num_bins
        num_columns = conf.shape[-1]
        lanes = _lanes(conf.shape[0], num_columns * m)
        lane = ops.arange(ops.shape(conf)[0], dtype="int32") % lanes
        column = ops.arange(num_columns, dtype="int32") * m
        index = self._bin_index(conf)
        # Bin centres (i + 1/2) / M, by the same formula per sample and per bin (no
        # gather; exactness is not needed, only the same value in both places).
        offsets = conf - (ops.cast(index, conf.dtype) + 0.5) * (1.0 / m)
        centres = (ops.arange(m, dtype=self.dtype) + 0.5) * (1.0 / m)
        # Segment (column, bin, lane), lane last so that lanes are summed along the
        # innermost axis (a pairwise reduction on every backend).
        segment = ops.reshape((column[None, :] + index) * lanes + lane[:, None], (-1,))
        length = num_columns * m * lanes
        if weight is not None:
            weight = ops.broadcast_to(ops.expand_dims(weight, -1), ops.shape(conf))
            offsets, hits = offsets * weight, hits * weight
            weight = ops.reshape(weight, (-1,))

        def binned(data: Any) -> Any:
            sums = ops.cast(_scatter_add(segment, data, length, uncompiled), self.dtype)
            return ops.sum(ops.reshape(sums, (num_columns, m, lanes)), axis=-1)

        counts = binned(weight)
        offset_sums = binned(ops.reshape(offsets, (-1,)))
        hit_sums = binned(ops.reshape(hits, (-1,)))
        conf_sums = counts * centres + offset_sums
        return [ops.reshape(v, self.counts.shape) for v in (counts, conf_sums, hit_sums)]

    def _accumulate(self, batch: list) -> None:
        # TwoSum (Knuth): s + err == total + value exactly, so float32 accumulators
        # lose nothing over many batches (JAX has no float64 by default).
        errors = []
        for variable, value in zip(self._sums, batch):
            total = ops.convert_to_tensor(variable)
            s = total + value
            value_part = s - total
            errors.append((total - (s - value_part)) + (value - value_part))
            variable.assign(s)
        self.residuals.assign_add(ops.stack(errors))


@keras.saving.register_keras_serializable(package="keras_ls")
class ExpectedCalibrationError(_CalibrationMetric):
    """Expected calibration error, accumulated over batches.

    ``ECE = sum_b (n_b / N) |acc_b - conf_b|`` over ``num_bins`` equal-width
    bins on [0, 1] (Guo et al., 2017): bin ``i`` holds ``(i/M, (i+1)/M]`` and
    0 goes to bin 0. What is binned depends on ``y_pred``'s last axis:

    - ``K >= 2`` columns (softmax): **top-label** -- the confidence ``max_k p_k``,
      a hit when ``argmax_k p_k`` is the label. Rows must sum to 1.
    - one column ``(B, 1)``, or ``y_pred`` of shape ``(B,)`` (sigmoid):
      **positive class** -- ``p`` against the frequency of label 1 (as
      torchmetrics' ``BinaryCalibrationError``).
    - ``multi_label=True``: each of the ``L`` columns is a sigmoid output;
      the result is the mean over labels of their positive-class ECE.

    The per-bin sums equal those of
    :func:`keras_ls.calibration.calibration_bins` and the result equals
    :func:`keras_ls.calibration.expected_calibration_error` (same bins, same
    formula), up to float32 rounding (~1e-7). The sums are compensated
    (``residuals``), so this holds over any number of batches, also on JAX
    without float64. Each update is O(batch): no ``(batch, num_bins)`` one-hot.

    Values that are not what the reading expects -- probabilities outside
    [0, 1], softmax rows that do not sum to 1 (sigmoid outputs without
    ``multi_label=True``), labels out of range or not 0/1, negative weights,
    NaN -- raise a ``ValueError`` when given as NumPy arrays; inside a compiled
    step they cannot raise, so ``result()`` returns NaN until
    ``reset_state()``.

    Only ``keras.ops`` is used: it runs eagerly, under ``tf.function``, with
    ``jit_compile=True`` (XLA, ``jax.jit``, ``torch.compile`` without graph
    breaks) on the TensorFlow, JAX and torch backends. Adaptive (quantile)
    bins need all the predictions at once: use
    :func:`keras_ls.calibration.expected_calibration_error` with
    ``binning="quantile"`` on them.

    Args:
        num_bins: Number of equal-width confidence bins ``M >= 1``.
        from_logits: Whether ``y_pred`` holds logits (softmax, or sigmoid for
            one column and with ``multi_label=True``).
        name: (Optional) string name of the metric instance; ``"ece"`` by
            default.
        dtype: (Optional) data type of the accumulators and of the result.
        multi_label: Whether the columns of ``y_pred`` are independent sigmoid
            outputs. The accumulators then get one row per label, created at
            the first update.

    ``y_true`` of a softmax output may be sparse labels of shape ``(B,)`` /
    ``(B, 1)`` or one-hot / soft targets of shape ``(B, K)`` (their argmax is
    used); labels are sparse when ``y_true`` has one dimension less than
    ``y_pred``, or the same rank with a last dimension of 1 while ``K > 1``.
    Leading dimensions beyond the batch are flattened (each position counts as
    one sample).

    Example:

    >>> m = ExpectedCalibrationError(num_bins=10)
    >>> m.update_state([0, 1], [[0.9, 0.1], [0.8, 0.2]])
    >>> round(float(m.result()), 6)  # (|1 - 0.9| + |0 - 0.8|) / 2
    0.45
    >>> b = ExpectedCalibrationError(num_bins=2)  # a sigmoid output: positive class
    >>> b.update_state([1, 0, 1, 1], [[0.9], [0.8], [0.3], [0.2]])
    >>> round(float(b.result()), 6)  # (|1 - 1.7| + |2 - 0.5|) / 4
    0.55

    Usage with `compile()` API:

    ```python
    x, y = np.random.rand(256, 8), np.random.randint(0, 3, 256)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)])
    model.compile(optimizer="adam",
                  loss=keras_ls.SmoothedCE(0.1, from_logits=True),
                  metrics=["accuracy", keras_ls.ExpectedCalibrationError(from_logits=True)])
    history = model.fit(x, y, epochs=2, verbose=0)
    print(history.history["ece"])
    ```

    (Keras passes ``sample_weight`` / ``class_weight`` only to
    ``weighted_metrics=[...]``; a metric in ``metrics=[...]`` is unweighted.)
    """

    _measure = "ece"
    _default_name = "ece"


@keras.saving.register_keras_serializable(package="keras_ls")
class MaximumCalibrationError(_CalibrationMetric):
    """Maximum calibration error ``max_{b: n_b > 0} |acc_b - conf_b|``, over batches.

    The largest gap between accuracy and confidence over the non-empty bins
    (Guo et al., 2017); same bins, readings, arguments and accumulators as
    :class:`ExpectedCalibrationError` (with ``multi_label=True`` the mean over
    labels of their MCE), and equal to
    :func:`keras_ls.calibration.maximum_calibration_error`.

    Args: those of :class:`ExpectedCalibrationError`; ``name`` is
    ``"mce"`` by default.

    Example:

    >>> m = MaximumCalibrationError(num_bins=10)
    >>> m.update_state([0, 1], [[0.9, 0.1], [0.8, 0.2]])
    >>> round(float(m.result()), 6)  # bin (0.7, 0.8]: accuracy 0, confidence 0.8
    0.8
    """

    _measure = "mce"
    _default_name = "mce"


@keras.saving.register_keras_serializable(package="keras_ls")
class ClasswiseCalibrationError(_CalibrationMetric):
    """Classwise ECE (Kull et al., 2019), accumulated over batches.

    The mean over classes ``k`` of the ECE of ``p[:, k]`` against ``y == k``:
    every class column of a softmax output has its own bins, so the
    probabilities of classes that were not predicted count too. A sigmoid
    output ``(B, 1)`` / ``(B,)`` gives its positive-class ECE, a multi-label
    one (``multi_label=True``) the mean over labels of their positive-class
    ECE. Equal to :func:`keras_ls.calibration.classwise_calibration_error`.
    The accumulators have one row per class (shape ``(K, num_bins)``),
    created at the first update; each update bins all ``B x K`` probabilities.

    Args: those of :class:`ExpectedCalibrationError`; ``name`` is
    ``"classwise_ece"`` by default.

    Example:

    >>> m = ClasswiseCalibrationError(num_bins=10)
    >>> m.update_state([0, 1], [[0.9, 0.1], [0.8, 0.2]])
    >>> round(float(m.result()), 6)  # both classes: (0.1 + 0.8) / 2
    0.45
    >>> m.bins().counts.shape  # (classes, bins)
    (2, 10)
    """

    _measure = "ece"
    _classwise = True
    _default_name = "classwise_ece"


# Importing any Keras-side keras-ls module registers every keras-ls class with Keras.
import keras_ls  # noqa: E402

keras_ls.register_serializables()
