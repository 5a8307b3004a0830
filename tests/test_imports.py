"""Import in any order, on any backend: public names x backends x import orders, fresh processes.

Every public name of ``keras_ls`` works as the first line of a script, before or after
``import keras``, and ``keras.saving.load_model`` then finds the keras-ls classes (a model
saved by keras-ls 0.1 loads); ``import keras_ls.smoothing`` (what ``detection/`` uses) loads
no framework.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import keras_ls

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "v0_2_multi_loss.keras"
BACKENDS = ("tensorflow", "jax", "torch")
NAMES = sorted(keras_ls.__all__)

# Registered with Keras serialization: what `load_model` looks up.
REGISTERED = """
import keras
from keras.src.saving.object_registration import GLOBAL_CUSTOM_OBJECTS as registered
want = ["SmoothedCE", "SmoothedBCE", "ConfidencePenaltyCE", "SmoothedDice", "OnlineSmoothedCE",
        "OnlineSoftTargets", "ExpectedCalibrationError", "Cosine"]
missing = [n for n in want if "keras_ls>" + n not in registered]
assert not missing, missing
print("OK", keras.backend.backend())
"""
CHECK = f"""
import keras
m = keras.saving.load_model({str(FIXTURE)!r})
assert type(m.loss["a"]).__name__ == "SmoothedCE", m.loss
o = keras.saving.load_model({str(FIXTURE.with_name("v0_2_online.keras"))!r})
assert type(o.loss).__name__ == "OnlineSmoothedCE"
print("OK", keras.backend.backend())
"""


def _python(code: str, backend: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _run_all(jobs: dict[str, tuple[str, str]]) -> dict[str, subprocess.CompletedProcess]:
    with ThreadPoolExecutor(max_workers=2) as pool:  # the machine has two cores
        futures = {key: pool.submit(_python, code, be) for key, (code, be) in jobs.items()}
        return {key: f.result() for key, f in futures.items()}


def _assert_ok(results: dict[str, subprocess.CompletedProcess]) -> None:
    failed = {
        key: r.stderr[-1500:]
        for key, r in results.items()
        if r.returncode != 0 or "OK" not in r.stdout
    }
    assert not failed, "\n\n".join(f"== {k}\n{v}" for k, v in failed.items())


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_every_public_name_as_the_first_line(backend):
    jobs = {name: (f"from keras_ls import {name}\n{REGISTERED}", backend) for name in NAMES}
    jobs["import keras_ls.losses"] = (f"import keras_ls.losses\n{CHECK}", backend)
    _assert_ok(_run_all(jobs))


@pytest.mark.slow
def test_keras_first_and_keras_ls_first_then_load():
    names = ", ".join(NAMES)
    jobs = {}
    for backend in BACKENDS:
        # keras first, then every name
        jobs[f"keras first, {backend}"] = (
            f"import keras\nfrom keras_ls import {names}\n{CHECK}",
            backend,
        )
        # keras_ls first (no Keras loaded), keras later, nothing else from keras_ls
        jobs[f"keras_ls first, {backend}"] = (
            "import sys, keras_ls\nassert 'keras' not in sys.modules\n" + CHECK,
            backend,
        )
        # only the framework-free part before Keras
        jobs[f"smoothing first, {backend}"] = (
            "from keras_ls.smoothing import mix\nfrom keras_ls import schedules\n" + CHECK,
            backend,
        )
    _assert_ok(_run_all(jobs))


def test_framework_free_modules_load_no_framework():
    code = (
        "import sys\n"
        "import keras_ls, keras_ls.smoothing, keras_ls.schedules, keras_ls.calibration\n"
        "import keras_ls.noise, keras_ls.datasets\n"
        "loaded = sorted(m for m in ('keras', 'tensorflow', 'torch', 'jax') if m in sys.modules)\n"
        "assert not loaded, loaded\n"
        "print('OK')\n"
    )
    _assert_ok({"framework-free": _python(code, "tensorflow")})
