"""Forward+backward speed and peak memory of SmoothedCE vs Keras' own losses.

Variants, all on integer labels and logits, run in one process, interleaved:

- ``smoothed``: ``keras_ls.SmoothedCE(0.1, from_logits=True)`` (sparse path);
- ``keras_dense``: ``keras.losses.CategoricalCrossentropy(label_smoothing=0.1)``
  with the one-hot built inside the step (what Keras users do today);
- ``keras_sparse``: ``keras.losses.SparseCategoricalCrossentropy`` (no smoothing).

Times are medians over interleaved repetitions; ratios are against the Keras
variants. Peak extra memory, in logits-sized buffers, is taken from
``tf.config.experimental.get_memory_info`` (peak minus the bytes held before
the step, inputs included) in a fresh subprocess per variant; on CPU that
subprocess runs TF's BFC allocator (``TF_CPU_ALLOCATOR_USE_BFC=true``), which
keeps those statistics. The gradient returned to the layer below is one of
the counted buffers.

    python benchmarks/loss_speed.py                 # full table (a few minutes)
    python benchmarks/loss_speed.py --quick         # small smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHAPES = [(8192, 10), (2048, 1000), (512, 32000), (256, 128000)]
VARIANTS = ("smoothed", "keras_dense", "keras_sparse")
MODES = ("graph", "xla")


def _step_fn(variant: str, mode: str, num_classes: int):
    import keras
    import tensorflow as tf

    from keras_ls import SmoothedCE

    if variant == "smoothed":
        loss = SmoothedCE(0.1, from_logits=True)

        def compute(y, z):
            return loss(y, z)
    elif variant == "keras_dense":
        loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)

        def compute(y, z):
            return loss(tf.one_hot(y, num_classes), z)
    else:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

        def compute(y, z):
            return loss(y, z)

    @tf.function(jit_compile=(mode == "xla"))
    def step(y, z):
        with tf.GradientTape() as tape:
            tape.watch(z)
            value = compute(y, z)
        grad = tape.gradient(value, z)
        # Reduce so that the gradient is materialised but not returned.
        return value, tf.reduce_sum(grad[:, :1])

    return step


def _inputs(batch: int, num_classes: int):
    import tensorflow as tf

    # Made by TF directly: no float64 numpy temporaries to inflate peak RSS.
    z = tf.random.stateless_normal((batch, num_classes), seed=(1, 2))
    y = tf.random.stateless_uniform((batch,), (3, 4), 0, num_classes, dtype=tf.int32)
    return y, z


def time_shape(batch: int, num_classes: int, mode: str, reps: int) -> dict:
    steps = {v: _step_fn(v, mode, num_classes) for v in VARIANTS}
    y, z = _inputs(batch, num_classes)
    for step in steps.values():  # trace + warm up
        for _ in range(2):
            [t.numpy() for t in step(y, z)]
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for r in range(reps):
        order = VARIANTS[r % 3 :] + VARIANTS[: r % 3]  # rotate to spread drift
        for v in order:
            t0 = time.perf_counter()
            [t.numpy() for t in steps[v](y, z)]
            times[v].append(time.perf_counter() - t0)
    med = {v: statistics.median(ts) for v, ts in times.items()}
    return {
        "median_ms": {v: 1e3 * t for v, t in med.items()},
        "vs_keras_dense": med["smoothed"] / med["keras_dense"],
        "vs_keras_sparse": med["smoothed"] / med["keras_sparse"],
    }


def _peak_child(variant: str, mode: str, batch: int, num_classes: int) -> None:
    """Subprocess body: print peak extra memory, in logits buffers."""
    import tensorflow as tf

    y, z = _inputs(batch, num_classes)
    step = _step_fn(variant, mode, num_classes)
    gpu = bool(tf.config.list_physical_devices("GPU"))
    buf = batch * num_classes * 4
    # Warm-up on a tiny problem so that code/allocator set-up is not counted.
    ys, zs = _inputs(4, num_classes)
    [t.numpy() for t in step(ys, zs)]
    # On CPU the parent sets TF_CPU_ALLOCATOR_USE_BFC=true so that TF's own
    # allocator tracks current/peak bytes there too.
    device = "GPU:0" if gpu else "CPU:0"
    tf.config.experimental.reset_memory_stats(device)
    base = tf.config.experimental.get_memory_info(device)["current"]
    [t.numpy() for t in step(y, z)]
    extra = tf.config.experimental.get_memory_info(device)["peak"] - base
    print(json.dumps({"extra_buffers": extra / buf, "device": "GPU" if gpu else "CPU"}))


def peak_memory(variant: str, mode: str, batch: int, num_classes: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", variant, mode, str(batch), str(num_classes)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "TF_CPU_ALLOCATOR_USE_BFC": "true"},
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small shapes, few reps")
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        v, m, b, k = args.child
        _peak_child(v, m, int(b), int(k))
        return
    shapes = [(256, 10), (64, 1000)] if args.quick else SHAPES
    reps = 3 if args.quick else args.reps
    import keras
    import tensorflow as tf

    rows = []
    for batch, k in shapes:
        for mode in MODES:
            row = {"shape": [batch, k], "mode": mode, **time_shape(batch, k, mode, reps)}
            if not args.no_memory:
                row["extra_buffers"] = {
                    v: round(peak_memory(v, mode, batch, k)["extra_buffers"], 2) for v in VARIANTS
                }
            rows.append(row)
            print(json.dumps(row), flush=True)
    meta = {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "device": "GPU" if tf.config.list_physical_devices("GPU") else "CPU",
        "reps": reps,
        "command": "python benchmarks/loss_speed.py" + (" --quick" if args.quick else ""),
    }
    lines = [
        "| shape (B, K) | mode | SmoothedCE ms | ÷ Keras dense+LS | ÷ Keras sparse (no LS) "
        "| extra mem (buffers) ours / dense / sparse |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        mem = r.get("extra_buffers")
        mem_s = " / ".join(f"{mem[v]:.2f}" for v in VARIANTS) if mem else "–"
        lines.append(
            f"| ({r['shape'][0]}, {r['shape'][1]}) | {r['mode']} | "
            f"{r['median_ms']['smoothed']:.2f} | {r['vs_keras_dense']:.2f}× | "
            f"{r['vs_keras_sparse']:.2f}× | {mem_s} |"
        )
    table = "\n".join(lines)
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "loss_speed_quick" if args.quick else "loss_speed"
    (out / f"{name}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    (out / f"{name}.md").write_text(f"{table}\n\n`{meta['command']}` on {meta}\n")


if __name__ == "__main__":
    main()
