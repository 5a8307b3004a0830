"""SmoothingConfig: the one place the four smoothing keys are validated; light imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from detection.config import KEYS, MODES, SmoothingConfig, pop_config
from keras_ls.schedules import START_END_NAMES

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "ultralytics", "tensorflow", "keras")


def _fresh(code: str) -> str:
    """Run ``code`` in a fresh interpreter (repo on the path); its last stdout line."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("KERAS_LS_OFFLINE", None)  # that one imports Ultralytics on `import detection`
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=120
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout.strip().splitlines()[-1]


def test_config_and_package_import_nothing_heavy():
    code = (
        "import sys, json\n"
        "import detection.config\n"
        f"after_config = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
        "import detection, detection.cli\n"
        "c = detection.SmoothingConfig(0.2, 'uniform', 'step', 0.0)\n"
        f"after_all = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
        "print(json.dumps([after_config, after_all, c.factor(3, 4)]))\n"
    )
    after_config, after_all, factor = json.loads(_fresh(code))
    assert after_config == [] and after_all == []
    assert factor == 0.0


def test_fields_are_the_keys_with_defaults_and_help():
    assert KEYS == (
        "label_smoothing",
        "label_smoothing_mode",
        "label_smoothing_schedule",
        "label_smoothing_final",
    )
    assert tuple(f.name for f in fields(SmoothingConfig)) == KEYS
    assert {f.name: f.default for f in fields(SmoothingConfig)} == {
        "label_smoothing": 0.1,
        "label_smoothing_mode": "uniform",
        "label_smoothing_schedule": "constant",
        "label_smoothing_final": None,
    }
    assert all(len(f.metadata["help"]) > 20 for f in fields(SmoothingConfig))
    assert SmoothingConfig().as_dict() == {
        "label_smoothing": 0.1,
        "label_smoothing_mode": "uniform",
        "label_smoothing_schedule": "constant",
        "label_smoothing_final": 0.1,
    }


@pytest.mark.parametrize(
    "name, factors",
    [
        ("constant", [0.3, 0.3, 0.3, 0.3, 0.3]),
        ("linear", [0.3, 0.225, 0.15, 0.075, 0.0]),
        ("cosine", [0.3, 0.2560660171779821, 0.15, 0.04393398282201788, 0.0]),
        ("step", [0.3, 0.3, 0.0, 0.0, 0.0]),
        ("piecewise", [0.3, 0.3, 0.0, 0.0, 0.0]),
        ("STEP", [0.3, 0.3, 0.0, 0.0, 0.0]),
    ],
)
def test_schedules_by_name(name, factors):
    final = 0.3 if name == "constant" else 0.0
    config = SmoothingConfig(0.3, "uniform", name, final)
    # Stored as given (lower-cased): a 0.1.0 checkpoint's "step" stays "step".
    assert config.label_smoothing_schedule == name.lower()
    got = [config.factor(e, 5) for e in range(5)]
    assert got == pytest.approx(factors, abs=1e-12)


@pytest.mark.parametrize(
    "kw, err, match",
    [
        (dict(label_smoothing=1.5), ValueError, r"`label_smoothing` must be a finite number"),
        (dict(label_smoothing=True), TypeError, r"`label_smoothing` must be a real number"),
        (dict(label_smoothing_mode="soft"), ValueError, r"`label_smoothing_mode` must be one of"),
        (dict(label_smoothing_mode=None), ValueError, r"`label_smoothing_mode` must be one of"),
        (
            dict(label_smoothing_schedule="warmup"),  # a schedule, but no start/end form
            ValueError,
            r"`label_smoothing_schedule` must be one of constant, linear, cosine, piecewise, "
            r"step; received 'warmup'",
        ),
        (dict(label_smoothing_schedule="exp"), ValueError, r"`label_smoothing_schedule` must be"),
        (dict(label_smoothing_final=0.3), ValueError, r"schedule='constant'"),
        (
            dict(label_smoothing_final=2.0, label_smoothing_schedule="linear"),
            ValueError,
            r"`label_smoothing_final` must be a finite number",
        ),
    ],
)
def test_bad_values_name_the_key(kw, err, match):
    with pytest.raises(err, match=match):
        SmoothingConfig(**kw)


def test_modes_and_schedule_names_come_from_one_place():
    assert MODES == ("uniform", "yolov5")
    for name in START_END_NAMES:  # every start/end schedule of keras_ls is accepted
        SmoothingConfig(0.1, "uniform", name, 0.1)


def test_pop_config_removes_the_keys_and_reads_strings():
    overrides = {"epochs": 3, "label_smoothing": "0.2", "label_smoothing_final": "none"}
    cfg = {"label_smoothing_schedule": "linear", "label_smoothing_mode": None}
    config = pop_config(cfg, overrides)
    assert overrides == {"epochs": 3} and cfg == {}
    assert config.as_dict() == {
        "label_smoothing": 0.2,
        "label_smoothing_mode": "uniform",  # None keeps the default
        "label_smoothing_schedule": "linear",
        "label_smoothing_final": 0.2,
    }
    with pytest.raises(TypeError, match=r"`label_smoothing` must be a real number"):
        pop_config({"label_smoothing": "lots"})
    with pytest.raises(ValueError, match=r"`label_smoothing_final` must be a finite number"):
        pop_config({"label_smoothing_final": "nan", "label_smoothing_schedule": "linear"})


def test_one_epoch_run_keeps_the_start_value_and_says_so():
    """As Ultralytics' lr starts at lr0: epoch 0 trains at label_smoothing, whatever the run
    length; with one epoch the final value is not reached, and the help and a warning say so."""
    config = SmoothingConfig(0.1, "uniform", "cosine", 0.0)
    assert config.factor(0, 1) == 0.1
    assert [config.factor(e, 2) for e in range(2)] == [0.1, 0.0]
    note = config.short_run_warning(1)
    assert "epochs=1" in note and "label_smoothing_final=0 is not reached" in note
    assert config.short_run_warning(2) is None
    assert SmoothingConfig(0.1, "uniform", "constant").short_run_warning(1) is None
    from detection.cli import train_help

    assert "with epochs=1" in " ".join(train_help().split())
