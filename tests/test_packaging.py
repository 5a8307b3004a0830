"""The wheel: both packages, the licence, no build warnings, and it works outside the repository."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-w", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (whl,) = out.glob("keras_ls-*.whl")
    return whl, proc.stdout + proc.stderr


def test_wheel_holds_both_packages_and_the_licence(wheel):
    whl, log = wheel
    assert "Deprecat" not in log, log  # e.g. setuptools' licence-table warning
    names = zipfile.ZipFile(whl).namelist()
    for needed in (
        "keras_ls/__init__.py",
        "keras_ls/losses/_labels.py",
        "keras_ls/_backend/__init__.py",
        "detection/trainer.py",
        "detection/cli.py",
    ):
        assert needed in names, needed
    assert not any(n.startswith(("tests/", "benchmarks/", "examples/")) for n in names)
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(whl).read(meta).decode()
    assert "License-Expression: Apache-2.0" in text
    lic = next(n for n in names if n.endswith("licenses/LICENSE"))
    assert b"Apache License" in zipfile.ZipFile(whl).read(lic)


def test_installed_wheel_works_outside_the_repository(wheel, tmp_path):
    whl, _ = wheel
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(site), str(whl)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    code = (
        "import numpy as np, keras_ls, detection\n"
        f"assert keras_ls.__file__.startswith({str(site)!r}), keras_ls.__file__\n"
        f"assert detection.__file__.startswith({str(site)!r}), detection.__file__\n"
        "v = keras_ls.SmoothedCE(0.1, from_logits=True)([1], np.array([[0.0, 2.0, 0.0]]))\n"
        "assert abs(float(v) - 0.3729) < 1e-4, float(v)\n"
        "assert detection.SmoothingConfig(0.1).label_smoothing == 0.1\n"
        "print('OK')\n"
    )
    env = dict(os.environ, PYTHONPATH=str(site), TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr[-3000:]
