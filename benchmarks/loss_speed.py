"""Forward+backward speed and memory of SmoothedCE vs each backend's native losses.

One process per Keras backend (``--backend all`` spawns one for each), integer
labels, the variants of a backend run side by side in that process, interleaved
(in a fresh random order every round); times are medians of ``--reps`` rounds and
ratios the median of the per-round ratios (robust to other processes' load). Ours is measured
twice: the public ``keras_ls.SmoothedCE(0.1, from_logits=True)`` through
``Loss.__call__`` (what users run) and the raw kernel
``keras_ls._backend.sparse_smoothed_crossentropy(...).mean()``, so that the
Loss-level overhead is visible.

- torch (eager): ``F.cross_entropy(label_smoothing=0.1)``; Keras
  ``CategoricalCrossentropy(label_smoothing=0.1)`` on a one-hot built in the step
  and Keras ``SparseCategoricalCrossentropy`` (no smoothing), both through
  ``Loss.__call__`` like ours. No memory column: torch's CPU allocator keeps no
  statistics.
- JAX (inside ``jax.jit(jax.value_and_grad(...))``): optax
  ``softmax_cross_entropy(z, smooth_labels(one_hot(y), 0.1))``, optax
  ``softmax_cross_entropy_with_integer_labels`` (no smoothing: the floor), the
  two Keras losses, and ``autodiff``: JAX's own gradient of the very forward
  our ``custom_vjp`` uses (``keras_ls._backend.jax.forward``), the alternative
  the ``custom_vjp`` has to beat. Memory: XLA's ``memory_analysis()`` temporaries (inputs and
  outputs -- the gradient -- excluded), in logits-sized buffers.
- TensorFlow (``tf.function`` graph and ``jit_compile=True``): the two Keras
  losses. Memory: peak extra bytes of one step over what was held before it
  (inputs included, the gradient counts as one buffer) from TF's allocator
  statistics, in a fresh subprocess per variant (on CPU with
  ``TF_CPU_ALLOCATOR_USE_BFC=true``, which keeps those statistics).

    python benchmarks/loss_speed.py                      # all three backends (~15 min)
    python benchmarks/loss_speed.py --backend torch      # one backend
    python benchmarks/loss_speed.py --quick              # small smoke run
    python benchmarks/loss_speed.py --torch-threads 1    # stable torch timings on a busy machine

Writes ``benchmarks/results/loss_speed.{json,md}`` (``--backend all``) or
``loss_speed_<backend>.{json,md}`` (one backend); ``--quick`` adds ``_quick``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
SHAPES = [(8192, 10), (2048, 1000), (512, 32000), (256, 128000)]
QUICK_SHAPES = [(256, 10), (64, 1000)]
BACKENDS = ("tensorflow", "jax", "torch")
SMOOTHING = 0.1


def cpu_model() -> str:
    """``lscpu``'s "Model name" (the tables' numbers depend on it), else /proc/cpuinfo's."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.strip().startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


# ----------------------------------------------------------------------------- timing


