"""The fused LM head under ``keras.distribution`` on JAX, 8 simulated CPU devices.

A fresh subprocess (this file is the worker) with
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` trains the same tiny LM for one SGD
step (lr = 1: the weight change is the gradient) on one device, under ``DataParallel``
(8-way batch) and under ``ModelParallel`` (mesh batch 2 x model 4, the head kernel's
vocabulary axis sharded on "model"), and compares loss and weight changes. It also compiles
the fused loss's value-and-gradient with the hidden states sharded on the batch and the
kernel on the vocabulary and checks that no array in the compiled HLO holds more than one
chunk's logits (the unfused head, as a control, does hold the full logits).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve()
B, T, H, V, CHUNK = 16, 16, 8, 512, 8


def worker() -> dict:
    import re

    import jax
    import keras
    import numpy as np

    import keras_ls
    from keras_ls.losses import LinearSmoothedCE, linear_smoothed_crossentropy

    rng = np.random.default_rng(0)
    x = rng.integers(1, V, size=(B, T))
    y = np.roll(x, -1, axis=1)
    y[:, -3:] = 0  # padding, ignored

    def step(distribution):
        keras.distribution.set_distribution(distribution)
        keras.utils.set_random_seed(0)
        inp = keras.Input((T,), batch_size=B, dtype="int32")
        hid = keras.layers.Dense(H, activation="tanh", name="trunk")(
            keras.layers.Embedding(V, H, name="embed")(inp)
        )
        head = keras.layers.Dense(V, name="lm_head")
        head.build((None, H))
        train = keras.Model(inp, hid)
        train.lm_head = head
        train.compile(keras.optimizers.SGD(1.0),
                      LinearSmoothedCE(0.1, layer=head, ignore_class=0, chunk_size=CHUNK))
        before = [np.asarray(v) for v in train.trainable_variables]
        loss = train.train_on_batch(x, y)
        after = [np.asarray(v) for v in train.trainable_variables]
        keras.distribution.set_distribution(None)
        return float(loss), [a - b for a, b in zip(before, after)]

    devices = keras.distribution.list_devices()
    ref_loss, ref_grads = step(None)
    out = {"devices": len(devices)}
    dp = keras.distribution.DataParallel(devices=devices)
    mesh = keras.distribution.DeviceMesh((2, 4), ["batch", "model"], devices)
    layout = keras.distribution.LayoutMap(mesh)
    layout["lm_head/kernel"] = (None, "model")
    layout["lm_head/bias"] = ("model",)
    mp = keras.distribution.ModelParallel(layout_map=layout, batch_dim_name="batch")
    for name, dist in (("data_parallel", dp), ("model_parallel", mp)):
        loss, grads = step(dist)
        out[name] = {
            "loss_rel": abs(loss / ref_loss - 1),
            "grad_rel": max(
                float(np.abs(g - r).max() / (np.abs(r).max() + 1e-30))
                for g, r in zip(grads, ref_grads)
            ),
        }

    # The compiled HLO: the largest float array, fused vs unfused, sharded as above.
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    jmesh = Mesh(np.array(jax.devices()).reshape(2, 4), ("batch", "model"))
    h = jax.device_put(rng.normal(size=(B * T, H)).astype("float32"),
                       NamedSharding(jmesh, P("batch", None)))
    w = jax.device_put(rng.normal(size=(H, V)).astype("float32"),
                       NamedSharding(jmesh, P(None, "model")))
    labels = jax.numpy.asarray(y.reshape(-1))

    def fused(h, w, labels):  # labels traced: the label path's checks run in the graph
        return jax.numpy.mean(linear_smoothed_crossentropy(
            labels, h, w, label_smoothing=0.1, chunk_size=CHUNK))

    def unfused(h, w, labels):
        return jax.numpy.mean(keras_ls.losses.smoothed_crossentropy(
            labels, h @ w, 0.1, from_logits=True))

    def largest(fn):
        step = jax.jit(jax.value_and_grad(fn, argnums=(0, 1)))
        hlo = step.lower(h, w, labels).compile().as_text()
        sizes = [int(np.prod([int(d) for d in dims.split(",") if d]))
                 for dims in re.findall(r"f32\[([\d,]*)\]", hlo)]
        return max(sizes)

    out["hlo_largest_fused"] = largest(fused)
    out["hlo_largest_unfused"] = largest(unfused)
    return out


@pytest.fixture(scope="module")
def results():
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3",
               XLA_FLAGS="--xla_force_host_platform_device_count=8",
               PYTHONPATH=str(HERE.parent.parent))
    out = subprocess.run([sys.executable, str(HERE)], env=env, capture_output=True,
                         text=True, timeout=600)
    lines = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    assert lines, out.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT "):])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["data_parallel", "model_parallel"])
def test_distributed_equals_single_device(results, name):
    assert results["devices"] == 8
    # float32 sums in another order (per-device partial sums, all-reduced).
    assert results[name]["loss_rel"] < 1e-5
    assert results[name]["grad_rel"] < 1e-4


@pytest.mark.slow
def test_hlo_never_holds_the_full_logits(results):
    logits = B * T * V
    assert results["hlo_largest_unfused"] >= logits // 8  # control: the check can fail
    # One chunk's logits (CHUNK x V) at most, per device; never the (tokens, V) logits.
    assert results["hlo_largest_fused"] <= CHUNK * V, results


if __name__ == "__main__":
    print("RESULT " + json.dumps(worker()))
