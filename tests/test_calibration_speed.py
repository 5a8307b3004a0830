"""Smoke test of benchmarks/calibration_speed.py (--quick, in a fresh interpreter)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest
from ls_reference import ROOT

spec = importlib.util.spec_from_file_location(
    "calibration_speed", ROOT / "benchmarks" / "calibration_speed.py"
)
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_reference_is_the_guo_ece():
    """The benchmark's own float64 reference agrees with the hand-computed example."""
    import numpy as np

    probs = np.array([[0.9, 0.1], [0.8, 0.2]], dtype=np.float32)
    ref = bench.reference(probs, np.array([0, 1]), 10)
    assert ref["ece"] == pytest.approx(0.45, abs=1e-7)
    assert ref["mce"] == pytest.approx(0.8, abs=1e-7)


@pytest.mark.slow
def test_quick_run_writes_results(tmp_path):
    # find_spec, not importorskip: torchmetrics imported after TensorFlow segfaults.
    for peer in ("torchmetrics", "netcal"):
        if importlib.util.find_spec(peer) is None:
            pytest.skip(f"{peer} is not installed")
    subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "calibration_speed.py"), "--quick",
         "--out", str(tmp_path)],
        cwd=ROOT, check=True, capture_output=True, text=True, timeout=900,
    )
    result = json.loads((tmp_path / "calibration_speed.json").read_text())
    assert (tmp_path / "calibration_speed.md").read_text() == bench.markdown(result)
    ref = result["reference"]
    ours = {**result["function"]["values"], **result["metric"]["values"]}
    for name, value in ours.items():
        if name.startswith(("netcal", "torchmetrics")):
            continue
        want = ref["mce"] if "mce" in name else ref["ece"]
        assert value == pytest.approx(want, abs=1e-6), name
    times = result["metric"]["times_ms"]
    assert {"update, 1 call", "tm update, 1 call", "update in XLA step, 1 call"} <= set(times)