def interleaved_times(steps: dict, reps: int, warmup: int = 2) -> dict[str, list[float]]:
    """Seconds per call of each zero-argument step, ``reps`` rounds run interleaved."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    names = list(steps)
    times: dict[str, list[float]] = {v: [] for v in names}
    rng = random.Random(0)
    for _ in range(reps):
        # A fresh order every round: a fixed (or rotated) cyclic order gives each
        # variant a fixed predecessor, and the one after a memory-hungry variant
        # was measured 15 % slower (JAX, (512, 32000)) whichever it was.
        order = rng.sample(names, len(names))
        for v in order:
            t0 = time.perf_counter()
            steps[v]()
            times[v].append(time.perf_counter() - t0)
    return times


def _medians_ms(times: dict[str, list[float]]) -> dict[str, float]:
    return {v: 1e3 * statistics.median(ts) for v, ts in times.items()}


def _ratios(times: dict[str, list[float]], pairs: dict[str, tuple[str, str]]) -> dict[str, float]:
    """Median over rounds of the paired ratio ``a / b`` (both timed in the same round).

    Pairing cancels the load of other processes on a shared machine far better
    than a ratio of medians does: both variants of a round see the same load.
    """
    return {
        key: statistics.median(x / y for x, y in zip(times[a], times[b]))
        for key, (a, b) in pairs.items()
        if a in times and b in times
    }


# ----------------------------------------------------------------------------- torch


def torch_shape(batch: int, num_classes: int, reps: int) -> dict:
    import keras
    import torch
    import torch.nn.functional as F

    from keras_ls import SmoothedCE
    from keras_ls._backend import sparse_smoothed_crossentropy

    gen = torch.Generator().manual_seed(0)
    z0 = torch.randn(batch, num_classes, generator=gen)
    y = torch.randint(0, num_classes, (batch,), generator=gen)
    y32 = y.int()
    ours = SmoothedCE(SMOOTHING, from_logits=True)
    dense = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=SMOOTHING)
    sparse = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    a = torch.tensor(SMOOTHING)
    losses = {
        "smoothed": lambda z: ours(y, z),
        "kernel": lambda z: sparse_smoothed_crossentropy(z, y32, a).mean(),
        "f_cross_entropy_ls": lambda z: F.cross_entropy(z, y, label_smoothing=SMOOTHING),
        "keras_dense": lambda z: dense(F.one_hot(y, num_classes), z),
        "keras_sparse": lambda z: sparse(y, z),
    }

    def make(fn):
        def step():
            z = z0.detach().requires_grad_()
            fn(z).backward()
            return z.grad

        return step

    times = interleaved_times({v: make(f) for v, f in losses.items()}, reps)
    return {
        "shape": [batch, num_classes],
        "median_ms": _medians_ms(times),
        "ratios": _ratios(
            times,
            {
                "smoothed/f_cross_entropy_ls": ("smoothed", "f_cross_entropy_ls"),
                "kernel/f_cross_entropy_ls": ("kernel", "f_cross_entropy_ls"),
                "smoothed/keras_sparse": ("smoothed", "keras_sparse"),
                "smoothed/keras_dense": ("smoothed", "keras_dense"),
            },
        ),
        "extra_buffers": None,
    }


def torch_meta() -> dict:
    import torch

    return {"torch": torch.__version__, "threads": torch.get_num_threads(), "device": "CPU"}


def torch_table(rows: list[dict]) -> str:
    lines = [
        "| shape (B, K) | SmoothedCE ms | kernel ms | ÷ F.cross_entropy(LS) SmoothedCE / kernel "
        "| ÷ Keras sparse (no LS) | ÷ Keras dense+LS | extra mem |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ms, q = r["median_ms"], r["ratios"]
        lines.append(
            f"| ({r['shape'][0]}, {r['shape'][1]}) | {ms['smoothed']:.2f} | {ms['kernel']:.2f} | "
            f"{q['smoothed/f_cross_entropy_ls']:.2f}× / {q['kernel/f_cross_entropy_ls']:.2f}× | "
            f"{q['smoothed/keras_sparse']:.2f}× | {q['smoothed/keras_dense']:.2f}× | n/a |"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- JAX

JAX_MEM = ("kernel", "autodiff", "optax_floor", "optax_ls")


def jax_shape(batch: int, num_classes: int, reps: int) -> dict:
    import jax
    import keras
    import optax

    from keras_ls import SmoothedCE
    from keras_ls._backend import jax as jax_kernel

    key_z, key_y = jax.random.split(jax.random.PRNGKey(0))
    z = jax.random.normal(key_z, (batch, num_classes))
    y = jax.random.randint(key_y, (batch,), 0, num_classes)
    ours = SmoothedCE(SMOOTHING, from_logits=True)
    dense = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=SMOOTHING)
    sparse = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    kernel = jax_kernel.sparse_smoothed_crossentropy
    losses = {
        "smoothed": lambda z, y: ours(y, z),
        "kernel": lambda z, y: kernel(z, y, SMOOTHING).mean(),
        "autodiff": lambda z, y: jax_kernel.forward(z, y, SMOOTHING, None)[0].mean(),
        "optax_floor": lambda z, y: optax.softmax_cross_entropy_with_integer_labels(z, y).mean(),
        "optax_ls": lambda z, y: optax.softmax_cross_entropy(
            z, optax.smooth_labels(jax.nn.one_hot(y, num_classes), SMOOTHING)
        ).mean(),
        "keras_dense": lambda z, y: dense(jax.nn.one_hot(y, num_classes), z),
        "keras_sparse": lambda z, y: sparse(y, z),
    }
    jitted = {v: jax.jit(jax.value_and_grad(f)) for v, f in losses.items()}
    steps = {v: (lambda f=f: jax.block_until_ready(f(z, y))) for v, f in jitted.items()}
    times = interleaved_times(steps, reps)
    buf = batch * num_classes * z.dtype.itemsize
    mem = {}
    for v in JAX_MEM:
        analysis = jitted[v].lower(z, y).compile().memory_analysis()
        mem[v] = round(analysis.temp_size_in_bytes / buf, 2)
    return {
        "shape": [batch, num_classes],
        "median_ms": _medians_ms(times),
        "ratios": _ratios(
            times,
            {
                "smoothed/optax_floor": ("smoothed", "optax_floor"),
                "kernel/optax_floor": ("kernel", "optax_floor"),
                "autodiff/optax_floor": ("autodiff", "optax_floor"),
                "smoothed/optax_ls": ("smoothed", "optax_ls"),
                "smoothed/keras_sparse": ("smoothed", "keras_sparse"),
                "smoothed/keras_dense": ("smoothed", "keras_dense"),
            },
        ),
        "extra_buffers": mem,
    }


def jax_meta() -> dict:
    import jax
    import optax

    return {"jax": jax.__version__, "optax": optax.__version__, "device": jax.devices()[0].platform}


def jax_table(rows: list[dict]) -> str:
    lines = [
        "| shape (B, K) | SmoothedCE ms | kernel ms | ÷ optax int-label floor (no LS) "
        "SmoothedCE / kernel / autodiff | ÷ optax LS | ÷ Keras sparse (no LS) | "
        "÷ Keras dense+LS | temp buffers kernel / autodiff / floor / optax LS |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ms, q, mem = r["median_ms"], r["ratios"], r["extra_buffers"]
        lines.append(
            f"| ({r['shape'][0]}, {r['shape'][1]}) | {ms['smoothed']:.2f} | {ms['kernel']:.2f} | "
            f"{q['smoothed/optax_floor']:.2f}× / {q['kernel/optax_floor']:.2f}× / "
            f"{q['autodiff/optax_floor']:.2f}× | {q['smoothed/optax_ls']:.2f}× | "
            f"{q['smoothed/keras_sparse']:.2f}× | {q['smoothed/keras_dense']:.2f}× | "
            + " / ".join(f"{mem[v]:.2f}" for v in JAX_MEM)
            + " |"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- TensorFlow

TF_VARIANTS = ("smoothed", "kernel", "keras_dense", "keras_sparse")
TF_MEM = ("smoothed", "keras_dense", "keras_sparse")
TF_MODES = ("graph", "xla")


def _tf_step(variant: str, mode: str, num_classes: int):
    import keras
    import tensorflow as tf

    from keras_ls import SmoothedCE
    from keras_ls._backend import sparse_smoothed_crossentropy

    if variant == "smoothed":
        loss = SmoothedCE(SMOOTHING, from_logits=True)

        def compute(y, z):
            return loss(y, z)
    elif variant == "kernel":

        def compute(y, z):
            return tf.reduce_mean(sparse_smoothed_crossentropy(z, y, SMOOTHING))
    elif variant == "keras_dense":
        loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=SMOOTHING)

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
        # The whole gradient is returned, as the layer below receives it: returning a
        # slice of it (as this benchmark did up to 0.1) lets XLA compute that slice only.
        return value, tape.gradient(value, z)

    return step


def _tf_inputs(batch: int, num_classes: int):
    import tensorflow as tf

    # Made by TF directly: no float64 numpy temporaries to inflate peak memory.
    z = tf.random.stateless_normal((batch, num_classes), seed=(1, 2))
    y = tf.random.stateless_uniform((batch,), (3, 4), 0, num_classes, dtype=tf.int32)
    return y, z


def tf_shape(batch: int, num_classes: int, reps: int, memory: bool = True) -> list[dict]:
    rows = []
    y, z = _tf_inputs(batch, num_classes)
    for mode in TF_MODES:
        steps = {v: _tf_step(v, mode, num_classes) for v in TF_VARIANTS}
        calls = {v: (lambda s=s: s(y, z)[0].numpy()) for v, s in steps.items()}
        times = interleaved_times(calls, reps)
        row = {
            "shape": [batch, num_classes],
            "mode": mode,
            "median_ms": _medians_ms(times),
            "ratios": _ratios(
                times,
                {
                    "smoothed/keras_dense": ("smoothed", "keras_dense"),
                    "smoothed/keras_sparse": ("smoothed", "keras_sparse"),
                    "kernel/keras_sparse": ("kernel", "keras_sparse"),
                },
            ),
            "extra_buffers": None,
        }
        if memory:
            row["extra_buffers"] = {
                v: round(_tf_peak(v, mode, batch, num_classes), 2) for v in TF_MEM
            }
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    return rows


def _tf_peak_child(variant: str, mode: str, batch: int, num_classes: int) -> None:
    """Subprocess body: print peak extra memory of one step, in logits buffers."""
    import tensorflow as tf

    # One op at a time: with inter-op parallelism the peak depends on which
    # independent ops happen to overlap (SmoothedCE at (8192, 10) read 2.9 to 4.2).
    tf.config.threading.set_inter_op_parallelism_threads(1)
    y, z = _tf_inputs(batch, num_classes)
    step = _tf_step(variant, mode, num_classes)
    gpu = bool(tf.config.list_physical_devices("GPU"))
    ys, zs = _tf_inputs(4, num_classes)  # trace + allocator set-up, not counted
    step(ys, zs)[0].numpy()
    device = "GPU:0" if gpu else "CPU:0"
    tf.config.experimental.reset_memory_stats(device)
    base = tf.config.experimental.get_memory_info(device)["current"]
    out = step(y, z)
    out[0].numpy()
    extra = tf.config.experimental.get_memory_info(device)["peak"] - base
    print(json.dumps({"extra_buffers": extra / (batch * num_classes * 4)}))


def _tf_peak(variant: str, mode: str, batch: int, num_classes: int) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--tf-peak-child", variant, mode, str(batch), str(num_classes)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "TF_CPU_ALLOCATOR_USE_BFC": "true", "KERAS_BACKEND": "tensorflow"},
    ).stdout
    return json.loads(out.strip().splitlines()[-1])["extra_buffers"]


def tensorflow_meta() -> dict:
    import tensorflow as tf

    gpu = tf.config.list_physical_devices("GPU")
    return {"tensorflow": tf.__version__, "device": "GPU" if gpu else "CPU"}


def tensorflow_table(rows: list[dict]) -> str:
    lines = [
        "| shape (B, K) | mode | SmoothedCE ms | kernel ms | ÷ Keras dense+LS | "
        "÷ Keras sparse (no LS) | extra mem (buffers) ours / dense / sparse |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ms, q, mem = r["median_ms"], r["ratios"], r.get("extra_buffers")
        mem_s = " / ".join(f"{mem[v]:.2f}" for v in TF_MEM) if mem else "–"
        lines.append(
            f"| ({r['shape'][0]}, {r['shape'][1]}) | {r['mode']} | {ms['smoothed']:.2f} | "
            f"{ms['kernel']:.2f} | {q['smoothed/keras_dense']:.2f}× | "
            f"{q['smoothed/keras_sparse']:.2f}× | {mem_s} |"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- driver

TABLES = {"tensorflow": tensorflow_table, "jax": jax_table, "torch": torch_table}
TITLES = {
    "tensorflow": "TensorFlow (`tf.function` graph and `jit_compile=True`)",
    "jax": "JAX (inside `jax.jit(jax.value_and_grad(...))`)",
    "torch": "torch (eager)",
}


def run_backend(backend: str, shapes: list, reps: int, memory: bool) -> dict:
    """Body of one backend's process (KERAS_BACKEND already set)."""
    import keras

    if keras.backend.backend() != backend:
        raise RuntimeError(
            f"KERAS_BACKEND={backend} expected; Keras runs {keras.backend.backend()}"
        )
    rows = []
    for batch, k in shapes:
        if backend == "tensorflow":
            rows.extend(tf_shape(batch, k, reps, memory))
        else:
            row = {"jax": jax_shape, "torch": torch_shape}[backend](batch, k, reps)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    meta = {"tensorflow": tensorflow_meta, "jax": jax_meta, "torch": torch_meta}[backend]()
    meta.update({"keras": keras.__version__, "reps": reps})
    return {"meta": meta, "rows": rows}


