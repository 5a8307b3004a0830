"""Calibration and label-noise study: label smoothing next to plain Keras, on Fashion-MNIST.

What it measures
----------------
For a small MLP and a small CNN, several seeds and 0% / 20% / 40% symmetric
label noise on the *training* labels (``keras_ls.noise.flip_labels``; the test
labels stay clean), it trains one model per arm and reports, on the full
Fashion-MNIST test set, accuracy, NLL, ECE (15 bins), the Brier score and the
confidence gap (mean top-label confidence minus accuracy: > 0 is
over-confident, < 0 under-confident), as mean ± sd over seeds.

Arms (``ARMS``, a name -> arm registry that other studies can extend):

- ``keras_ce``: ``keras.losses.SparseCategoricalCrossentropy(from_logits=True)``;
- ``ls_0.05`` / ``ls_0.1``: ``keras_ls.SmoothedCE(a, from_logits=True)``;
- ``ls_cosine``: ``SmoothedCE`` driven by ``SmoothingScheduler(Cosine(0.1, 0.0))``
  over the run;
- ``ts_keras_ce``: temperature scaling (Guo et al., 2017) of the ``keras_ce``
  model, fitted on a held-out split with *clean* labels and applied to the
  test logits -- no extra training. With noisy training labels this is an
  optimistic anchor: it assumes a small clean validation set exists.

Within one (model, noise level, seed) every trained arm starts from the same
initial weights and sees the same noisy labels and batch order, so arms are
compared paired.

Outputs (in ``--out``, default ``benchmarks/results/``): ``calibration_study.md``
(tables), ``calibration_study.json`` (config, versions, runtime, every per-seed
number) and ``calibration_study.png`` (reliability diagrams of the first seed;
rows: model x noise level, columns: arms).

Usage::

    python benchmarks/calibration_study.py              # default config, ~10 min on 2 cores
    python benchmarks/calibration_study.py --quick --out /tmp/study   # smoke test, < 1 min

Adding an arm (e.g. from another module)::

    from calibration_study import ARMS, TrainedArm
    ARMS["ls_0.2"] = TrainedArm("SmoothedCE(0.2)",
                                lambda ctx: (keras_ls.SmoothedCE(0.2, from_logits=True), []))
    run_study(StudyConfig(arms=(*DEFAULT_ARMS, "ls_0.2")))
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

import keras_ls
from keras_ls import SmoothedCE, SmoothingScheduler, schedules
from keras_ls.calibration import (
    brier_score,
    expected_calibration_error,
    fit_temperature,
    nll,
    reliability_diagram,
)
from keras_ls.datasets import load_fashion_mnist
from keras_ls.noise import flip_labels

RESULTS_DIR = Path(__file__).resolve().parent / "results"
STEM = "calibration_study"
NUM_CLASSES = 10
METRICS = ("accuracy", "nll", "ece", "brier", "conf_gap")


# --------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------


@dataclass
class StudyConfig:
    """Everything that defines a run; stored verbatim in the JSON output."""

    n_train: int = 10_000
    n_heldout: int = 5_000  # temperature fitting only
    n_test: int | None = None  # None: the full 10k test set
    models: tuple[str, ...] = ("mlp", "cnn")
    epochs: dict[str, int] = field(default_factory=lambda: {"mlp": 10, "cnn": 5})
    seeds: tuple[int, ...] = (0, 1, 2)
    noise_rates: tuple[float, ...] = (0.0, 0.2, 0.4)
    arms: tuple[str, ...] = ("keras_ce", "ls_0.05", "ls_0.1", "ls_cosine", "ts_keras_ce")
    batch_size: int = 128  # the nearest size dividing n_train is used (125 for 10k)
    learning_rate: float = 1e-3
    num_bins: int = 15
    data_seed: int = 0
    out: str = str(RESULTS_DIR)
    quick: bool = False
    plot: bool = True
    stem: str = STEM  # output file names: <stem>.md / .json / .png


DEFAULT_ARMS = StudyConfig().arms


def quick_config(out: str | os.PathLike) -> StudyConfig:
    """One seed, 2 epochs, 1.5k training samples, MLP only: a smoke test (< 1 min)."""
    return StudyConfig(
        n_train=1_500,
        n_heldout=1_000,
        n_test=2_000,
        models=("mlp",),
        epochs={"mlp": 2},
        seeds=(0,),
        out=str(out),
        quick=True,
    )


# --------------------------------------------------------------------------
# Arms
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ArmContext:
    """What an arm builder may use to set itself up."""

    epochs: int
    steps_per_epoch: int
    num_classes: int
    seed: int
    noise_rate: float


@dataclass(frozen=True)
class TrainedArm:
    """An arm that trains a model: ``make(ctx) -> (loss, callbacks)``."""

    label: str
    make: Callable[[ArmContext], tuple[Any, list[keras.callbacks.Callback]]]


@dataclass(frozen=True)
class PostHocArm:
    """An arm that re-maps another arm's logits without training.

    ``calibrate(heldout_logits, y_heldout, test_logits) -> (test_logits, info)``;
    ``info`` (e.g. the fitted temperature) is stored with the run.
    """

    label: str
    base: str
    calibrate: Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, dict]]


def _temperature_scale(
    heldout_logits: np.ndarray, y_heldout: np.ndarray, test_logits: np.ndarray
) -> tuple[np.ndarray, dict]:
    t = fit_temperature(heldout_logits, y_heldout)
    return test_logits / t, {"temperature": t}


def _cosine_arm(ctx: ArmContext) -> tuple[Any, list[keras.callbacks.Callback]]:
    # Reaches 0 on the last epoch: smooth early, fit sharp targets at the end.
    schedule = schedules.Cosine(0.1, 0.0, steps=max(ctx.epochs - 1, 1))
    return SmoothedCE(0.1, from_logits=True), [SmoothingScheduler(schedule)]


ARMS: dict[str, TrainedArm | PostHocArm] = {
    "keras_ce": TrainedArm(
        "Keras CE",
        lambda ctx: (keras.losses.SparseCategoricalCrossentropy(from_logits=True), []),
    ),
    "ls_0.05": TrainedArm("SmoothedCE(0.05)", lambda ctx: (SmoothedCE(0.05, from_logits=True), [])),
    "ls_0.1": TrainedArm("SmoothedCE(0.1)", lambda ctx: (SmoothedCE(0.1, from_logits=True), [])),
    "ls_cosine": TrainedArm("SmoothedCE cosine 0.1→0", _cosine_arm),
    "ts_keras_ce": PostHocArm("Keras CE + temp. scaling", "keras_ce", _temperature_scale),
}


def _online_arm(ctx: ArmContext) -> tuple[Any, list[keras.callbacks.Callback]]:
    import keras_ls

    return keras_ls.OnlineSmoothedCE(ctx.num_classes, 0.5, from_logits=True), [
        keras_ls.OnlineLabelSmoothing()
    ]


def _ce_dice_arm(ctx: ArmContext) -> tuple[Any, list[keras.callbacks.Callback]]:
    import keras_ls

    # Dice alone collapses on 10-class classification; it is meant as CE + Dice.
    ce = SmoothedCE(0.1, from_logits=True)
    dice = keras_ls.SmoothedDice(0.1, from_logits=True)
    return (lambda y, z: ce(y, z) + dice(y, z)), []


def _penalty_arm(ctx: ArmContext) -> tuple[Any, list[keras.callbacks.Callback]]:
    import keras_ls

    return keras_ls.ConfidencePenaltyCE(0.1, from_logits=True), []


#: Beyond uniform smoothing (issue 5): not in the default run (it would exceed
#: its 10-minute budget); run with `--arms keras_ce cp_0.1 ols_0.5 ce_dice_0.1`.
EXTRA_ARMS: dict[str, TrainedArm | PostHocArm] = {
    "cp_0.1": TrainedArm("ConfidencePenaltyCE(β=0.1)", _penalty_arm),
    "ols_0.5": TrainedArm("OnlineSmoothedCE(α=0.5)", _online_arm),
    "ce_dice_0.1": TrainedArm("SmoothedCE(0.1) + SmoothedDice(0.1)", _ce_dice_arm),
}
ARMS.update(EXTRA_ARMS)


# --------------------------------------------------------------------------
# Models and data
# --------------------------------------------------------------------------


def build_model(name: str) -> keras.Model:
    """The two small classifiers of the study; both output logits."""
    if name == "mlp":
        layers = [
            keras.layers.Flatten(),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(128, activation="relu"),
        ]
    elif name == "cnn":
        layers = [
            keras.layers.Reshape((28, 28, 1)),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
        ]
    else:
        raise ValueError(f"Unknown model {name!r}; expected 'mlp' or 'cnn'.")
    return keras.Sequential(
        [keras.Input((28, 28)), *layers, keras.layers.Dense(NUM_CLASSES)], name=name
    )


def load_splits(config: StudyConfig) -> dict[str, np.ndarray]:
    """Disjoint train / held-out subsets of the training set, and the test set."""
    n_pool = config.n_train + config.n_heldout
    (x, y), (x_test, y_test) = load_fashion_mnist(
        n_train=n_pool, n_test=config.n_test, seed=config.data_seed, download=False
    )
    # The pool is stratified; a seeded permutation splits it into the two parts.
    order = np.random.default_rng(config.data_seed).permutation(n_pool)
    tr, ho = order[: config.n_train], order[config.n_train :]
    return {
        "x_train": x[tr], "y_train": y[tr],
        "x_heldout": x[ho], "y_heldout": y[ho],
        "x_test": x_test, "y_test": y_test,
    }


# --------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------


def evaluate_logits(y: np.ndarray, logits: np.ndarray, num_bins: int = 15) -> dict[str, float]:
    """Accuracy, NLL, ECE, Brier and the confidence gap (mean confidence - accuracy)."""
    z = logits.astype(np.float64)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    acc = float(np.mean(p.argmax(axis=1) == y))
    return {
        "accuracy": acc,
        "nll": nll(y, z, from_logits=True),
        "ece": expected_calibration_error(y, z, num_bins=num_bins, from_logits=True),
        "brier": brier_score(y, z, from_logits=True),
        "conf_gap": float(np.mean(p.max(axis=1))) - acc,
    }


def summarize(runs: Sequence[dict]) -> list[dict]:
    """Mean and sample sd over seeds per (model, noise, arm), in first-seen order."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["model"], r["noise"], r["arm"]), []).append(r)
    out = []
    for (model, noise, arm), rs in groups.items():
        row: dict[str, Any] = {"model": model, "noise": noise, "arm": arm, "n_seeds": len(rs)}
        for m in METRICS:
            vals = np.array([r["metrics"][m] for r in rs], dtype=np.float64)
            row[m] = {
                "mean": float(vals.mean()),
                "sd": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0,
            }
        out.append(row)
    return out


