"""What a per-batch smoothing schedule costs during ``fit``, on TF, JAX and torch.

One process per backend. Each run trains the same model four ways in one process,
interleaved: ``SmoothedCE(0.1)`` with no callback (the constant factor), with a
``SmoothingScheduler(update="epoch")``, with a continuous per-batch schedule given to the
callback (``Cosine``, ``update="batch"``) and the same schedule given to the loss
(``SmoothedCE(Cosine(...))`` + ``SmoothingScheduler()``): the value changes at every step,
evaluated inside the compiled step. Reported: the median
steady-state epoch time (the first epoch, which compiles, is dropped) and the ratio to the
constant factor. The target of issue 10 is a per-batch schedule within 10% of the constant
factor on JAX (0.1 re-jitted the step at every batch there: 2583x).

    python benchmarks/schedule_overhead.py            # all three backends
    python benchmarks/schedule_overhead.py --backend jax --epochs 12
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

BACKENDS = ("tensorflow", "jax", "torch")
ARMS = ("constant", "per_epoch", "per_batch", "in_loss")
MODELS = {
    # the tiny model: 40 batches of 32
    "tiny": {"n": 40 * 32, "features": 16, "hidden": 32, "classes": 10, "batch": 32},
    # about keras-io addition_rnn's step cost: a wider MLP, 40 batches of 128
    "mlp": {"n": 40 * 128, "features": 128, "hidden": 512, "classes": 100, "batch": 128},
}


def cpu_model() -> str:
    """``lscpu``'s "Model name" (the tables' numbers depend on it)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(ln.split(":", 1)[1].strip() for ln in out.splitlines() if "Model name" in ln)
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return "unknown CPU"


def _epoch_times(kind: str, cfg: dict, x, y, epochs: int) -> list[float]:
    """Steady-state epoch times of one arm (the first epoch, which compiles, is dropped)."""
    import keras

    from keras_ls import SmoothedCE, SmoothingScheduler, schedules

    steps = cfg["n"] // cfg["batch"]
    if keras.backend.backend() == "torch":
        import torch

        # Every model recompiles Keras' train step; past dynamo's cache limit (8 per code
        # object) later models would run uncompiled. Start each arm from a clean cache.
        torch._dynamo.reset()
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((cfg["features"],)),
            keras.layers.Dense(cfg["hidden"], activation="relu"),
            keras.layers.Dense(cfg["classes"]),
        ]
    )
    cosine = schedules.Cosine(0.1, 0.0, steps * epochs - 1)
    factor = cosine if kind == "in_loss" else 0.1
    model.compile("adam", SmoothedCE(factor, from_logits=True), jit_compile=True)
    callbacks = {
        "constant": [],
        "per_epoch": [SmoothingScheduler(schedules.Linear(0.1, 0.0, epochs - 1))],
        "per_batch": [SmoothingScheduler(cosine, update="batch")],
        "in_loss": [SmoothingScheduler()],
    }[kind]
    times: list[float] = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t)

    model.fit(
        x,
        y,
        batch_size=cfg["batch"],
        epochs=epochs,
        verbose=0,
        shuffle=False,
        callbacks=[*callbacks, Clock()],
    )
    return times[1:]


def _run_backend(epochs: int, repeats: int) -> dict:
    import keras
    import numpy as np

    if keras.backend.backend() == "torch":
        import torch

        # Two intra-op threads on two shared cores make ATen 10-20x slower whenever another
        # process takes a core (see benchmarks/loss_speed.py): one thread, stable times.
        torch.set_num_threads(1)

    out = {}
    for name, cfg in MODELS.items():
        rng = np.random.default_rng(0)
        x = rng.normal(size=(cfg["n"], cfg["features"])).astype("float32")
        y = rng.integers(0, cfg["classes"], cfg["n"])
        samples: dict[str, list[float]] = {k: [] for k in ARMS}
        for _ in range(repeats):  # interleaved, so that load drift hits every arm alike
            for kind in samples:
                samples[kind] += _epoch_times(kind, cfg, x, y, epochs)
        med = {k: float(np.median(v)) for k, v in samples.items()}
        out[name] = {
            "steps_per_epoch": cfg["n"] // cfg["batch"],
            "epoch_ms": {k: 1e3 * v for k, v in med.items()},
            "ratio_to_constant": {k: v / med["constant"] for k, v in med.items()},
        }
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", choices=(*BACKENDS, "all"), default="all")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "schedule_overhead"))
    p.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._child:
        print("RESULT" + json.dumps(_run_backend(args.epochs, args.repeats)))
        return
    results = {}
    for backend in BACKENDS if args.backend == "all" else (args.backend,):
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
        cmd = [sys.executable, __file__, "--_child", "--epochs", str(args.epochs)]
        proc = subprocess.run(
            [*cmd, "--repeats", str(args.repeats)], env=env, capture_output=True, text=True
        )
        if proc.returncode != 0:
            sys.exit(f"{backend} run failed:\n{proc.stderr[-3000:]}")
        line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT"))
        results[backend] = json.loads(line[len("RESULT") :])
    header = "| backend | model | steps/epoch | constant ms | per-epoch ms (ratio) |"
    lines = [
        header + " per-batch ms (ratio) | schedule in the loss ms (ratio) |",
        "|---|---|---|---|---|---|---|",
    ]
    for backend, models in results.items():
        for name, r in models.items():
            ms, ratio = r["epoch_ms"], r["ratio_to_constant"]
            arms = " | ".join(f"{ms[k]:.1f} ({ratio[k]:.2f}x)" for k in ARMS[1:])
            lines.append(
                f"| {backend} | {name} | {r['steps_per_epoch']} | {ms['constant']:.1f} | {arms} |"
            )
    lines.append(f"\nCPU: {cpu_model()}, {os.cpu_count()} cores.")
    table = "\n".join(lines)
    print(table)
    if args.backend == "all":
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out + ".json").write_text(json.dumps(results, indent=1) + "\n")
        cmd = "python benchmarks/schedule_overhead.py"
        Path(args.out + ".md").write_text(f"Measured with `{cmd}` (jit_compile=True).\n\n{table}\n")


if __name__ == "__main__":
    main()
