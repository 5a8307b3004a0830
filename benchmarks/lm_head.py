"""LM head + cross-entropy: fused and chunked (keras-ls) against the unfused Keras head.

For each backend (TensorFlow graph, TensorFlow XLA -- what Keras' ``fit`` uses on TF by
default --, JAX jit, torch eager) and each (tokens, H, V), one
fwd+bwd of the mean loss with the gradients of the hidden states, kernel and bias:

- ``keras_scce``: ``h @ W + b`` then ``keras.losses.SparseCategoricalCrossentropy`` (no smoothing)
- ``dense_smoothed``: ``h @ W + b`` then ``keras_ls.SmoothedCE(0.1)`` (the unfused baseline)
- ``fused``: ``keras_ls.losses.LinearSmoothedCE(0.1, kernel=W, bias=b)`` on ``h``
  (default chunk: 16 MiB of float32 logits); ``fused_4x``: ``chunk_size`` 4x the default
- torch only: ``F.linear_cross_entropy`` at ``label_smoothing`` 0 and 0.1, without and with
  ``options=LinearCrossEntropyOptions()`` (its chunked path)

Each (backend, shape, variant) runs in a fresh process: inputs are made and the step traced
(JAX: compiled; TF XLA compiles at the first call, so its peak includes compilation: an
upper bound), the process' peak RSS is reset (``/proc/self/clear_refs``), one step runs,
and the growth of the peak RSS over the RSS before it is the step's peak memory (the
returned gradients included; the table also subtracts them). Then ``--repeats`` timed
steps; the time is their median. JAX also reports XLA's ``memory_analysis`` temp bytes.

    PYTHONPATH=$PWD python benchmarks/lm_head.py            # both shapes, all backends
    PYTHONPATH=$PWD python benchmarks/lm_head.py --shapes 1024x256x128000 --backends jax
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

VARIANTS = {
    "tensorflow": ["keras_scce", "dense_smoothed", "fused", "fused_4x"],
    "tensorflow-xla": ["keras_scce", "dense_smoothed", "fused", "fused_4x"],
    "jax": ["keras_scce", "dense_smoothed", "fused", "fused_4x"],
    "torch": [
        "keras_scce",
        "dense_smoothed",
        "fused",
        "fused_4x",
        "torch_lce_a0",
        "torch_lce_a0.1",
        "torch_lce_chunked_a0",
        "torch_lce_chunked_a0.1",
    ],
}
A = 0.1


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM, the peak RSS (Linux >= 4.0)


def worker(backend: str, variant: str, n: int, hidden: int, vocab: int, repeats: int) -> dict:
    xla = backend == "tensorflow-xla"
    backend = "tensorflow" if xla else backend
    os.environ["KERAS_BACKEND"] = backend
    import keras
    import numpy as np

    import keras_ls
    from keras_ls._lm_head import default_chunk

    rng = np.random.default_rng(0)
    h = rng.normal(size=(n, hidden)).astype("float32")
    w = (rng.normal(size=(hidden, vocab)) / np.sqrt(hidden)).astype("float32")
    b = np.zeros((vocab,), "float32")
    y = rng.integers(0, vocab, size=(n,)).astype("int32")

    # The loss objects are made once, outside any traced function (they hold variables).
    chunk = 4 * default_chunk(n, vocab) if variant == "fused_4x" else None
    fused = keras_ls.losses.LinearSmoothedCE(A, chunk_size=chunk)
    scce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    smoothed = keras_ls.SmoothedCE(A, from_logits=True)

    def loss_of(h, w, b):
        if variant.startswith("fused"):
            fused.set_head(kernel=w, bias=b)
            return fused(y, h)
        z = keras.ops.matmul(h, w) + b
        return (scce if variant == "keras_scce" else smoothed)(y, z)

    extra = {}
    if backend == "jax":
        import jax

        step = jax.jit(jax.value_and_grad(loss_of, argnums=(0, 1, 2)))
        args = [jax.numpy.asarray(x) for x in (h, w, b)]
        compiled = step.lower(*args).compile()
        mem = compiled.memory_analysis()
        extra["xla_temp_mb"] = getattr(mem, "temp_size_in_bytes", 0) / 2**20

        def run():
            jax.block_until_ready(compiled(*args))

    elif backend == "tensorflow":
        import tensorflow as tf

        args = [tf.Variable(x) for x in (h, w, b)]

        @tf.function(jit_compile=xla)
        def step():
            with tf.GradientTape() as tape:
                loss = loss_of(*args)
            return loss, tape.gradient(loss, args)

        step.get_concrete_function()

        def run():
            loss, grads = step()
            loss.numpy()

        # XLA compiles at the first call, inside the measured step: the TF-XLA peak is an
        # upper bound (a warm-up call first would hide the step's buffers in TF's allocator).

    else:
        import torch
        import torch.nn.functional as F

        args = [torch.tensor(x, requires_grad=True) for x in (h, w, b)]
        yt = torch.as_tensor(y).long()

        def torch_loss(h, w, b):
            if not variant.startswith("torch_lce"):
                return loss_of(h, w, b)
            a = float(variant.rsplit("_a", 1)[1])
            options = torch.nn.LinearCrossEntropyOptions() if "chunked" in variant else None
            return F.linear_cross_entropy(
                h, w.t(), yt, linear_bias=b, label_smoothing=a, options=options
            )

        def run():
            for x in args:
                x.grad = None
            torch_loss(*args).backward()

    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        before = _status("VmRSS")
        _reset_peak()
        run()
        peak = _status("VmHWM") - before
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return {
        "time_s": statistics.median(times),
        "peak_mb": peak / 2**20,
        "grads_mb": 4 * (n * hidden + hidden * vocab + vocab) / 2**20,
        "logits_mb": 4 * n * vocab / 2**20,
        "warnings": sorted({str(c.message)[:90] for c in caught}),
        **extra,
    }


def cpu_model() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.startswith("Model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="4096x256x32000,1024x256x128000")
    parser.add_argument("--backends", default="tensorflow,tensorflow-xla,jax,torch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker", nargs=2, metavar=("BACKEND", "VARIANT"))
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    if args.worker:
        result = worker(*args.worker, *shapes[0], args.repeats)
        print("RESULT " + json.dumps(result))
        return
    print(f"CPU: {cpu_model()} ({os.cpu_count()} cores visible)")
    print(f"label_smoothing={A}; fwd+bwd of the mean loss, gradients of h, W, b; float32")
    results = []
    for shape in shapes:
        n, hidden, vocab = shape
        print(f"\n(tokens, H, V) = {shape}: float32 logits {4 * n * vocab / 2**20:.0f} MB")
        print(
            f"{'backend':<15}{'variant':<24}{'time s':>8}{'x dense':>9}{'peak MB':>9}"
            f"{'-grads MB':>10}{'/logits':>9}  notes"
        )
        for backend in args.backends.split(","):
            base = None
            for variant in VARIANTS[backend]:
                cmd = [sys.executable, __file__, "--worker", backend, variant]
                cmd += ["--shapes", "x".join(map(str, shape)), "--repeats", str(args.repeats)]
                keras_backend = backend.split("-")[0]
                env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND=keras_backend)
                out = subprocess.run(cmd, capture_output=True, text=True, env=env)
                lines = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
                if not lines:
                    print(f"{backend:<15}{variant:<24} FAILED: {out.stderr.strip()[-300:]}")
                    continue
                r = json.loads(lines[-1][len("RESULT ") :])
                if variant == "dense_smoothed":
                    base = r["time_s"]
                ratio = r["time_s"] / base if base else float("nan")
                net = r["peak_mb"] - r["grads_mb"]
                notes = []
                if "xla_temp_mb" in r:
                    notes.append(f"XLA temp {r['xla_temp_mb']:.0f} MB")
                notes += [f"warns: {m}" for m in r["warnings"] if "ignored" in m.lower()]
                print(
                    f"{backend:<15}{variant:<24}{r['time_s']:>8.3f}{ratio:>9.2f}"
                    f"{r['peak_mb']:>9.0f}{net:>10.0f}{net / r['logits_mb']:>9.2f}  "
                    + "; ".join(notes)
                )
                results.append(dict(backend=backend, variant=variant, shape=shape, **r))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": cpu_model(), "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
