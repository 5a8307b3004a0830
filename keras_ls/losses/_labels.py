"""The one label path of every keras-ls loss: (y_true, y_pred, axis, ignore_class) -> one form.

Every loss (``SmoothedCE``, ``SmoothedBCE``, ``ConfidencePenaltyCE``, ``SmoothedDice``,
``OnlineSmoothedCE``) calls :func:`canonicalize` (or :func:`binary_targets` for the
binary loss) and nothing else decides what ``y_true`` means. The rule:

- ``y_pred``'s class axis (``axis``) is moved last; ``K`` is its size.
- ``y_true`` holds **integer labels** when its shape is ``y_pred``'s without the class axis,
  or with a class axis of size 1 while ``K > 1``: ``(B,)`` or ``(B, 1)`` for ``(B, K)``,
  ``(B, T)`` for ``(B, T, K)``, ``(B, H, W)`` for ``(B, H, W, K)``.
- ``y_true`` holds **dense targets** (one-hot, or soft labels from MixUp/CutMix) when it has
  ``y_pred``'s shape.
- Anything else is a ``ValueError`` naming both shapes (never a broadcast).

Integer labels must be integers in ``[0, K)`` or equal to ``ignore_class``. A float label
dtype that cannot hold every class id exactly (bfloat16 above 256, float16 above 2048) is a
``ValueError`` naming the dtype. Out-of-range or non-integer labels raise a ``ValueError``
naming the label and ``K`` when the loss runs eagerly; inside a compiled step (``tf.function``,
XLA, ``jax.jit``, ``torch.compile``), where no backend can raise, the loss is NaN at those
positions, so ``keras.callbacks.TerminateOnNaN`` stops the run instead of training on a
plausible value.

``ignore_class`` positions get loss 0 and a Keras mask, so ``Loss.__call__`` averages over
the other positions only (globally under ``tf.distribute``: see ``_base.global_masked_mean``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
from keras import ops

from keras_ls import _compat
from keras_ls.smoothing import validate_prior

__all__ = [
    "Labels",
    "binary_targets",
    "canonicalize",
    "check_axis",
    "check_ignore_class",
    "check_prior",
    "log_probs",
]

# Largest integer n such that every integer in [0, n] is exact in the dtype.
_MAX_EXACT_INT = {"float16": 2**11, "bfloat16": 2**8, "float32": 2**24, "float64": 2**53}


def check_ignore_class(ignore_class: Any) -> int | None:
    """``ignore_class`` as an ``int`` (or None); raises TypeError for anything else."""
    if ignore_class is None:
        return None
    if isinstance(ignore_class, bool) or not isinstance(ignore_class, (int, np.integer)):
        raise TypeError(
            f"`ignore_class` must be an integer label or None; received {ignore_class!r}."
        )
    return int(ignore_class)


def check_axis(axis: Any, ndim: int | None = None) -> int:
    """``axis`` as an int; with ``ndim``, range-checked and made non-negative."""
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"`axis` must be an integer; received {axis!r}.")
    if ndim is None:
        return int(axis)
    if not -ndim <= axis < ndim:
        raise ValueError(f"`axis`={axis} is out of range for `y_pred` of rank {ndim}.")
    return int(axis) % ndim


def check_prior(prior: Any, num_classes: int | None, axis: int = -1) -> np.ndarray | None:
    """``prior`` checked by :func:`~keras_ls.smoothing.validate_prior` and against the ``K``
    of ``y_pred`` (when known); None stays None (uniform)."""
    prior = validate_prior(prior)
    if prior is not None and num_classes is not None and prior.size != num_classes:
        raise ValueError(
            f"`prior` has {prior.size} entries but `y_pred` has {num_classes} classes on "
            f"axis {axis}."
        )
    return prior


def log_probs(y_pred: Any, from_logits: bool) -> Any:
    """Log-probabilities along the last axis.

    Logits go through ``log_softmax`` (finite for any finite logits); probabilities get
    the same normalise/clip/log as Keras' cross-entropy.
    """
    if from_logits:
        return ops.log_softmax(y_pred, axis=-1)
    eps = keras.config.epsilon()
    y_pred = y_pred / ops.sum(y_pred, axis=-1, keepdims=True)
    return ops.log(ops.clip(y_pred, eps, 1.0 - eps))


@dataclass
class Labels:
    """``y_true`` and ``y_pred`` in canonical form (class axis last).

    Attributes:
        y_pred: predictions with the class axis moved last.
        num_classes: ``K`` (static; None if unknown).
        sparse: whether ``y_true`` held integer labels.
        labels: int32 labels, shape ``y_pred.shape[:-1]``; ignored and invalid positions
            hold 0 so that gathers stay in bounds (sparse only).
        target: dense targets cast to ``y_pred``'s dtype, class axis last (dense only).
        valid: bool mask, False at ``ignore_class`` positions (None without it).
        invalid: bool mask, True where a label is out of range or not an integer (None when
            the labels were checked eagerly, or for dense targets).
    """

    y_pred: Any
    num_classes: int | None
    sparse: bool
    labels: Any = None
    target: Any = None
    valid: Any = None
    invalid: Any = None

    def at_labels(self, values: Any) -> Any:
        """``values`` (class axis last) at each position's label, e.g. ``log p_y`` (sparse only)."""
        picked = ops.take_along_axis(values, ops.expand_dims(self.labels, -1), axis=-1)
        return ops.squeeze(picked, -1)

    def finish(self, loss: Any) -> Any:
        """Per-position ``loss``: NaN at invalid labels; 0 and a Keras mask at ignored ones.

        The mask makes a Keras reduction (``Loss.__call__``) average over the other
        positions, as Keras' own ``ignore_class`` does.
        """
        if self.invalid is not None:
            loss = ops.where(self.invalid, ops.cast(float("nan"), loss.dtype), loss)
        if self.valid is None:
            return loss
        loss = ops.where(self.valid, loss, ops.zeros_like(loss))
        _compat.set_keras_mask(loss, self.valid)
        return loss


