"""Smoke tests of examples/: each one runs end to end, as a script, with tiny settings.

The examples assert their own numerical checks (padding excluded, MixUp
composition, save/load round trip) and exit non-zero when one fails; here we
also parse their ``RESULT`` lines and check the files they write.
"""

from __future__ import annotations

import csv
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


def run_script(args: list[str], cwd: Path, timeout: int = 600) -> str:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, (
        f"{args[0]} exited with {proc.returncode}\n--- stdout ---\n{proc.stdout[-4000:]}"
        f"\n--- stderr ---\n{proc.stderr[-4000:]}"
    )
    return proc.stdout


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
    stdout = run_script(
        [str(EXAMPLES / "image_classification.py"), "--epochs", "2", "--n-train", "1024",
         "--n-test", "512", "--compare-baseline", "--model-path", str(model_path),
         "--plot", str(plot), "--log-dir", str(logs)],
        cwd=tmp_path,
    )
    rows = dict(results(stdout))
    assert set(rows) == {"smoothed", "baseline"}
    for m in rows.values():
        assert 0.3 < m["accuracy"] <= 1.0  # 10 classes: chance is 0.1
        assert 0.0 <= m["ece"] <= 1.0 and m["nll"] > 0.0
        # Streamed Keras metric (model.evaluate) vs numpy ECE on the same logits.
        assert m["ece_metric"] == pytest.approx(m["ece"], abs=2e-4)
    assert model_path.stat().st_size > 10_000
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The schedule Linear(0.1, 0.05, steps=1) was logged per epoch ...
    with open(logs / "smoothed" / "history.csv") as f:
        history = list(csv.DictReader(f))
    assert [float(r["label_smoothing"]) for r in history] == pytest.approx([0.1, 0.05])
    assert (logs / "keras_ce" / "history.csv").is_file()
    try:
        import tensorboard  # noqa: F401
    except ImportError:  # the example then writes CSV logs only
        pass
    else:
        events = list((logs / "smoothed" / "train").glob("events.out.tfevents*"))
        assert events and b"label_smoothing" in events[0].read_bytes()
    # ... and the saved loss reloads with its final value in a fresh process,
    # with no custom_objects: `import keras_ls` registers the classes.
    code = (
        "import keras, keras_ls, sys\n"
        "m = keras.saving.load_model(sys.argv[1])\n"
        "print(type(m.loss).__name__, m.loss.label_smoothing, m.loss.from_logits)\n"
    )
    out = run_script(["-c", code, str(model_path)], cwd=tmp_path).split()
    assert out[0] == "SmoothedCE"
    assert float(out[1]) == pytest.approx(0.05)
    assert out[2] == "True"


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
