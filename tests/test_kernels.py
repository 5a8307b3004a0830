"""The fused sparse kernels (``keras_ls._backend``) on TF, JAX and torch.

Every check lives in ``kernel_checks.py`` and compares with a numpy float64
reference (forward and analytic gradient). TensorFlow runs them in this
process; JAX and torch each run all of them once in a fresh interpreter
(``KERAS_BACKEND`` is read at import), and each check is reported here as its
own test. torch is also compared with ``F.cross_entropy(label_smoothing=a)``.
"""

from __future__ import annotations

import json

import keras
import pytest
from kernel_checks import CHECKS, run_all
from ls_reference import run_python

_SUBPROCESS = r"""
import json, sys
sys.path.insert(0, "tests")
from kernel_checks import run_all
results = run_all()
if BACKEND == "torch":
    from torch_extra import run_torch_extra
    results.update(run_torch_extra())
print("RESULTS" + json.dumps(results))
"""


@pytest.fixture(scope="module")
def subprocess_results():
    cache: dict[str, dict] = {}

    def get(backend: str) -> dict:
        if backend not in cache:
            code = f"BACKEND = {backend!r}\n" + _SUBPROCESS
            out = run_python(code, env={"KERAS_BACKEND": backend})
            line = [x for x in out.splitlines() if x.startswith("RESULTS")][-1]
            cache[backend] = json.loads(line[len("RESULTS") :])
        return cache[backend]

    return get


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TF runs in-process")
@pytest.mark.parametrize("name", sorted(CHECKS))
def test_tensorflow(name):
    result = run_all([name])[name]
    assert result == "ok", result


@pytest.mark.parametrize("name", sorted(CHECKS))
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_backend(subprocess_results, backend, name):
    result = subprocess_results(backend)[name]
    assert result == "ok", result


TORCH_EXTRA = [
    "torch_matches_f_cross_entropy",
    "torch_retain_graph",
    "torch_in_place_only_when_safe",
    "torch_compile_no_break",
]


@pytest.mark.parametrize("name", TORCH_EXTRA)
def test_torch_extra(subprocess_results, name):
    result = subprocess_results("torch")[name]
    assert result == "ok", result


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TF runs in-process")
def test_public_loss_is_exact_at_equal_large_logits():
    """Through SmoothedCE (the wiring): equal logits 1e4 give ln 2, not 0.693359."""
    import math

    import numpy as np

    from keras_ls import SmoothedCE

    z = np.array([[1e4, 1e4], [-1e4, -1e4]], np.float32)
    got = float(SmoothedCE(0.1, from_logits=True)(np.array([0, 1]), z))
    assert abs(got - math.log(2.0)) <= 1e-7, got