def canonicalize(
    y_true: Any,
    y_pred: Any,
    *,
    axis: int = -1,
    ignore_class: int | None = None,
    dense: bool = True,
    min_rank: int = 1,
) -> Labels:
    """Apply the module's rule to one ``(y_true, y_pred)`` pair.

    Args:
        y_true: integer labels or dense targets (see the module docstring).
        y_pred: predictions, class axis ``axis``.
        axis: the class axis of ``y_pred``.
        ignore_class: optional integer label to leave out (integer labels only).
        dense: whether this loss accepts dense targets.
        min_rank: the smallest rank of ``y_pred`` this loss accepts (2 for a
            ``(B, ..., K)`` loss that needs a batch axis).
    """
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.convert_to_tensor(y_true)
    ndim = len(y_pred.shape)
    if ndim < max(min_rank, 1):
        need = (
            "a batch and a class axis, e.g. (B, K) or (B, H, W, K)"
            if min_rank > 1
            else ("a class axis")
        )
        raise ValueError(f"`y_pred` must have {need}; received shape {tuple(y_pred.shape)}.")
    axis = check_axis(axis, ndim)
    t_shape, p_shape = tuple(y_true.shape), tuple(y_pred.shape)
    num_classes = p_shape[axis]
    if axis != ndim - 1:
        y_pred = ops.moveaxis(y_pred, axis, -1)
    rest = p_shape[:axis] + p_shape[axis + 1 :]
    if len(t_shape) == ndim - 1:
        sparse_shape = t_shape
    elif len(t_shape) == ndim and t_shape[axis] == 1 and num_classes != 1:
        sparse_shape = t_shape[:axis] + t_shape[axis + 1 :]
    elif len(t_shape) == ndim and _dims_match(t_shape, p_shape):
        if not dense:
            raise ValueError(
                "This loss takes integer labels of shape `y_pred.shape` without the class "
                f"axis {axis} (optionally with a size-1 class axis); received "
                f"y_true.shape={t_shape}, y_pred.shape={p_shape}."
            )
        if ignore_class is not None:
            raise ValueError(
                "`ignore_class` applies to integer labels; received dense labels of "
                f"shape {t_shape} for `y_pred` of shape {p_shape}."
            )
        if axis != ndim - 1:
            y_true = ops.moveaxis(y_true, axis, -1)
        return Labels(y_pred, num_classes, False, target=ops.cast(y_true, y_pred.dtype))
    else:
        raise ValueError(
            "`y_true` fits neither integer labels (shape of `y_pred` without the class "
            f"axis {axis}, optionally with a size-1 class axis) nor one-hot/soft labels (shape "
            f"of `y_pred`); received y_true.shape={t_shape}, y_pred.shape={p_shape}."
        )
    if not _dims_match(sparse_shape, rest):
        raise ValueError(
            "Integer `y_true` must match `y_pred` without its class axis; received "
            f"y_true.shape={t_shape}, y_pred.shape={p_shape} (class axis {axis})."
        )
    if len(t_shape) == ndim:
        y_true = ops.squeeze(y_true, axis=axis)
    return _integer_labels(y_true, y_pred, num_classes, ignore_class)


