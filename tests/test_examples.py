"""Smoke tests of examples/: each one runs end to end, as a script, with tiny settings.

The examples assert their own numerical checks (padding excluded, MixUp
composition, save/load round trip) and exit non-zero when one fails; here we
also parse their ``RESULT`` lines and check the files they write.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from keras_ls.datasets import find_fashion_mnist

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

needs_fashion_mnist = pytest.mark.skipif(
    find_fashion_mnist() is None,
    reason="Fashion-MNIST not on disk (apt-get install dataset-fashion-mnist)",
)

pytestmark = pytest.mark.slow


def run_process(args: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run Python with ``args`` as scripts/demo.sh does (TF_CPP_MIN_LOG_LEVEL=3); check rc 0."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, (
        f"{args[0]} exited with {proc.returncode}\n--- stdout ---\n{proc.stdout[-4000:]}"
        f"\n--- stderr ---\n{proc.stderr[-4000:]}"
    )
    return proc


def run_script(args: list[str], cwd: Path, timeout: int = 600) -> str:
    return run_process(args, cwd, timeout).stdout


def results(stdout: str) -> list[tuple[str, dict[str, float]]]:
    """``RESULT [tag] k=v k=v`` lines -> [(tag, {k: float(v)})]."""
    out = []
    for line in stdout.splitlines():
        if not line.startswith("RESULT "):
            continue
        words = line.split()[1:]
        tag = "" if "=" in words[0] else words.pop(0)
        out.append((tag, {k: float(v) for k, v in (w.split("=", 1) for w in words)}))
    return out


@needs_fashion_mnist
def test_image_classification(tmp_path: Path) -> None:
    model_path = tmp_path / "saved" / "fm.keras"
    plot = tmp_path / "saved" / "rel.png"
    logs = tmp_path / "logs"
    proc = run_process(
        [str(EXAMPLES / "image_classification.py"), "--epochs", "2", "--n-train", "1000",
         "--n-heldout", "500", "--n-test", "500", "--compare-baseline",
         "--model-path", str(model_path), "--plot", str(plot), "--log-dir", str(logs)],
        cwd=tmp_path,
    )
    # The demo's output is its own: no TensorFlow/absl/Keras lines on stderr.
    assert proc.stderr == "", proc.stderr[-4000:]
    stdout = proc.stdout
    rows = dict(results(stdout))
    assert set(rows) == {"baseline", "smoothed", "temperature_scaled"}
    for m in rows.values():
        assert 0.3 < m["accuracy"] <= 1.0  # 10 classes: chance is 0.1
        assert 0.0 <= m["ece"] <= 1.0 and m["nll"] > 0.0
        assert abs(m["gap"]) <= m["ece"] + 1e-4  # |sum of bin gaps| <= sum of |bin gaps|
    for tag in ("baseline", "smoothed"):
        # Streamed Keras metric (model.evaluate) vs numpy ECE on the same logits.
        assert rows[tag]["ece_metric"] == pytest.approx(rows[tag]["ece"], abs=2e-4)
    # A temperature changes confidences, never the predicted class.
    assert rows["temperature_scaled"]["accuracy"] == rows["baseline"]["accuracy"]
    assert "held-out training images (not the test set)" in stdout
    # The sentence is computed from the table's numbers.
    sentence = next(line for line in stdout.splitlines() if line.startswith("What this means:"))
    for tag in ("baseline", "smoothed", "temperature_scaled"):
        assert f"ECE {rows[tag]['ece']:.2%}" in sentence, (tag, sentence)
    assert model_path.stat().st_size > 10_000
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The constant factor was logged per epoch, and val_loss is the plain NLL
    # (SmoothingScheduler validates with factor 0): the held-out NLL is logged for both.
    with open(logs / "smoothed" / "history.csv") as f:
        history = list(csv.DictReader(f))
    assert [float(r["label_smoothing"]) for r in history] == pytest.approx([0.05, 0.05])
    with open(logs / "keras_ce" / "history.csv") as f:
        assert len([r["val_loss"] for r in csv.DictReader(f)]) == 2
    try:
        import tensorboard  # noqa: F401
    except ImportError:  # the example then writes CSV logs only
        pass
    else:
        events = list((logs / "smoothed" / "train").glob("events.out.tfevents*"))
        assert events and b"label_smoothing" in events[0].read_bytes()
    # ... and the saved loss reloads with its factor in a fresh process, with no
    # custom_objects: `import keras_ls` registers the classes.
    code = (
        "import keras, keras_ls, sys\n"
        "m = keras.saving.load_model(sys.argv[1])\n"
        "print(type(m.loss).__name__, m.loss.label_smoothing, m.loss.from_logits)\n"
    )
    out = run_script(["-c", code, str(model_path)], cwd=tmp_path).split()
    assert out[0] == "SmoothedCE"
    assert float(out[1]) == pytest.approx(0.05)
    assert out[2] == "True"


def load_example(name: str):
    """Import an example script as a module (its ``main`` does not run)."""
    spec = importlib.util.spec_from_file_location(name.removesuffix(".py"), EXAMPLES / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_image_classification_summary_sentence() -> None:
    ex = load_example("image_classification.py")

    def m(accuracy: float, ece: float, gap: float) -> dict[str, float]:
        return {"accuracy": accuracy, "nll": 0.5, "ece": ece, "gap": gap}

    # The demo's regime: an over-confident baseline that smoothing calibrates.
    text = ex.summary_sentence(m(0.8260, 0.0799, 0.0798), m(0.8305, 0.0155, 0.0100),
                               m(0.8260, 0.0126, 0.0010), "SmoothedCE(0.05)", 1.757)
    assert "cross-entropy is over-confident by 8.0 points (ECE 7.99%)" in text
    assert "SmoothedCE(0.05) is nearly calibrated (gap +1.0 points, ECE 1.55%)" in text
    assert "accuracy change of +0.45 points (82.60% -> 83.05%)" in text
    assert "T = 1.76" in text and "ECE 1.26%" in text
    assert text.endswith("label smoothing helped because the plain model was over-confident, "
                         "the regime it is for.")
    assert text.count(". ") == 0  # one sentence
    # A calibrated baseline (the old demo's regime): smoothing under-confident.
    text = ex.summary_sentence(m(0.8435, 0.0107, 0.0050), m(0.8484, 0.0689, -0.0689),
                               m(0.8435, 0.0100, 0.0010), "SmoothedCE(0.1)", 1.05)
    assert "cross-entropy is nearly calibrated (gap +0.5 points, ECE 1.07%)" in text
    assert "SmoothedCE(0.1) is under-confident by 6.9 points (ECE 6.89%)" in text
    assert text.endswith("the plain model is not over-confident, so label smoothing has "
                         "nothing to correct here.")
    # Over-confident, but smoothing made the ECE worse.
    text = ex.summary_sentence(m(0.85, 0.03, 0.03), m(0.84, 0.05, -0.05),
                               m(0.85, 0.01, 0.0), "SmoothedCE(0.2)", 1.3)
    assert "accuracy change of -1.00 points" in text
    assert text.endswith("did not help although the plain model was over-confident.")


def test_seq2seq_padding(tmp_path: Path) -> None:
    stdout = run_script(
        [str(EXAMPLES / "seq2seq_padding.py"), "--epochs", "3", "--n-train", "512",
         "--n-test", "128", "--units", "32"],
        cwd=tmp_path,
    )
    res = results(stdout)
    checks = [m for tag, m in res if tag == "padding"]
    assert len(checks) == 2  # before and after training
    for m in checks:
        assert m["loss"] == pytest.approx(m["manual"], rel=1e-5)
        assert m["scrambled"] == pytest.approx(m["loss"], rel=1e-6)
    # After training the model puts mass on EOS/PAD differently from the real
    # tokens, so counting PAD as a class changes the value.
    assert abs(checks[1]["naive"] - checks[1]["loss"]) > 1e-3
    # the loop of fit(epochs=1) calls followed the 0.1 -> 0 schedule
    (sched,) = [m for tag, m in res if tag == "schedule"]
    assert [sched[f"fit{i}"] for i in range(3)] == [0.1, 0.05, 0.0]
    final = [m for tag, m in res if tag == ""][-1]
    assert 0.0 <= final["sequence_accuracy"] <= final["token_accuracy"] <= 1.0


@needs_fashion_mnist
def test_mixup(tmp_path: Path) -> None:
    stdout = run_script(
        [str(EXAMPLES / "mixup.py"), "--epochs", "1", "--n-train", "512", "--n-test", "256"],
        cwd=tmp_path,
    )
    res = results(stdout)
    comps = [m for tag, m in res if tag == "composition"]
    assert len(comps) == 2
    for m in comps:
        assert m["target_diff"] < 1e-6
        assert m["loss"] == pytest.approx(m["numpy"], rel=1e-5)
        assert m["loss"] == pytest.approx(m["keras_cce"], rel=1e-5)
    final = [m for tag, m in res if tag == ""][-1]
    assert 0.0 <= final["accuracy"] <= 1.0 and 0.0 <= final["ece"] <= 1.0


def test_examples_have_tutorial_headers() -> None:
    for name in ("image_classification.py", "seq2seq_padding.py", "mixup.py"):
        text = (EXAMPLES / name).read_text()
        header = re.match(r'"""\n(.*?)"""', text, re.S)
        assert header, name
        for field in ("Title:", "Author:", "Description:"):
            assert field in header.group(1), (name, field)
        assert 'if __name__ == "__main__":' in text
