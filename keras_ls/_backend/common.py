"""Numerics shared by every backend's kernel (framework-free)."""

from __future__ import annotations

from typing import Any

from keras_ls.smoothing import mix

_COMPUTE = {"float16": "float32", "bfloat16": "float32", "float32": "float32", "float64": "float64"}


def compute_dtype_name(dtype: str) -> str:
    """float32 for float16/bfloat16/float32 logits, float64 for float64."""
    try:
        return _COMPUTE[dtype]
    except KeyError:
        raise TypeError(
            f"`logits` must be a floating-point tensor (float16, bfloat16, float32 or "
            f"float64); received dtype {dtype}."
        ) from None


# The smoothing term <prior, z - max> may be summed over the raw logits
# (<prior, z> - max: a plain, fast reduction on XLA:CPU) only when every row has
# |max| <= RAW_SUM_GUARD * <prior, max - z>. The raw sum's rounding error is
# then at most (1 + RAW_SUM_GUARD) times the shifted sum's, both float32
# rounding of the logits' spread; a large common offset (equal logits at 1e4,
# logits drifting together) fails the guard and gets the shifted sum.
RAW_SUM_GUARD = 4.0


def combine(lp_y: Any, lp_bar: Any, a: Any, lowest: float, maximum: Any) -> Any:
    """``-mix(log p_y, <prior, log p>, a)`` from the two per-row terms.

    Each term is saturated at the dtype's lowest finite value: a log-probability
    below it (a logit spread over the float range, or a ``-inf`` logit) would
    otherwise turn ``0 * -inf`` into NaN at ``a = 0`` or ``a = 1``.
    ``maximum(x, lowest)`` is the backend's elementwise max with a scalar.
    """
    return -mix(maximum(lp_y, lowest), maximum(lp_bar, lowest), a)