def section(backend: str, result: dict, command: str, cpu: str) -> str:
    meta = ", ".join(f"{k} {v}" for k, v in result["meta"].items())
    return (
        f"### {TITLES[backend]}\n\n{TABLES[backend](result['rows'])}\n\n"
        f"CPU: {cpu} ({os.cpu_count()} CPUs). `{command}` ({meta}).\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=(*BACKENDS, "all"), default="all")
    parser.add_argument("--quick", action="store_true", help="small shapes, few reps")
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument(
        "--shapes",
        default=None,
        help="comma-separated BxK list, e.g. 512x32000,256x128000 (default: the four shapes)",
    )
    parser.add_argument("--no-memory", action="store_true", help="TF: skip the memory runs")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=0,
        help="torch intra-op threads (0: torch's default). On a shared machine, 1 is the "
        "stable choice: 2-thread ATen kernels slow down 10-20x whenever another process "
        "takes a core.",
    )
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tf-peak-child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tf_peak_child:
        v, m, b, k = args.tf_peak_child
        _tf_peak_child(v, m, int(b), int(k))
        return
    shapes = QUICK_SHAPES if args.quick else SHAPES
    if args.shapes:
        shapes = [tuple(int(v) for v in item.split("x")) for item in args.shapes.split(",")]
    reps = 3 if args.quick else args.reps
    if args.child:  # one backend, JSON on stdout for the parent
        if args.backend == "torch" and args.torch_threads:
            import torch

            torch.set_num_threads(args.torch_threads)
        print(json.dumps(run_backend(args.backend, shapes, reps, not args.no_memory)))
        return

    flags = (" --quick" if args.quick else "") + (" --no-memory" if args.no_memory else "")
    if not args.quick and args.reps != 15:
        flags += f" --reps {args.reps}"
    if args.torch_threads:
        flags += f" --torch-threads {args.torch_threads}"
    if args.shapes:
        flags += f" --shapes {args.shapes}"
    command = f"python benchmarks/loss_speed.py --backend {args.backend}{flags}"
    backends = BACKENDS if args.backend == "all" else (args.backend,)
    results = {}
    for backend in backends:
        child = [sys.executable, __file__, "--backend", backend, "--child", "--reps", str(reps)]
        child += ["--quick"] * args.quick + ["--no-memory"] * args.no_memory
        child += ["--torch-threads", str(args.torch_threads)]
        child += ["--shapes", args.shapes] if args.shapes else []
        out = subprocess.run(
            child,
            stdout=subprocess.PIPE,
            text=True,
            check=True,
            cwd=ROOT,
            env={**os.environ, "KERAS_BACKEND": backend},
        ).stdout
        results[backend] = json.loads(out.strip().splitlines()[-1])
    meta = {
        "cpu": cpu_model(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "command": command,
    }
    text = "\n".join(section(b, results[b], command, meta["cpu"]) for b in backends)
    text += (
        f"\nMachine: {meta['cpu']}, {meta['machine']}, {meta['cpus']} CPUs, "
        f"Python {meta['python']}.\n"
    )
    print(text)
    name = "loss_speed" if args.backend == "all" else f"loss_speed_{args.backend}"
    name += "_quick" if args.quick else ""
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(
        json.dumps({"meta": meta, "backends": results}, indent=2) + "\n"
    )
    (out_dir / f"{name}.md").write_text(text)


if __name__ == "__main__":
    main()
