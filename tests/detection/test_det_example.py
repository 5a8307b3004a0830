"""Smoke test of examples/yolo_finetune.py with tiny settings, offline, in a subprocess."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_ultralytics_assets_ship_offline():
    from ultralytics.utils import ASSETS

    assert {"bus.jpg", "zidane.jpg"} <= {p.name for p in Path(ASSETS).iterdir()}


@pytest.mark.slow
def test_yolo_finetune_example_runs(coco128, tmp_path):
    env = {**os.environ, "YOLO_CONFIG_DIR": str(tmp_path / "cfg"), "YOLO_OFFLINE": "1"}
    cmd = [
        sys.executable,
        str(REPO / "examples" / "yolo_finetune.py"),
        "--coco128",
        str(coco128),
        "--imgsz",
        "64",
        "--max-images",
        "8",
        "--epochs",
        "1",
        "--finetune-epochs",
        "2",
        "--label-smoothing",
        "0.2",
        "--final",
        "0.0",
        "--schedule",
        "linear",
        "--out",
        str(tmp_path / "work"),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    assert "label_smoothing per epoch [0.2, 0.0]" in out
    assert re.search(r"\[4/5\] val mAP50-95=\d\.\d{4}", out)
    assert re.search(r"\[5/5\] bus\.jpg: \d+ boxes", out)
    assert re.search(r"\[5/5\] zidane\.jpg: \d+ boxes", out)
    assert (tmp_path / "work" / "runs" / "finetune" / "weights" / "best.pt").is_file()
    assert (tmp_path / "cfg" / "Ultralytics" / "Arial.ttf").is_file()  # offline() font, local
