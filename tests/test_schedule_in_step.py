"""Schedules inside the compiled step, on TF, JAX and torch (one process per backend).

A per-batch continuous schedule must be followed batch by batch with the train step
compiled once per ``fit`` (``jit_compile=True`` included), validation must use the fixed
``validation_value``, and a loop of ``fit(epochs=1)`` calls must get the same factors as one
``fit`` (the clock is ``optimizer.iterations``).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from ls_reference import np_smoothed_ce, run_python

from keras_ls import schedules

STEPS, BATCH, EPOCHS, K = 5, 8, 3, 4
SCHEDULE = schedules.Cosine(0.4, 0.0, steps=STEPS * EPOCHS - 1)

SCRIPT = r"""
import json, sys
import numpy as np, keras
from keras_ls import SmoothedCE, SmoothingScheduler, schedules
BACKEND = keras.backend.backend()
STEPS, BATCH, EPOCHS, K = 5, 8, 3, 4
sched = schedules.Cosine(0.4, 0.0, steps=STEPS * EPOCHS - 1)
rng = np.random.default_rng(0)
x = rng.normal(size=(STEPS * BATCH, 6)).astype("float32")
y = rng.integers(0, K, len(x))
xv, yv = x[:16], (y[:16] + 1) % K
compiles = []
if BACKEND == "jax":
    import jax
    # XLA compilations of the train/test step (not of small helper computations).
    jax.monitoring.register_event_duration_secs_listener(
        lambda name, *a, fun_name="", **k: compiles.append(fun_name)
        if name.endswith("backend_compile_duration") and "step" in fun_name else None)

def model_and_loss(jit):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(K)])
    loss = SmoothedCE(0.0, from_logits=True)
    traces = []
    call = loss.call
    loss.call = lambda *a: (traces.append(1), call(*a))[1]
    model.compile(keras.optimizers.SGD(0.0), loss, jit_compile=jit)  # lr 0: fixed logits
    return model, loss, traces

class Spy(keras.callbacks.Callback):
    def __init__(self): super().__init__(); self.seen = []; self.graphs = []
    def on_train_batch_end(self, b, logs=None):
        self.seen.append([float(logs["loss"]), float(logs["label_smoothing"])])
    def on_epoch_end(self, e, logs=None):
        self.graphs.append(graphs())

def graphs():
    if BACKEND != "torch": return None
    import torch._dynamo.utils as du
    return du.counters["stats"]["unique_graphs"]

def plain_fit(jit):  # the same model, a constant loss, no scheduler: what compiling costs
    model, loss, traces = model_and_loss(jit)
    n0, g0 = len(compiles), graphs()
    model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0,
              validation_data=(xv, yv))
    return {"traces": len(traces), "compiles": len(compiles) - n0,
            "graphs": None if g0 is None else graphs() - g0}

out = {"backend": BACKEND}
if BACKEND == "torch":
    plain_fit(True)  # dynamo's caches warm up on the first model of a process
for jit in ([False, True] if BACKEND == "tensorflow" else [True]):
    out[f"plain_{jit}"] = plain_fit(jit)
    model, loss, traces = model_and_loss(jit)
    spy, n0, g0 = Spy(), len(compiles), graphs()
    hist = model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0,
                     validation_data=(xv, yv),
                     callbacks=[SmoothingScheduler(sched, update="batch"), spy])
    out[f"batch_{jit}"] = {"seen": spy.seen, "val": hist.history["val_loss"],
                           "traces": len(traces), "compiles": len(compiles) - n0,
                           "graphs": spy.graphs,
                           "logits": np.asarray(model.predict(x, verbose=0)).tolist(),
                           "final": loss.label_smoothing}

# A loop of fit(epochs=1) calls, a new scheduler each time (as in keras-io's addition_rnn).
for update in ("epoch", "batch"):
    model, loss, _ = model_and_loss(True)
    seen = []
    for _ in range(EPOCHS):
        spy = Spy()
        model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0,
                  callbacks=[SmoothingScheduler(sched, update=update, validation_value=None), spy])
        seen += spy.seen
    out[f"loop_{update}"] = [s[1] for s in seen]