def binary_targets(y_true: Any, y_pred: Any) -> tuple[Any, Any]:
    """Targets for a binary / multi-label loss: ``y_true`` with ``y_pred``'s shape.

    The binary rule (Keras' ``BinaryCrossentropy`` accepts the same): ``y_true`` has
    ``y_pred``'s shape, or ``y_pred``'s shape without a trailing 1 (``(B,)`` labels for a
    ``(B, 1)`` sigmoid output). Returns ``(targets, y_pred)``, targets in ``y_pred``'s dtype.
    """
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.convert_to_tensor(y_true)
    t_shape, p_shape = tuple(y_true.shape), tuple(y_pred.shape)
    if len(p_shape) >= 1 and p_shape[-1] == 1 and _dims_match(t_shape, p_shape[:-1]):
        y_true = ops.expand_dims(y_true, -1)
    elif not _dims_match(t_shape, p_shape):
        raise ValueError(
            "`y_true` must have the shape of `y_pred` (or that shape without a trailing 1) "
            f"for a binary loss; received y_true.shape={t_shape}, y_pred.shape={p_shape}."
        )
    return ops.cast(y_true, y_pred.dtype), y_pred


def _dims_match(a: tuple, b: tuple) -> bool:
    return len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a, b))


def _integer_labels(y_true: Any, y_pred: Any, num_classes: Any, ignore_class: int | None) -> Labels:
    dtype = keras.backend.standardize_dtype(y_true.dtype)
    if dtype in _MAX_EXACT_INT:
        biggest = _MAX_EXACT_INT[dtype]
        needed = max((num_classes or 1) - 1, abs(ignore_class) if ignore_class is not None else 0)
        if needed > biggest:
            raise ValueError(
                f"`y_true` holds labels as {dtype}, which represents integers exactly only up "
                f"to {biggest}; labels up to {needed} ({num_classes} classes"
                f"{'' if ignore_class is None else f', ignore_class={ignore_class}'}) would be "
                "rounded to other classes. Pass integer labels (e.g. int32)."
            )
    elif dtype == "bool":
        y_true = ops.cast(y_true, "int32")
        dtype = "int32"
    elif not dtype.startswith(("int", "uint")):
        raise TypeError(f"`y_true` must hold integer labels; received dtype {dtype}.")
    k = num_classes if num_classes is not None else ops.shape(y_pred)[-1]
    valid = None if ignore_class is None else ops.not_equal(y_true, ignore_class)
    if dtype in _MAX_EXACT_INT:
        return _float_labels(y_true, y_pred, num_classes, k, ignore_class, valid)
    # Ignored positions hold 0 (in range for any K >= 1): the gathers stay in bounds and
    # the range check below needs no mask.
    labels = y_true if valid is None else ops.where(valid, y_true, 0)
    invalid = None
    bounds = _host_bounds(labels)  # checked before the int32 cast, which could wrap around
    if bounds is None:  # compiled or traced: NaN at invalid labels (see Labels.finish)
        invalid = ops.logical_or(ops.less(labels, 0), ops.greater_equal(labels, k))
        labels = ops.where(invalid, 0, labels)
    elif bounds[0] < 0 or bounds[1] >= k:
        ok = ops.logical_and(ops.greater_equal(labels, 0), ops.less(labels, k))
        _raise_if_invalid(y_true, ok, num_classes, ignore_class)
    if dtype != "int32":
        labels = ops.cast(labels, "int32")
    return Labels(y_pred, num_classes, True, labels=labels, valid=valid, invalid=invalid)


