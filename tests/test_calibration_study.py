"""Tests of benchmarks/calibration_study.py: a --quick smoke run plus its pure helpers."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from keras_ls.datasets import find_fashion_mnist

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location(
    "calibration_study", ROOT / "benchmarks" / "calibration_study.py"
)
study = importlib.util.module_from_spec(_spec)
sys.modules["calibration_study"] = study
_spec.loader.exec_module(study)

needs_fashion_mnist = pytest.mark.skipif(
    find_fashion_mnist() is None,
    reason="Fashion-MNIST not on disk (apt-get install dataset-fashion-mnist)",
)

RANGES = {
    "accuracy": (0.0, 1.0),
    "nll": (0.0, math.inf),
    "ece": (0.0, 1.0),
    "brier": (0.0, 2.0),
    "conf_gap": (-1.0, 1.0),
}


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    if find_fashion_mnist() is None:
        pytest.skip("Fashion-MNIST not on disk")
    out = tmp_path_factory.mktemp("study")
    result = study.run_study(study.quick_config(out), log=lambda s: None)
    return result, out


@needs_fashion_mnist
@pytest.mark.slow
def test_quick_writes_outputs(quick: tuple[dict, Path]) -> None:
    result, out = quick
    assert (out / "calibration_study.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    on_disk = json.loads((out / "calibration_study.json").read_text())
    assert on_disk["config"]["quick"] is True
    assert on_disk["config"]["seeds"] == [0]
    assert on_disk["data"] == {
        "n_train": 1500, "n_heldout": 1000, "n_test": 2000, "batch_size": 125
    }
    assert on_disk["versions"]["keras"] and on_disk["runtime_seconds"]["total"] > 0
    assert len(on_disk["runs"]) == len(result["runs"])


@needs_fashion_mnist
@pytest.mark.slow
def test_quick_every_arm_and_noise_level_has_valid_metrics(quick: tuple[dict, Path]) -> None:
    result, _ = quick
    cfg = study.quick_config("unused")
    expected = {(m, n, a) for m in cfg.models for n in cfg.noise_rates for a in cfg.arms}
    assert len(expected) == 15
    assert {(r["model"], r["noise"], r["arm"]) for r in result["summary"]} == expected
    assert {(r["model"], r["noise"], r["arm"]) for r in result["runs"]} == expected
    for r in result["runs"]:
        for name, (lo, hi) in RANGES.items():
            value = r["metrics"][name]
            assert math.isfinite(value) and lo <= value <= hi, (r["arm"], name, value)
        # 2 epochs on 1.5k images: well above chance (0.1) whatever the noise.
        assert r["metrics"]["accuracy"] > 0.4, r
        # 1.5k labels flipped at rate p: within 5 binomial sd of p.
        tol = 5 * math.sqrt(r["noise"] * (1 - r["noise"]) / 1500)
        assert abs(r["flipped_fraction"] - r["noise"]) <= tol + 1e-12


@needs_fashion_mnist
@pytest.mark.slow
def test_quick_arms_do_what_they_say(quick: tuple[dict, Path]) -> None:
    runs = {(r["noise"], r["arm"]): r for r in quick[0]["runs"]}
    for noise in (0.0, 0.2, 0.4):
        base, ts = runs[(noise, "keras_ce")], runs[(noise, "ts_keras_ce")]
        # Dividing logits by T > 0 never changes the argmax.
        assert ts["metrics"]["accuracy"] == base["metrics"]["accuracy"]
        assert ts["temperature"] > 0 and ts["temperature"] != 1.0
        # Cosine(0.1, 0.0, steps=epochs-1) over 2 epochs: 0.1 then 0.0.
        assert runs[(noise, "ls_cosine")]["label_smoothing_per_epoch"] == pytest.approx(
            [0.1, 0.0]
        )
        # Same init and batches, different targets: the smoothed arms differ.
        assert runs[(noise, "ls_0.1")]["metrics"]["nll"] != base["metrics"]["nll"]


@needs_fashion_mnist
@pytest.mark.slow
def test_quick_markdown_lists_every_row(quick: tuple[dict, Path]) -> None:
    result, out = quick
    md = (out / "calibration_study.md").read_text()
    assert "## MLP" in md and "--quick" in md
    for noise in ("0%", "20%", "40%"):
        for label in result["arms"].values():
            assert f"| {noise} | {label} |" in md, (noise, label)


def test_evaluate_logits_known_values() -> None:
    # p = (0.75, 0.25) for both samples; both right.
    logits = np.array([[math.log(3.0), 0.0], [0.0, math.log(3.0)]])
    m = study.evaluate_logits(np.array([0, 1]), logits)
    assert m["accuracy"] == 1.0
    assert m["nll"] == pytest.approx(-math.log(0.75))
    assert m["brier"] == pytest.approx(0.125)
    assert m["ece"] == pytest.approx(0.25)
    assert m["conf_gap"] == pytest.approx(-0.25)


def test_summarize_mean_and_sample_sd() -> None:
    runs = [
        {"model": "mlp", "noise": 0.2, "arm": "a", "metrics": dict.fromkeys(RANGES, v)}
        for v in (0.1, 0.2, 0.6)
    ]
    (row,) = study.summarize(runs)
    assert row["n_seeds"] == 3
    assert row["ece"]["mean"] == pytest.approx(0.3)
    assert row["ece"]["sd"] == pytest.approx(np.std([0.1, 0.2, 0.6], ddof=1))


def test_arm_registry_checks() -> None:
    with pytest.raises(ValueError, match="Unknown arm"):
        study._check_arms(["keras_ce", "nope"])
    with pytest.raises(ValueError, match="re-maps 'keras_ce'"):
        study._check_arms(["ls_0.1", "ts_keras_ce"])


@needs_fashion_mnist
@pytest.mark.slow
def test_new_arm_can_be_registered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import keras_ls

    seen = []

    def make(ctx):
        seen.append(ctx)
        return keras_ls.SmoothedCE(0.3, from_logits=True), []

    monkeypatch.setitem(study.ARMS, "ls_0.3", study.TrainedArm("SmoothedCE(0.3)", make))
    cfg = study.StudyConfig(
        n_train=256, n_heldout=128, n_test=256, models=("mlp",), epochs={"mlp": 1},
        seeds=(0,), noise_rates=(0.0,), arms=("ls_0.3",), out=str(tmp_path), plot=False,
        stem="custom",
    )
    result = study.run_study(cfg, log=lambda s: None)
    assert [c.steps_per_epoch for c in seen] == [2]  # 256 images in batches of 128
    assert result["arms"] == {"ls_0.3": "SmoothedCE(0.3)"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["custom.json", "custom.md"]
    md = (tmp_path / "custom.md").read_text()
    assert "| 0% | SmoothedCE(0.3) |" in md and ".png" not in md


def test_cli_quick_needs_out_and_parses(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        study._parse_args(["--quick"])  # would overwrite the committed results
    assert exc.value.code == 2
    cfg = study._parse_args(["--quick", "--out", str(tmp_path), "--seeds", "3", "4"])
    assert cfg.quick and cfg.out == str(tmp_path) and cfg.seeds == (3, 4)
    assert cfg.models == ("mlp",) and cfg.epochs == {"mlp": 2}
    default = study._parse_args(["--cnn-epochs", "7", "--no-plot", "--stem", "other"])
    assert default.epochs == {"mlp": 10, "cnn": 7} and not default.plot
    assert default.stem == "other" and study.StudyConfig().stem == "calibration_study"
    assert len(default.seeds) >= 3 and default.n_train == 10_000


def test_committed_results_are_consistent() -> None:
    """The shipped md is what the shipped json renders to, and covers the full grid."""
    results = ROOT / "benchmarks" / "results"
    result = json.loads((results / "calibration_study.json").read_text())
    assert (results / "calibration_study.md").read_text() == study.markdown_report(result)
    cfg = result["config"]
    assert not cfg["quick"] and len(cfg["seeds"]) >= 3 and set(cfg["models"]) == {"mlp", "cnn"}
    assert len(result["runs"]) == (
        len(cfg["models"]) * len(cfg["noise_rates"]) * len(cfg["seeds"]) * len(cfg["arms"])
    )
    assert result["data"]["n_test"] == 10_000 and result["data"]["n_train"] == 10_000