# --------------------------------------------------------------------------
# The study
# --------------------------------------------------------------------------


def _check_arms(names: Sequence[str]) -> None:
    unknown = [a for a in names if a not in ARMS]
    if unknown:
        raise ValueError(f"Unknown arm(s) {unknown}; known: {sorted(ARMS)}.")
    for a in names:
        arm = ARMS[a]
        if isinstance(arm, PostHocArm) and arm.base not in names:
            raise ValueError(f"Arm {a!r} re-maps {arm.base!r}, which is not in the run.")


def _predict(model: keras.Model, x: np.ndarray, batch_size: int) -> np.ndarray:
    return np.asarray(model.predict(x, batch_size=batch_size, verbose=0), dtype=np.float32)


def _even_batch(n: int, target: int) -> int:
    """The batch size closest to ``target`` that divides ``n``.

    Equal batches mean one traced (XLA-compiled) step instead of two: on 2 CPU
    cores the compile of a ragged last batch costs as much as an epoch.
    """
    divisors = [d for d in range(1, n + 1) if n % d == 0]
    return min(divisors, key=lambda d: (abs(d - target), -d))


def run_study(
    config: StudyConfig | None = None,
    log: Callable[[str], None] = print,
    cli_args: Sequence[str] | None = None,
) -> dict:
    """Train every (model, noise, seed, arm), evaluate, write md/json/png; return the JSON dict.

    ``cli_args`` (the command-line arguments, if any) are recorded so that the
    Markdown report names the command that produced it.
    """
    config = config or StudyConfig()
    _check_arms(config.arms)
    t_start, cpu_start = time.perf_counter(), time.process_time()
    load_start = _loadavg()
    data = load_splits(config)
    x_train, y_train = data["x_train"], data["y_train"]
    y_heldout, y_test = data["y_heldout"], data["y_test"]
    batch_size = _even_batch(len(y_train), config.batch_size)
    steps_per_epoch = math.ceil(len(y_train) / batch_size)
    # Held-out and test logits in one predict call, in equal batches.
    x_eval = np.concatenate([data["x_heldout"], data["x_test"]])
    eval_batch = _even_batch(len(x_eval), 2500)
    n_heldout = len(y_heldout)
    trained = [a for a in config.arms if isinstance(ARMS[a], TrainedArm)]
    post_hoc = [a for a in config.arms if isinstance(ARMS[a], PostHocArm)]

    runs: list[dict] = []
    plot_logits: dict[tuple[str, float, str], np.ndarray] = {}
    model_seconds: dict[str, float] = {}
    for model_name in config.models:
        t_model = time.perf_counter()
        epochs = int(config.epochs[model_name])
        for noise in config.noise_rates:
            for seed in config.seeds:
                if noise > 0:
                    # A distinct, reproducible corruption per (seed, rate).
                    y_fit, flipped = flip_labels(
                        y_train, noise, NUM_CLASSES, mode="symmetric",
                        seed=1000 * seed + round(100 * noise),
                    )
                    flipped_frac = float(flipped.mean())
                else:
                    y_fit, flipped_frac = y_train, 0.0
                ctx = ArmContext(epochs, steps_per_epoch, NUM_CLASSES, seed, noise)
                logits: dict[str, tuple[np.ndarray, np.ndarray]] = {}
                extras: dict[str, dict] = {}
                for arm_name in trained:
                    t0 = time.perf_counter()
                    keras.utils.set_random_seed(seed)  # same init and batch order per arm
                    model = build_model(model_name)
                    loss, callbacks = ARMS[arm_name].make(ctx)
                    model.compile(
                        optimizer=keras.optimizers.Adam(config.learning_rate), loss=loss
                    )
                    hist = model.fit(
                        x_train, y_fit, batch_size=batch_size, epochs=epochs,
                        callbacks=callbacks, verbose=0,
                    )
                    z = _predict(model, x_eval, eval_batch)
                    logits[arm_name] = (z[:n_heldout], z[n_heldout:])
                    extras[arm_name] = {
                        "train_seconds": time.perf_counter() - t0,
                        "final_train_loss": float(hist.history["loss"][-1]),
                    }
                    if "label_smoothing" in hist.history:
                        extras[arm_name]["label_smoothing_per_epoch"] = [
                            float(v) for v in hist.history["label_smoothing"]
                        ]
                    keras.backend.clear_session()
                for arm_name in post_hoc:
                    arm = ARMS[arm_name]
                    ho, te = logits[arm.base]
                    new_te, info = arm.calibrate(ho, y_heldout, te)
                    logits[arm_name] = (ho, new_te)
                    extras[arm_name] = dict(info)
                for arm_name in config.arms:
                    test_logits = logits[arm_name][1]
                    metrics = evaluate_logits(y_test, test_logits, config.num_bins)
                    runs.append({
                        "model": model_name, "noise": noise, "seed": seed, "arm": arm_name,
                        "flipped_fraction": flipped_frac, "metrics": metrics,
                        **extras[arm_name],
                    })
                    if seed == config.seeds[0]:
                        plot_logits[(model_name, noise, arm_name)] = test_logits
                    log(f"[{time.perf_counter() - t_start:6.1f}s] {model_name} noise={noise:.0%} "
                        f"seed={seed} {arm_name:12s} acc={metrics['accuracy']:.4f} "
                        f"nll={metrics['nll']:.4f} ece={metrics['ece']:.4f} "
                        f"gap={metrics['conf_gap']:+.4f}")
        model_seconds[model_name] = time.perf_counter() - t_model

    result = {
        "config": dataclasses.asdict(config),
        "cli_args": list(cli_args) if cli_args is not None else None,
        "arms": {name: ARMS[name].label for name in config.arms},
        "versions": _versions(),
        "runtime_seconds": {"total": time.perf_counter() - t_start, "per_model": model_seconds},
        "data": {
            "n_train": int(len(y_train)), "n_heldout": int(len(y_heldout)),
            "n_test": int(len(y_test)), "batch_size": batch_size,
        },
        "summary": summarize(runs),
        "runs": runs,
    }
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    if config.plot:
        plot_grid(plot_logits, y_test, config, out / f"{config.stem}.png")
    # Re-read the clocks: the runtime recorded covers the plot too. CPU time
    # and load averages say how much of the wall time was other processes.
    result["runtime_seconds"]["total"] = time.perf_counter() - t_start
    result["runtime_seconds"]["process_cpu"] = time.process_time() - cpu_start
    result["runtime_seconds"]["loadavg_1_5_15_at_start"] = load_start
    result["runtime_seconds"]["loadavg_1_5_15_at_end"] = _loadavg()
    (out / f"{config.stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / f"{config.stem}.md").write_text(markdown_report(result))
    log(f"wrote {out / config.stem}.{{md,json{',png' if config.plot else ''}}} in "
        f"{result['runtime_seconds']['total']:.0f}s")
    return result


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # not available on every platform
        return None


def _versions() -> dict[str, str]:
    import matplotlib

    v = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": str(os.cpu_count()),
        "keras": keras.__version__,
        "keras_backend": keras.backend.backend(),
        "keras_ls": keras_ls.__version__,
        "numpy": np.__version__,
        "matplotlib": matplotlib.__version__,
    }
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        v["tensorflow"] = tf.__version__
    return v