def _float_labels(
    y_true: Any, y_pred: Any, num_classes: Any, k: Any, ignore_class: int | None, valid: Any
) -> Labels:
    """Labels held as floats (rare): elementwise checks, so that NaN labels fail too."""
    in_range = ops.logical_and(ops.greater_equal(y_true, 0), ops.less(y_true, k))
    in_range = ops.logical_and(in_range, ops.equal(y_true, ops.floor(y_true)))
    ok = in_range if valid is None else ops.logical_or(in_range, ops.logical_not(valid))
    all_ok = _host_value(ops.all(ok))
    invalid = None
    if all_ok is None:
        invalid = ops.logical_not(ok)
        keep = ops.logical_and(ok, in_range)
    else:
        if not all_ok:
            _raise_if_invalid(y_true, ok, num_classes, ignore_class)
        keep = in_range  # every valid label is in range here
    labels = ops.where(keep, ops.cast(y_true, "int32"), 0)
    return Labels(y_pred, num_classes, True, labels=labels, valid=valid, invalid=invalid)


def _traced(x: Any) -> bool:
    """True when ``x`` has no value now: a symbolic Keras tensor, or a tensor of a compiled
    or transformed function (``tf.function``, ``jax.jit``/``grad``/``vmap``/``checkpoint``,
    ``torch.compile``, ``torch.func``).

    Decided on the value that would be read, not on ``y_true``: inside ``jax.jit`` every
    operation is staged out, so a closed-over (concrete) label array gives traced results.
    """
    if keras.backend.is_keras_tensor(x):
        return True
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return not tf.executing_eagerly()
    if backend == "jax":
        import jax

        return isinstance(x, jax.core.Tracer)
    if backend == "torch":
        import torch

        return torch.compiler.is_compiling() or _compat.torch_func_wrapped(x)
    return False


def _host_value(x: Any) -> Any:
    """``x`` (a scalar or small vector) on the host, or None where it has no value now."""
    if _traced(x):
        return None
    return np.asarray(ops.convert_to_numpy(x)).tolist()


def _host_bounds(labels: Any) -> tuple[int, int] | None:
    """``(min, max)`` of integer ``labels``: one fused reduction, one host read.

    None inside a compiled or transformed function (checked on the reduction's result,
    see :func:`_traced`). Empty labels give ``(0, 0)``.
    """
    if _traced(labels):
        return None
    if not _num_elements(labels):
        return (0, 0)
    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        lo, hi = torch.aminmax(labels)
        lo, hi = torch.stack((lo, hi)).tolist()  # the one host read
        return int(lo), int(hi)
    if backend == "jax":
        bounds = _jax_bounds()(labels)
    else:
        bounds = ops.stack([ops.min(labels), ops.max(labels)])
    values = _host_value(bounds)  # None when the reduction was staged out (jax.jit)
    return None if values is None else (int(values[0]), int(values[1]))


def _num_elements(x: Any) -> int:
    size = 1
    for d in x.shape:
        size *= 1 if d is None else int(d)
    return size


_JAX_BOUNDS: list = []


def _jax_bounds() -> Any:
    """One jitted ``[min, max]`` (a single dispatch eagerly; inlined under an outer trace)."""
    if not _JAX_BOUNDS:
        import jax
        import jax.numpy as jnp

        _JAX_BOUNDS.append(jax.jit(lambda y: jnp.stack([jnp.min(y), jnp.max(y)])))
    return _JAX_BOUNDS[0]


def _raise_if_invalid(y_true: Any, ok: Any, num_classes: Any, ignore_class: int | None) -> None:
    if bool(ops.convert_to_numpy(ops.all(ok))):  # one scalar to the host
        return
    ok = np.asarray(ops.convert_to_numpy(ok))
    values = np.asarray(ops.convert_to_numpy(y_true))
    first = tuple(int(i) for i in np.argwhere(~ok)[0])
    bad = values[first].item()
    what = f"[0, {num_classes})" + ("" if ignore_class is None else f" or {ignore_class}")
    raise ValueError(
        f"`y_true` holds label {bad!r} at index {first}, outside {what} "
        f"({int((~ok).sum())} such label(s)); `y_pred` has {num_classes} classes. "
        "Labels must be integer class ids."
    )
