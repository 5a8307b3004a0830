"""Streaming calibration metric for Keras 3 (any backend)."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from keras_ls.calibration import (
    CalibrationBins,
    _check_bool,
    bin_edges,
    validate_num_bins,
)

__all__ = ["ExpectedCalibrationError"]


@keras.saving.register_keras_serializable(package="keras_ls")
class ExpectedCalibrationError(keras.metrics.Metric):
    """Top-label expected calibration error, accumulated over batches.

    ``ECE = sum_b (n_b / N) |acc_b - conf_b|`` over ``num_bins`` equal-width
    confidence bins on [0, 1] (Guo et al., 2017): bin ``i`` holds confidences
    in ``(i/M, (i+1)/M]`` and a confidence of 0 goes to bin 0. Three
    fixed-size variables of shape ``(num_bins,)`` hold the per-bin (weighted)
    sample counts, confidence sums and correct-prediction sums, so the result
    over any split of the data into batches equals the ECE over all of it --
    and equals :func:`keras_ls.calibration.expected_calibration_error`, which
    bins with the same rule (up to float32 rounding of the sums).

    Only ``keras.ops`` is used: it runs eagerly, under ``tf.function``, with
    ``jit_compile=True`` and on the JAX and torch backends.

    Args:
        num_bins: Number of equal-width confidence bins ``M >= 1``.
        from_logits: Whether ``y_pred`` holds logits (softmax is applied).
        name: (Optional) string name of the metric instance.
        dtype: (Optional) data type of the accumulators and of the result.

    ``y_true`` may be sparse labels of shape ``(B,)`` / ``(B, 1)`` or one-hot /
    soft targets of shape ``(B, K)`` (their argmax is used); labels are sparse
    when ``y_true`` has one dimension less than ``y_pred``, or the same rank
    with a last dimension of 1 while ``K > 1``. Leading dimensions beyond the
    batch are flattened (each position counts as one sample).

    Example:

    >>> m = ExpectedCalibrationError(num_bins=10)
    >>> m.update_state([0, 1], [[0.9, 0.1], [0.8, 0.2]])
    >>> round(float(m.result()), 6)  # (|1 - 0.9| + |0 - 0.8|) / 2
    0.45

    Usage with `compile()` API:

    ```python
    model.compile(optimizer="adam",
                  loss="sparse_categorical_crossentropy",
                  metrics=["accuracy", keras_ls.ExpectedCalibrationError()])
    ```

    (Keras passes ``sample_weight`` / ``class_weight`` only to
    ``weighted_metrics=[...]``; a metric in ``metrics=[...]`` is unweighted.)
    """

    def __init__(
        self,
        num_bins: int = 15,
        from_logits: bool = False,
        name: str = "ece",
        dtype: Any = None,
    ) -> None:
        super().__init__(name=name, dtype=dtype)
        self.num_bins = validate_num_bins(num_bins)
        self.from_logits = _check_bool(from_logits, "from_logits")
        # Interior edges i/M, the binning rule shared with keras_ls.calibration.
        self._edges = bin_edges(self.num_bins)
        self.counts = self.add_variable(
            shape=(self.num_bins,), initializer="zeros", dtype=self.dtype, name="counts"
        )
        self.confidence_sums = self.add_variable(
            shape=(self.num_bins,),
            initializer="zeros",
            dtype=self.dtype,
            name="confidence_sums",
        )
        self.correct_sums = self.add_variable(
            shape=(self.num_bins,),
            initializer="zeros",
            dtype=self.dtype,
            name="correct_sums",
        )

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        """Accumulate the per-bin statistics of one batch.

        Args:
            y_true: Sparse labels ``(B,)`` / ``(B, 1)`` or one-hot/soft ``(B, K)``.
            y_pred: Probabilities ``(B, K)`` (logits if ``from_logits=True``).
            sample_weight: Optional per-sample weights: scalar, ``(B,)``,
                ``(B, 1)``, or broadcastable to ``y_pred.shape[:-1]``.
        """
        y_pred = ops.convert_to_tensor(y_pred)
        y_true = ops.convert_to_tensor(y_true)
        pred_rank = len(y_pred.shape)
        true_rank = len(y_true.shape)
        if pred_rank < 2:
            raise ValueError(
                "`y_pred` must have shape (batch, num_classes); received shape "
                f"{tuple(y_pred.shape)}."
            )
        num_classes = y_pred.shape[-1]
        if num_classes is None:
            raise ValueError("`y_pred` must have a static number of classes (last dimension).")
        is_sparse = true_rank == pred_rank - 1 or (
            true_rank == pred_rank and y_true.shape[-1] == 1 and num_classes > 1
        )
        if not is_sparse and true_rank != pred_rank:
            raise ValueError(
                f"`y_true` must be sparse labels (rank {pred_rank - 1}, or last dimension "
                f"1) or one-hot with the shape of `y_pred` {tuple(y_pred.shape)}; "
                f"received shape {tuple(y_true.shape)}."
            )

        sample_shape = ops.shape(y_pred)[:-1]  # batch (+ e.g. time) dimensions
        y_pred = ops.reshape(ops.cast(y_pred, self.dtype), (-1, num_classes))
        if self.from_logits:
            y_pred = ops.softmax(y_pred, axis=-1)
        if is_sparse:
            labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        else:
            labels = ops.cast(ops.argmax(ops.reshape(y_true, (-1, num_classes)), axis=-1), "int32")

        conf = ops.max(y_pred, axis=-1)
        correct = ops.cast(
            ops.equal(ops.cast(ops.argmax(y_pred, axis=-1), "int32"), labels), self.dtype
        )
        edges = ops.convert_to_tensor(self._edges.astype(self.dtype), dtype=self.dtype)
        # Bin index = number of interior edges strictly below the confidence.
        idx = ops.sum(
            ops.cast(ops.greater(ops.expand_dims(conf, 1), ops.expand_dims(edges, 0)), "int32"),
            axis=1,
        )
        in_bin = ops.one_hot(idx, self.num_bins, dtype=self.dtype)  # (N, M)

        if sample_weight is None:
            weight = ops.ones_like(conf)
        else:
            weight = ops.cast(ops.convert_to_tensor(sample_weight), self.dtype)
            # (B, 1) -> (B,); (B,) with y_pred (B, T, K) -> (B, 1) -> broadcast (B, T).
            if len(weight.shape) == pred_rank and weight.shape[-1] == 1:
                weight = ops.squeeze(weight, axis=-1)
            while 0 < len(weight.shape) < pred_rank - 1:
                weight = ops.expand_dims(weight, -1)
            weight = ops.reshape(ops.broadcast_to(weight, sample_shape), (-1,))
        # Elementwise products and sums, not matmul: TF32 matmuls on GPUs
        # would round the per-bin sums.
        w_bins = ops.expand_dims(weight, 1) * in_bin
        self.counts.assign_add(ops.sum(w_bins, axis=0))
        self.confidence_sums.assign_add(ops.sum(ops.expand_dims(conf, 1) * w_bins, axis=0))
        self.correct_sums.assign_add(ops.sum(ops.expand_dims(correct, 1) * w_bins, axis=0))

    def result(self) -> Any:
        # (n_b/N)|acc_b - conf_b| == |correct_sum_b - conf_sum_b| / N; 0 before any data.
        gaps = ops.sum(ops.abs(self.correct_sums - self.confidence_sums))
        return ops.divide_no_nan(gaps, ops.sum(self.counts))

    def reset_state(self) -> None:
        for v in self.variables:
            v.assign(ops.zeros(v.shape, dtype=v.dtype))

    def bins(self) -> CalibrationBins:
        """The accumulated per-bin statistics as float64 numpy arrays.

        Useful to draw a reliability diagram from a streamed evaluation.
        """
        return CalibrationBins(
            *(
                np.asarray(ops.convert_to_numpy(v), dtype=np.float64)
                for v in (self.counts, self.confidence_sums, self.correct_sums)
            )
        )

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"num_bins": self.num_bins, "from_logits": self.from_logits})
        return config


# Importing any Keras-side keras-ls module registers every keras-ls class with Keras.
import keras_ls  # noqa: E402

keras_ls.register_serializables()