# --------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------


def _fmt(stat: dict, scale: float, digits: int, signed: bool = False) -> str:
    mean, sd = stat["mean"] * scale, stat["sd"] * scale
    sign = "+" if signed else ""
    return f"{mean:{sign}.{digits}f} ± {sd:.{digits}f}"


def markdown_report(result: dict) -> str:
    """The results as Markdown: one table per model, rows noise level x arm."""
    cfg = result["config"]
    arms = result["arms"]
    args = result.get("cli_args")
    if args is None:
        args = ["--quick"] if cfg["quick"] else []
    # The output directory does not change the numbers: leave it out.
    shown = [a for i, a in enumerate(args)
             if a != "--out" and not (i and args[i - 1] == "--out") and not a.startswith("--out=")]
    quick = "".join(f" {a}" for a in shown)
    rt = result["runtime_seconds"]
    loads = [x[0] for x in (rt.get("loadavg_1_5_15_at_start"), rt.get("loadavg_1_5_15_at_end"))
             if x]
    load = " → ".join(f"{x:.1f}" for x in loads) or "n/a"
    lines = [
        "# Calibration study: label smoothing vs plain Keras on Fashion-MNIST",
        "",
        f"Command: `python benchmarks/calibration_study.py{quick}` · "
        f"runtime {rt['total']:.0f} s wall, {rt['process_cpu']:.0f} s CPU, on "
        f"{result['versions']['cpu_count']} CPU cores (load average {load}) · "
        f"Keras {result['versions']['keras']} ({result['versions']['keras_backend']})",
        "",
        f"Data: {result['data']['n_train']} training images (labels flipped "
        f"symmetrically at the given rate), {result['data']['n_heldout']} held-out images with "
        f"clean labels (temperature fitting only), {result['data']['n_test']} clean test images. "
        f"Seeds: {', '.join(map(str, cfg['seeds']))}; epochs: "
        + ", ".join(f"{m} {cfg['epochs'][m]}" for m in cfg["models"])
        + f"; Adam {cfg['learning_rate']:g}, batch {result['data']['batch_size']}.",
        "",
        f"Test-set metrics, mean ± sd over {len(cfg['seeds'])} seed(s). ECE uses "
        f"{cfg['num_bins']} equal-width bins. *Gap* = mean top-label confidence − accuracy "
        "(> 0 over-confident, < 0 under-confident). Best mean per noise level in **bold** "
        "(accuracy: highest; NLL, |ECE|, Brier, |gap|: lowest).",
        "",
    ]
    for model in cfg["models"]:
        lines += [
            f"## {model.upper()}",
            "",
            "| Label noise | Arm | Accuracy (%) | NLL | ECE (%) | Brier | Gap (%) |",
            "|---|---|---|---|---|---|---|",
        ]
        for noise in cfg["noise_rates"]:
            rows = [r for r in result["summary"] if r["model"] == model and r["noise"] == noise]
            best = {
                "accuracy": max(r["accuracy"]["mean"] for r in rows),
                **{m: min(abs(r[m]["mean"]) for r in rows) for m in ("nll", "ece", "brier")},
                "conf_gap": min(abs(r["conf_gap"]["mean"]) for r in rows),
            }
            for r in rows:
                cells = []
                for m, scale, digits, signed in (
                    ("accuracy", 100, 2, False), ("nll", 1, 3, False), ("ece", 100, 2, False),
                    ("brier", 1, 3, False), ("conf_gap", 100, 2, True),
                ):
                    text = _fmt(r[m], scale, digits, signed)
                    target = r[m]["mean"] if m == "accuracy" else abs(r[m]["mean"])
                    if math.isclose(round(target * scale, digits),
                                    round(best[m] * scale, digits)):
                        text = f"**{text}**"
                    cells.append(text)
                lines.append(f"| {noise:.0%} | {arms[r['arm']]} | " + " | ".join(cells) + " |")
        lines.append("")
    temps = [r["temperature"] for r in result["runs"] if "temperature" in r]
    if temps:
        lines += [
            "Fitted temperatures (Keras CE + temp. scaling), per model and noise level: "
            + "; ".join(
                f"{m} {n:.0%}: "
                + ", ".join(f"{r['temperature']:.2f}" for r in result["runs"]
                            if r["model"] == m and r["noise"] == n and "temperature" in r)
                for m in cfg["models"] for n in cfg["noise_rates"]
            )
            + ".",
            "",
        ]
    stem = cfg.get("stem", STEM)
    plot = f"Reliability diagrams (first seed): `{stem}.png`. " if cfg.get("plot", True) else ""
    lines += [f"{plot}Per-seed numbers, config and versions: `{stem}.json`.", ""]
    return "\n".join(lines)