# No callback at all: an assignment between two fits reaches the (cached) train step.
model, loss, traces = model_and_loss(True)
first = model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0).history["loss"]
loss.label_smoothing = 0.9
second = model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0).history["loss"]
out["manual"] = {"losses": first + second, "traces": len(traces),
                 "logits": np.asarray(model.predict(x, verbose=0)).tolist()}
print("RESULT" + json.dumps(out))
"""


def _run(backend: str) -> dict:
    out = run_python(SCRIPT, env={"KERAS_BACKEND": backend}, timeout=900)
    line = next(ln for ln in out.splitlines() if ln.startswith("RESULT"))
    return json.loads(line[len("RESULT") :])


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_per_batch_schedule_compiles_once_and_is_followed(backend):
    out = _run(backend)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(STEPS * BATCH, 6))  # noqa: F841 - same stream as the script
    y = rng.integers(0, K, STEPS * BATCH)
    yv = (y[:16] + 1) % K
    factors = [SCHEDULE(s) for s in range(STEPS * EPOCHS)]
    # jit_compile=False on JAX and torch is op-by-op execution: nothing to compile once.
    for jit in [False, True] if backend == "tensorflow" else [True]:
        run, plain = out[f"batch_{jit}"], out[f"plain_{jit}"]
        z = np.asarray(run["logits"])  # lr = 0: the logits of every step
        per_batch = [
            np_smoothed_ce(y[b * BATCH : (b + 1) * BATCH], z[b * BATCH : (b + 1) * BATCH], a)
            for b, a in zip(list(range(STEPS)) * EPOCHS, factors)
        ]
        # Keras logs the running mean of the epoch's batch losses.
        running = [
            np.mean(per_batch[e * STEPS : e * STEPS + b + 1])
            for e in range(EPOCHS)
            for b in range(STEPS)
        ]
        got = np.asarray(run["seen"])
        np.testing.assert_allclose(got[:, 1], factors, rtol=1e-6)
        np.testing.assert_allclose(got[:, 0], running, rtol=1e-5)
        # validation uses validation_value = 0: the plain NLL, every epoch
        nll = np_smoothed_ce(yv, z[:16], 0.0)
        np.testing.assert_allclose(run["val"], [nll] * EPOCHS, rtol=1e-5)
        assert run["final"] == pytest.approx(factors[-1], abs=1e-7)
        # compiled once: as many traces / compiles / graphs as the same fit without a
        # schedule (train step + validation step)
        if backend == "torch":  # no graph compiled after the first epoch (dynamo counters)
            assert run["graphs"][0] == run["graphs"][-1], run["graphs"]
        else:
            assert run["traces"] == plain["traces"]
        if backend == "tensorflow":
            assert run["traces"] == 2
        if backend == "jax":  # one XLA compilation of the train step, one of the test step
            assert run["compiles"] == plain["compiles"] == 2
    # a loop of fit(epochs=1) follows the training, not the call
    epoch_factors = [SCHEDULE(e) for e in range(EPOCHS) for _ in range(STEPS)]
    np.testing.assert_allclose(out["loop_epoch"], epoch_factors, rtol=1e-6)
    np.testing.assert_allclose(out["loop_batch"], factors, rtol=1e-6)
    # an assignment between fits, no callback: the next fit uses it (on JAX the first such
    # assignment makes the factor part of the model state: one more trace)
    manual = out["manual"]
    z = np.asarray(manual["logits"])
    want = [
        np.mean(
            [
                np_smoothed_ce(y[b * BATCH : (b + 1) * BATCH], z[b * BATCH : (b + 1) * BATCH], a)
                for b in range(STEPS)
            ]
        )
        for a in (0.0, 0.9)
    ]
    np.testing.assert_allclose(manual["losses"], want, rtol=1e-5)
