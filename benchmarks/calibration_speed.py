"""Speed and accuracy of keras-ls calibration against torchmetrics and netcal (issue 12).

Everyone gets the same 1e6 x 10 float32 softmax probabilities and labels (fixed
seed), in one process, timed in interleaved repetitions (medians):

- **function**: ``keras_ls.calibration.expected_calibration_error`` against
  ``netcal.metrics.ECE(bins=15).measure`` (numpy, float64);
- **metric update**: ``keras_ls.ExpectedCalibrationError.update_state`` on the
  TensorFlow backend, eager (one call on all rows, and 100 calls of 10k rows)
  and inside a ``tf.function`` step as in ``fit`` (plain graph, Keras' default
  on CPU, and ``jit_compile=True``), against
  ``torchmetrics.classification.MulticlassCalibrationError.update`` with the same
  splits (torch tensors; torchmetrics keeps the rows and bins them in
  ``compute()``, so its ``update + compute`` is reported too);
- **accuracy**: every ECE and MCE against an independent float64 reference
  written here (``np.searchsorted`` on the float32 edges, float64 sums), target
  ``|error| <= 1e-6``. torchmetrics and netcal are listed with their own
  conventions (left-closed bins; netcal clips to ``[eps, 1 - eps]``;
  torchmetrics sums in float32), not held to the target.

``--backends tensorflow,jax,torch`` times the metric rows on JAX and torch too,
each in a subprocess (``KERAS_BACKEND`` is read once per process; ratios there
are against the torchmetrics update of the parent process).

    python benchmarks/calibration_speed.py                  # ~2 min on 2 cores
    python benchmarks/calibration_speed.py --backends tensorflow,jax,torch
    python benchmarks/calibration_speed.py --quick --out /tmp/cal   # smoke run

Writes ``calibration_speed.json`` and ``calibration_speed.md`` to ``--out``
(default ``benchmarks/results/``).
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
NUM_BINS = 15
BATCH = 10_000
PAUSE_S = 0.3  # before each timed call, see interleaved()


def make_data(n: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Over-confident float32 softmax probabilities and labels drawn from a softer model."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, k)) * 2.5
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs = (probs / probs.sum(1, keepdims=True)).astype(np.float32)
    soft = np.exp(logits / 1.5 - (logits / 1.5).max(1, keepdims=True))
    soft /= soft.sum(1, keepdims=True)
    labels = (soft.cumsum(1) > rng.random((n, 1))).argmax(1)
    return probs, labels


def reference(probs: np.ndarray, labels: np.ndarray, num_bins: int) -> dict[str, float]:
    """Top-label ECE and MCE, bins (i/M, (i+1)/M] compared in float32, float64 sums."""
    pred = probs.argmax(1)
    conf = probs[np.arange(len(probs)), pred]
    hit = (pred == labels).astype(np.float64)
    edges = (np.arange(1, num_bins) / num_bins).astype(probs.dtype)
    idx = np.searchsorted(edges, conf, side="left")
    count = np.bincount(idx, minlength=num_bins).astype(np.float64)
    conf_sum = np.bincount(idx, weights=conf.astype(np.float64), minlength=num_bins)
    hit_sum = np.bincount(idx, weights=hit, minlength=num_bins)
    filled = count > 0
    gaps = np.abs(hit_sum - conf_sum)
    return {
        "ece": float(gaps.sum() / count.sum()),
        "mce": float((gaps[filled] / count[filled]).max()),
    }


def interleaved(cases: dict[str, Callable[[], Any]], reps: int) -> dict[str, float]:
    """Median ms of each case, run in rotating order (one warm-up call each first).

    The minimum of each case is stored too, under ``"<case> (min)"``: on a shared
    machine it is the less noisy of the two. A pause before each timed call lets
    the worker threads of the framework that ran last (TF's and torch's pools
    spin a while after work) go idle, so that they do not slow the next case.
    """
    names = list(cases)
    for name in names:
        cases[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(reps):
        for name in names[r % len(names):] + names[: r % len(names)]:
            time.sleep(PAUSE_S)
            t0 = time.perf_counter()
            cases[name]()
            times[name].append(time.perf_counter() - t0)
    out = {name: 1e3 * statistics.median(ts) for name, ts in times.items()}
    out.update({f"{name} (min)": 1e3 * min(ts) for name, ts in times.items()})
    return out


def keras_metric_cases(probs: np.ndarray, labels: np.ndarray) -> tuple[dict, dict]:
    """Timed cases and final values of the keras-ls metrics on the current backend."""
    import keras
    from keras import ops

    from keras_ls.metrics import ExpectedCalibrationError, MaximumCalibrationError

    backend = keras.backend.backend()
    p, y = ops.convert_to_tensor(probs), ops.convert_to_tensor(labels.astype(np.int32))
    splits = [(y[s: s + BATCH], p[s: s + BATCH]) for s in range(0, len(probs), BATCH)]
    ece, mce = ExpectedCalibrationError(NUM_BINS), MaximumCalibrationError(NUM_BINS)

    def sync(m):
        return float(ops.convert_to_numpy(m.result()))

    def one_call(m=ece):
        m.reset_state()
        m.update_state(y, p)
        if backend != "tensorflow":  # async dispatch (JAX): wait for the result
            sync(m)

    def batches(m=ece):
        m.reset_state()
        for yb, pb in splits:
            m.update_state(yb, pb)
        if backend != "tensorflow":
            sync(m)

    cases = {"update, 1 call": one_call, f"update, {len(splits)} calls": batches}
    values = {}
    if backend == "tensorflow":
        import tensorflow as tf

        # Inside a step function, as in fit: a plain graph (Keras' default on CPU) and XLA.
        for mode, jit in (("graph", False), ("XLA", True)):
            metric = ExpectedCalibrationError(NUM_BINS)
            step = tf.function(metric.update_state, jit_compile=jit)

            def step_one_call(metric=metric, step=step):
                metric.reset_state()
                step(y, p)

            def step_batches(metric=metric, step=step):
                metric.reset_state()
                for yb, pb in splits:
                    step(yb, pb)

            cases[f"update in {mode} step, 1 call"] = step_one_call
            cases[f"update in {mode} step, {len(splits)} calls"] = step_batches
            step_one_call()
            values[f"ece, {mode} step"] = sync(metric)
    one_call(ece)
    values["ece, 1 call"] = sync(ece)
    batches(ece)
    values[f"ece, {len(splits)} calls"] = sync(ece)
    one_call(mce)
    values["mce, 1 call"] = sync(mce)
    batches(mce)
    values[f"mce, {len(splits)} calls"] = sync(mce)
    return cases, values


def child(n: int, k: int, reps: int) -> None:
    """Subprocess body for --backends: metric rows on KERAS_BACKEND, as JSON."""
    import keras

    probs, labels = make_data(n, k)
    cases, values = keras_metric_cases(probs, labels)
    times = interleaved(cases, reps)
    print(json.dumps({"backend": keras.backend.backend(), "times_ms": times, "values": values}))


def run(n: int, k: int, reps: int, backends: list[str]) -> dict:
    # torch (and torchmetrics) before TensorFlow: the other order segfaults here.
    import netcal
    import netcal.metrics
    import torch
    import torchmetrics
    from torchmetrics.classification import MulticlassCalibrationError

    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    import tensorflow as tf

    import keras_ls
    from keras_ls.calibration import expected_calibration_error, maximum_calibration_error

    probs, labels = make_data(n, k)
    ref = reference(probs, labels, NUM_BINS)

    # -- function: ours vs netcal
    netcal_ece, netcal_mce = netcal.metrics.ECE(NUM_BINS), netcal.metrics.MCE(NUM_BINS)
    fn_times = interleaved(
        {
            "keras_ls expected_calibration_error": lambda: expected_calibration_error(
                labels, probs, NUM_BINS
            ),
            "netcal ECE.measure": lambda: netcal_ece.measure(probs, labels),
        },
        reps,
    )
    fn_values = {
        "keras_ls ece": expected_calibration_error(labels, probs, NUM_BINS),
        "keras_ls mce": maximum_calibration_error(labels, probs, NUM_BINS),
        "netcal ece": float(netcal_ece.measure(probs, labels)),
        "netcal mce": float(netcal_mce.measure(probs, labels)),
    }

    # -- metric: ours (TF) vs torchmetrics, same splits
    pt, yt = torch.from_numpy(probs), torch.from_numpy(labels)
    t_splits = [(pt[s: s + BATCH], yt[s: s + BATCH]) for s in range(0, n, BATCH)]
    tm = MulticlassCalibrationError(num_classes=k, n_bins=NUM_BINS)

    def tm_one_call():
        tm.reset()
        tm.update(pt, yt)

    def tm_batches():
        tm.reset()
        for pb, yb in t_splits:
            tm.update(pb, yb)

    def tm_total():
        tm_one_call()
        return float(tm.compute())

    ours, metric_values = keras_metric_cases(probs, labels)
    theirs = {
        "tm update, 1 call": tm_one_call,
        f"tm update, {len(t_splits)} calls": tm_batches,
        "tm update + compute, 1 call": tm_total,
    }
    metric_times = interleaved({**ours, **theirs}, reps)
    tm_mce = MulticlassCalibrationError(num_classes=k, n_bins=NUM_BINS, norm="max")
    tm_mce.update(pt, yt)
    metric_values["torchmetrics ece"] = tm_total()
    metric_values["torchmetrics mce"] = float(tm_mce.compute())

    other = {}
    for backend in backends:
        if backend == "tensorflow":
            continue
        proc = subprocess.run(
            [sys.executable, __file__, "--child", str(n), str(k), str(reps)],
            env={**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": str(ROOT)},
            capture_output=True, text=True, check=True,
        )
        other[backend] = json.loads(proc.stdout.strip().splitlines()[-1])

    return {
        "meta": {
            "n": n, "num_classes": k, "num_bins": NUM_BINS, "batch": BATCH, "reps": reps,
            "seed": 0, "cpus": os.cpu_count(), "machine": platform.machine(),
            "cpu": _cpu_model(),
            "versions": {
                "keras_ls": keras_ls.__version__, "keras": keras.__version__,
                "tensorflow": tf.__version__, "torch": torch.__version__,
                "torchmetrics": torchmetrics.__version__, "netcal": netcal.__version__,
                "numpy": np.__version__,
            },
            "command": "python benchmarks/calibration_speed.py " + " ".join(sys.argv[1:]),
        },
        "reference": ref,
        "function": {"times_ms": fn_times, "values": fn_values},
        "metric": {"times_ms": metric_times, "values": metric_values},
        "other_backends": other,
    }


def _cpu_model() -> str:
    """``lscpu``'s "Model name": the times above depend on it."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return platform.processor() or "unknown CPU"
    names = [ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name:")]
    return names[0] if names else platform.processor() or "unknown CPU"


def _row(name: str, times: dict, case: str, peer_times: dict | None, peer: str | None) -> str:
    """Median and min of ``case``, and their ratios to ``peer`` (``-`` for a peer row)."""
    ms, best = times[case], times[f"{case} (min)"]
    if peer is None:
        return f"| {name} | {ms:.1f} | {best:.1f} | - |"
    ratio = ms / peer_times[peer]
    ratio_min = best / peer_times[f"{peer} (min)"]
    return f"| {name} | {ms:.1f} | {best:.1f} | {ratio:.2f}x / {ratio_min:.2f}x |"


def markdown(result: dict) -> str:
    meta, ref = result["meta"], result["reference"]
    fn, met = result["function"]["times_ms"], result["metric"]["times_ms"]
    calls = meta["n"] // meta["batch"]
    one, many = "tm update, 1 call", f"tm update, {calls} calls"
    lines = [
        f"### Calibration speed ({meta['n']:.0e} x {meta['num_classes']} float32, "
        f"{meta['num_bins']} bins, {meta['cpus']} CPUs)",
        "",
        "| case | median ms | min ms | ratio to the peer (median / min) |",
        "|---|---|---|---|",
        _row("keras_ls `expected_calibration_error` (numpy)", fn,
             "keras_ls expected_calibration_error", fn, "netcal ECE.measure"),
        _row("netcal `ECE.measure` (peer)", fn, "netcal ECE.measure", None, None),
        _row("`ExpectedCalibrationError.update_state`, TF eager, 1 call", met,
             "update, 1 call", met, one),
        _row(f"`ExpectedCalibrationError.update_state`, TF eager, {calls} calls", met,
             f"update, {calls} calls", met, many),
        _row("`update_state` in a `tf.function` step (no XLA), 1 call", met,
             "update in graph step, 1 call", met, one),
        _row(f"`update_state` in a `tf.function` step (no XLA), {calls} calls", met,
             f"update in graph step, {calls} calls", met, many),
        _row("`update_state` in a `tf.function(jit_compile=True)` step, 1 call", met,
             "update in XLA step, 1 call", met, one),
        _row(f"`update_state` in a `tf.function(jit_compile=True)` step, {calls} calls", met,
             f"update in XLA step, {calls} calls", met, many),
    ]
    for backend, res in result["other_backends"].items():
        t = res["times_ms"]
        lines += [
            _row(f"`update_state`, {backend} eager, 1 call", t, "update, 1 call", met, one),
            _row(f"`update_state`, {backend} eager, {calls} calls", t,
                 f"update, {calls} calls", met, many),
        ]
    lines += [
        _row("torchmetrics `MulticlassCalibrationError.update`, 1 call (peer)", met, one,
             None, None),
        _row(f"torchmetrics `update`, {calls} calls (peer)", met, many, None, None),
        _row("torchmetrics `update` + `compute`, 1 call", met, "tm update + compute, 1 call",
             None, None),
        "",
        "Other backends run in their own process after this one; their ratios are against "
        "the torchmetrics times above.",
        "",
        f"Accuracy against the float64 reference (ECE {ref['ece']:.9f}, MCE {ref['mce']:.9f}):",
        "",
        "| value | ECE or MCE | abs. error |",
        "|---|---|---|",
    ]
    values = {**result["function"]["values"], **result["metric"]["values"]}
    for backend, res in result["other_backends"].items():
        values.update({f"{k} ({backend})": v for k, v in res["values"].items()})
    for name, v in values.items():
        want = ref["mce"] if "mce" in name else ref["ece"]
        lines.append(f"| {name} | {v:.9f} | {abs(v - want):.1e} |")
    worst = max(
        abs(v - (ref["mce"] if "mce" in name else ref["ece"]))
        for name, v in values.items() if not name.startswith(("netcal", "torchmetrics"))
    )
    lines += ["", f"Worst keras-ls error: {worst:.1e} (target 1e-6).", "",
              f"CPU: {meta.get('cpu', 'unknown')} ({meta['cpus']} CPUs).", "",
              f"`{meta['command'].strip()}` · versions {json.dumps(meta['versions'])}"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1e5 rows, 3 reps")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--backends", default="tensorflow",
                        help="comma-separated: tensorflow,jax,torch")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--child", nargs=3, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    n, reps = (100_000, 3) if args.quick else (1_000_000, args.reps)
    result = run(n, 10, reps, args.backends.split(","))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "calibration_speed.json").write_text(json.dumps(result, indent=2) + "\n")
    md = markdown(result)
    (out / "calibration_speed.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
