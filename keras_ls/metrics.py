"""Streaming calibration metrics for Keras 3 (any backend).

:class:`ExpectedCalibrationError`, :class:`MaximumCalibrationError` and
:class:`ClasswiseCalibrationError` run the core of :mod:`keras_ls.calibration`
(``_formulas``: readings, binning rule, per-bin sums, measures) with
``keras.ops`` as its array namespace, batch by batch, and keep the per-bin sums
in float64 variables where the backend has float64 (see
``docs/calibration-metrics.md``). Each update is O(batch): an O(1) bin index
per probability, then one scatter-add (weighted bincount) per sum -- no
``(batch, num_bins)`` one-hot.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
from keras import ops

from keras_ls.calibration import CalibrationBins, validate_num_bins
from keras_ls.calibration._checks import (
    BINARY,
    MULTI_LABEL,
    check_bool,
    check_weight_values,
    distribution_tolerance,
    is_sparse,
    reading_for,
)
from keras_ls.calibration._core import read_predictions
from keras_ls.calibration._formulas import (
    MEASURES,
    ArrayNamespace,
    read_outputs,
    scatter_inputs,
    sums_per_bin,
    uniform_bin_ids,
)

__all__ = ["ClasswiseCalibrationError", "ExpectedCalibrationError", "MaximumCalibrationError"]

# Eager TF: from this many predicted values (rows x columns) on, the reading of an
# update is one XLA kernel (~3x faster than TF's top_k / argmax kernels); it is
# compiled once per input shape (~0.2 s), which only pays off on large updates.
_XLA_MIN_VALUES = 2**20


def _accumulation_dtype() -> str:
    """float64 where the backend has it: TF, torch, and JAX with ``jax_enable_x64``."""
    if keras.backend.backend() == "jax":
        import jax

        if not jax.config.jax_enable_x64:
            return "float32"
    return "float64"


def _uncompiled_kernels() -> bool:
    """Whether this update runs op by op or in a TF graph without XLA.

    Then ``ops.bincount`` (and on TF ``top_k``) are used, the fastest kernels
    there; compiled code (XLA, ``jax.jit``, ``torch.compile``) cannot take
    bincount's data-dependent output size and gets the static-shape ones.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        from keras_ls._compat import tf_in_xla_context

        # Cannot tell: the kernels that compile everywhere.
        return tf.executing_eagerly() or not tf_in_xla_context(default=True)
    if backend == "torch":
        import torch

        return not torch.compiler.is_compiling()
    return False