def plot_grid(
    logits: dict[tuple[str, float, str], np.ndarray],
    y_test: np.ndarray,
    config: StudyConfig,
    path: Path,
) -> None:
    """Reliability diagrams: one row per (model, noise level), one column per arm."""
    from matplotlib.figure import Figure

    rows = [(m, n) for m in config.models for n in config.noise_rates]
    cols = list(config.arms)
    fig = Figure(figsize=(3.4 * len(cols), 3.9 * len(rows) + 0.8), layout="constrained")
    axes = fig.subplots(len(rows), len(cols), squeeze=False)
    legend: dict[str, object] = {}  # one figure legend: every mark any panel drew, once
    for i, (model, noise) in enumerate(rows):
        for j, arm in enumerate(cols):
            ax = axes[i][j]
            reliability_diagram(
                y_test, logits[(model, noise, arm)], num_bins=config.num_bins, ax=ax,
                from_logits=True, title=f"{model.upper()} · {noise:.0%} noise\n{ARMS[arm].label}",
                show_histogram=False,
            )
            ax.title.set_fontsize(9)
            own = ax.get_legend()
            for handle, text in zip(own.legend_handles, own.get_texts()):
                legend.setdefault(text.get_text(), handle)
            own.remove()
    fig.legend(list(legend.values()), list(legend), loc="outside lower center",
               ncols=min(len(legend), 3), frameon=False,
               title="Numbers above each frame: test images per bin")
    fig.suptitle(f"Fashion-MNIST test set, seed {config.seeds[0]}", fontsize=11)
    fig.savefig(path, dpi=72)


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> StudyConfig:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 1 seed, 2 epochs, 1.5k samples, MLP only")
    p.add_argument("--out", default=None, help=f"output directory (default {RESULTS_DIR})")
    p.add_argument("--seeds", type=int, nargs="+", help="override the seeds")
    p.add_argument("--models", nargs="+", choices=("mlp", "cnn"), help="override the models")
    p.add_argument("--arms", nargs="+", help=f"override the arms (known: {', '.join(ARMS)})")
    p.add_argument("--mlp-epochs", type=int, help="override the MLP's epochs")
    p.add_argument("--cnn-epochs", type=int, help="override the CNN's epochs")
    p.add_argument("--n-train", type=int, help="override the training subset size")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG")
    p.add_argument("--stem", help=f"output file name stem (default {STEM})")
    a = p.parse_args(argv)
    if a.quick and not a.out:
        # Never overwrite the committed results with a smoke run.
        p.error("--quick needs --out DIR")
    cfg = quick_config(a.out or RESULTS_DIR) if a.quick else StudyConfig()
    if a.out:
        cfg.out = a.out
    if a.seeds:
        cfg.seeds = tuple(a.seeds)
    if a.models:
        cfg.models = tuple(a.models)
        cfg.epochs = {m: cfg.epochs.get(m, StudyConfig().epochs[m]) for m in cfg.models}
    if a.arms:
        cfg.arms = tuple(a.arms)
    if a.mlp_epochs:
        cfg.epochs["mlp"] = a.mlp_epochs
    if a.cnn_epochs:
        cfg.epochs["cnn"] = a.cnn_epochs
    if a.n_train:
        cfg.n_train = a.n_train
    if a.no_plot:
        cfg.plot = False
    if a.stem:
        cfg.stem = a.stem
    return cfg


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    config = _parse_args(argv)
    run_study(config, log=lambda s: print(s, flush=True), cli_args=argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
