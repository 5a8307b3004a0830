"""Reference implementations and helpers shared by the core tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def np_log_softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    z = np.asarray(z, np.float64)
    m = z.max(axis=axis, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=axis, keepdims=True))


def np_smoothed_ce(labels, logits, a, *, axis=-1, ignore_class=None, prior=None):
    """float64 reference: mean over non-ignored positions of -sum(t * log p)."""
    logits = np.moveaxis(np.asarray(logits, np.float64), axis, -1)
    k = logits.shape[-1]
    labels = np.asarray(labels)
    valid = np.ones(labels.shape, bool) if ignore_class is None else labels != ignore_class
    safe = np.where(valid, labels, 0).astype(int)
    onehot = np.eye(k)[safe]
    p = np.full(k, 1.0 / k) if prior is None else np.asarray(prior, np.float64)
    target = (1 - a) * onehot + a * p
    per = -(target * np_log_softmax(logits)).sum(-1)
    n = valid.sum()
    return 0.0 if n == 0 else float((per * valid).sum() / n)


def run_python(code: str, env: dict | None = None, timeout: int = 600) -> str:
    """Run ``code`` in a fresh interpreter (e.g. another KERAS_BACKEND)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise AssertionError(f"subprocess failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc.stdout