def _executing_eagerly() -> bool:
    """Whether values can be read on the host here (no trace, no compiled graph)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.executing_eagerly()
    if backend == "torch":
        import torch

        return not torch.compiler.is_compiling()
    import jax

    return not isinstance(jax.numpy.zeros(()), jax.core.Tracer)


def _segment_sum(uncompiled: bool) -> Any:
    """``segment_sum(ids, data, length)``: ``out[i] = sum(data[ids == i])`` (counts if None).

    torch gets its own kernels: Keras' torch ``bincount`` returns float32 (a float64
    sum rounded to float32 is no float64 sum) and its ``segment_sum`` breaks a
    ``torch.compile`` graph.
    """
    if keras.backend.backend() == "torch":
        import torch

        def torch_segment_sum(ids: Any, data: Any, length: int) -> Any:
            if uncompiled:
                return torch.bincount(ids, weights=data, minlength=length)
            if data is None:
                data = torch.ones_like(ids)
            return torch.zeros(length, dtype=data.dtype, device=data.device).index_add(
                0, ids, data
            )

        return torch_segment_sum
    if uncompiled:
        return lambda ids, data, length: ops.bincount(ids, weights=data, minlength=length)

    def segment_sum(ids: Any, data: Any, length: int) -> Any:
        if data is None:
            data = ops.ones(ops.shape(ids), dtype="int32")
        return ops.segment_sum(data, ids, num_segments=length)

    return segment_sum


def _namespace(uncompiled: bool, tf_top_k: bool = False) -> ArrayNamespace:
    """``keras.ops`` as the ``xp`` of the calibration core, for where this update runs."""

    torch_backend = keras.backend.backend() == "torch"

    def top1(x: Any) -> tuple:
        # One kernel for max and first argmax where there is one: TF's top_k in a graph
        # without XLA, torch.max(dim) (both put the lower index first among ties);
        # Keras' argmax adds passes for -0.0, and its torch max breaks a compiled graph.
        if tf_top_k:
            values, indices = ops.top_k(x, 1)
            return values[:, 0], indices[:, 0]
        if torch_backend:
            import torch

            values, indices = torch.max(x, dim=-1)
            return values, indices.to(torch.int32)
        return ops.amax(x, axis=-1), ops.argmax(x, axis=-1)

    acc = _accumulation_dtype()
    return ArrayNamespace(
        ops,
        top1=top1,
        softmax=lambda x: ops.softmax(x, axis=-1),
        sigmoid=ops.sigmoid,
        to_int=lambda a: ops.cast(a, "int32"),
        to_acc=lambda a: ops.cast(a, acc),
        asarray=lambda a, dtype: ops.convert_to_tensor(a, dtype=dtype),
        segment_sum=_segment_sum(uncompiled),
    )


def _is_host_array(x: Any) -> bool:
    return x is None or isinstance(x, (np.ndarray, np.generic, list, tuple, int, float))


def _all(*conditions: Any) -> Any:
    """One boolean: every element of every condition holds (NaN compares False)."""
    out = ops.all(conditions[0])
    for c in conditions[1:]:
        out = ops.logical_and(out, ops.all(c))
    return out


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
        self._num_columns = None
        self._graph_updates = {}  # eager TF: input signature -> tf.function
        if not (self.multi_label or self._classwise):
            self._build(1)  # one reading (top-label / positive class): bins of shape (M,)

    # ---------------------------------------------------------------- state

    def _build(self, num_columns: int) -> None:
        lazy = self.multi_label or self._classwise
        shape = (num_columns, self.num_bins) if lazy else (self.num_bins,)
        self._num_columns = num_columns
        acc = _accumulation_dtype()
        for name in ("counts", "confidence_sums", "correct_sums"):
            setattr(self, name, self.add_variable(
                shape=shape, initializer="zeros", dtype=acc, name=name
            ))
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
        return CalibrationBins(
            *(np.asarray(ops.convert_to_numpy(v), dtype=np.float64) for v in self._sums)
        )

    def result(self) -> Any:
        if self._num_columns is None:
            return ops.zeros((), dtype=self.dtype)
        value = ops.cast(MEASURES[self._measure](*self._sums, xp=ops), self.dtype)
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
        given = (y_true, y_pred, sample_weight)
        # Host values can raise a clear error: the update reports bad values and
        # then adds nothing (see _fold); tensors get NaN instead (no host sync).
        strict = all(_is_host_array(v) for v in given) and _executing_eagerly()
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
        if keras.backend.backend() == "tensorflow" and _executing_eagerly():
            bad = self._tf_eager_update(y_true, y_pred, sample_weight, strict)
        else:
            uncompiled = _uncompiled_kernels()
            xp = _namespace(uncompiled, uncompiled and keras.backend.backend() == "tensorflow")
            bad = self._update(y_true, y_pred, sample_weight, xp, None, strict)
        if strict and bool(ops.convert_to_numpy(bad)):
            self._raise_for_host_values(*given)

    def _tf_eager_update(self, y_true: Any, y_pred: Any, sample_weight: Any, strict: bool) -> Any:
        """Eager TF: the update as one graph (~0.1 ms per op saved), its reading in XLA
        for large batches (see ``_XLA_MIN_VALUES``).

        One ``tf.function`` per input ranks, dtypes, trailing dimensions and
        strictness, traced once with a free batch dimension (the XLA reading
        compiles once per batch size).
        """
        import tensorflow as tf

        tensors = [t for t in (y_true, y_pred, sample_weight) if t is not None]
        xla = math.prod(y_pred.shape) >= _XLA_MIN_VALUES
        specs = tuple(
            tf.TensorSpec((None, *t.shape[1:]) if len(t.shape) else (), t.dtype)
            for t in tensors
        )
        key = (specs, sample_weight is None, strict, xla)
        if key not in self._graph_updates:
            weighted = sample_weight is not None
            read = None
            if xla:
                compiled = _namespace(uncompiled=False)
                read = tf.function(
                    lambda *a: self._read(a[0], a[1], a[2] if weighted else None, compiled),
                    jit_compile=True,
                )

            def update(*args: Any) -> Any:
                weight = args[2] if weighted else None
                xp = _namespace(uncompiled=True, tf_top_k=True)
                return self._update(args[0], args[1], weight, xp, read, strict)

            self._graph_updates[key] = tf.function(update, input_signature=specs)
        return self._graph_updates[key](*tensors)

    def _update(
        self, y_true: Any, y_pred: Any, weight: Any, xp: Any, read: Any, strict: bool
    ) -> Any:
        """Read, bin, sum per bin (``xp.segment_sum``) and add to the state; returns ``bad``."""
        if read is None:
            *inputs, bad = self._read(y_true, y_pred, weight, xp)
        else:  # the reading compiled on its own (XLA inside a TF graph)
            *inputs, bad = read(*(t for t in (y_true, y_pred, weight) if t is not None))
        sums = sums_per_bin(inputs, self._num_columns, self.num_bins, xp)
        if strict:  # bad host values raise after the update: add nothing
            sums = [ops.where(bad, ops.zeros_like(s), s) for s in sums]
        else:
            self.invalid_batches.assign_add(ops.cast(bad, self.dtype))
        for variable, value in zip(self._sums, sums):
            variable.assign_add(ops.reshape(value, variable.shape))
        return bad

    def _read(self, y_true: Any, y_pred: Any, weight: Any, xp: Any) -> tuple:
        """The :func:`scatter_inputs` of one batch, and ``bad``.

        The readings and the binning are those of ``keras_ls.calibration``
        (``_formulas``); ``bad`` says whether any value is not what the reading
        expects (the checks of ``keras_ls.calibration``, as one boolean).
        """
        pred_shape = tuple(y_pred.shape)
        num_columns = 1 if len(pred_shape) == 1 else pred_shape[-1]
        reading = reading_for(num_columns, multi_label=self.multi_label,
                              classwise=self._classwise)
        x = ops.reshape(ops.cast(y_pred, self.dtype), (-1, num_columns))
        sigmoid_output = reading in (BINARY, MULTI_LABEL)
        if sigmoid_output:
            y = ops.cast(self._binary_targets(y_true, pred_shape, reading), self.dtype)
            checks = [ops.logical_or(y == 0, y == 1)]
        else:
            y, checks = self._labels(y_true, pred_shape)
        if self.from_logits:
            checks.append(ops.isfinite(x))
        elif sigmoid_output:
            checks.append(ops.logical_and(x >= 0, x <= 1))
        else:
            tolerance = distribution_tolerance(keras.backend.standardize_dtype(y_pred.dtype))
            checks += [x >= 0, ops.abs(ops.sum(x, axis=-1) - 1.0) <= tolerance]
        if weight is not None:
            sample_shape = ops.shape(y_pred)[:-1] if len(pred_shape) > 1 else ops.shape(y_pred)
            weight = self._weights(weight, len(pred_shape), sample_shape)
            checks.append(ops.logical_and(ops.isfinite(weight), weight >= 0))
        conf, hits = read_outputs(x, y, reading, self.from_logits, xp)
        ids = uniform_bin_ids(conf, self.num_bins, xp)
        length = self.num_bins * conf.shape[-1]  # one row of bins per column of conf
        inputs = scatter_inputs(ids, conf, hits, weight, length, xp)
        return (*inputs, ops.logical_not(_all(*checks)))

    def _raise_for_host_values(self, y_true: Any, y_pred: Any, sample_weight: Any) -> None:
        """The update found bad host values: the checks of ``keras_ls.calibration`` say which."""
        pred = np.asarray(y_pred)
        k = 1 if pred.ndim == 1 else pred.shape[-1]
        true = np.asarray(y_true)
        reading = reading_for(k, multi_label=self.multi_label, classwise=self._classwise)
        sparse = is_sparse(true.shape, pred.ndim, k)
        if reading == MULTI_LABEL or not (sparse or reading == BINARY):
            true = true.reshape(-1, k)
        else:
            true = true.reshape(-1)
        read_predictions(true, pred.reshape(-1, k), self.from_logits, self.multi_label,
                         self._classwise)
        if sample_weight is not None:
            check_weight_values(np.asarray(sample_weight, dtype=np.float64))
        raise ValueError(  # rounding at the row-sum tolerance can flag what numpy passes
            "`y_true`, `y_pred` or `sample_weight` hold values the reading does not expect "
            "(see keras_ls.calibration); nothing was accumulated."
        )

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

    def _labels(self, y_true: Any, pred_shape: tuple) -> tuple:
        """Class labels ``(N,)`` of a softmax output, and the conditions they must meet."""
        pred_rank, num_classes = len(pred_shape), pred_shape[-1]
        true_shape = tuple(y_true.shape)
        sparse = is_sparse(true_shape, pred_rank, num_classes)
        if not sparse and (len(true_shape) != pred_rank or true_shape[-1] != num_classes):
            raise ValueError(
                f"`y_true` must be sparse labels (rank {pred_rank - 1}, or last dimension "
                f"1) or one-hot with the shape of `y_pred` {tuple(pred_shape)}; "
                f"received shape {true_shape}."
            )
        is_float = "float" in keras.backend.standardize_dtype(y_true.dtype)
        if not sparse:
            targets = ops.reshape(y_true, (-1, num_classes))
            checks = [ops.isfinite(targets)] if is_float else []
            return ops.cast(ops.argmax(targets, axis=-1), "int32"), checks
        labels = ops.reshape(y_true, (-1,))
        checks = [labels == ops.floor(labels)] if is_float else []  # NaN: False
        labels = ops.cast(labels, "int32")
        return labels, [*checks, ops.logical_and(labels >= 0, labels < num_classes)]

    def _weights(self, sample_weight: Any, pred_rank: int, sample_shape: Any) -> Any:
        """Per-sample weights ``(N,)``: ``(B, 1)`` squeezed, ``(B,)`` broadcast over ``(B, T)``."""
        weight = ops.cast(sample_weight, self.dtype)
        sample_rank = max(pred_rank - 1, 1)
        if len(weight.shape) == sample_rank + 1 and weight.shape[-1] == 1:
            weight = ops.squeeze(weight, axis=-1)
        while 0 < len(weight.shape) < sample_rank:
            weight = ops.expand_dims(weight, -1)
        return ops.reshape(ops.broadcast_to(weight, sample_shape), (-1,))


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
    :func:`keras_ls.calibration.expected_calibration_error` (the same code
    reads, bins and reduces), up to float32 rounding (~1e-7): the sums are
    accumulated in float64 variables, so this holds over any number of
    samples and batches. On JAX that needs ``jax_enable_x64``; without it the
    accumulators are float32 (see ``docs/calibration-metrics.md``). Each
    update is O(batch): no ``(batch, num_bins)`` one-hot.

    Values that are not what the reading expects -- probabilities outside
    [0, 1], softmax rows that do not sum to 1 (sigmoid outputs without
    ``multi_label=True``), labels out of range, not integers or not 0/1,
    negative weights, NaN -- raise a ``ValueError`` when given as NumPy arrays
    (checked after the update, which then adds nothing); inside a compiled
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
