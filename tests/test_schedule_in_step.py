"""Schedules inside the compiled step, on TF, JAX and torch (one process per backend).

A per-batch schedule -- given to the loss (a keras-ls ``Cosine`` or a Keras ``CosineDecay``,
linked by ``SmoothingScheduler()``) or to ``SmoothingScheduler(update="batch")`` -- must be
followed batch by batch at ``optimizer.iterations`` with the train step compiled once per
``fit`` (``jit_compile=True`` included), validation must use the fixed ``validation_value``,
and a loop of ``fit(epochs=1)`` calls and a ``BackupAndRestore`` resumption must get the same
factors as one ``fit``.
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

def model_and_loss(jit, factor=0.0):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(K)])
    loss = SmoothedCE(factor, from_logits=True)
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
decay = keras.optimizers.schedules.CosineDecay(0.4, decay_steps=STEPS * EPOCHS - 1)
arms = {  # (the loss's factor, the callback)
    "batch": lambda: (0.0, SmoothingScheduler(sched, update="batch")),
    "loss": lambda: (sched, SmoothingScheduler()),
    "keras": lambda: (decay, SmoothingScheduler()),
}
for jit in ([False, True] if BACKEND == "tensorflow" else [True]):
    out[f"plain_{jit}"] = plain_fit(jit)
    for arm, make in arms.items():
        factor, callback = make()
        model, loss, traces = model_and_loss(jit, factor)
        spy, n0, g0 = Spy(), len(compiles), graphs()
        hist = model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0,
                         validation_data=(xv, yv), callbacks=[callback, spy])
        out[f"{arm}_{jit}"] = {"seen": spy.seen, "val": hist.history["val_loss"],
                               "traces": len(traces), "compiles": len(compiles) - n0,
                               "graphs": spy.graphs,
                               "logits": np.asarray(model.predict(x, verbose=0)).tolist(),
                               "final": loss.label_smoothing,
                               "iterations": int(model.optimizer.iterations)}

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
# The schedule given to the loss, across a loop of fit(epochs=1) calls.
model, loss, _ = model_and_loss(True, sched)
seen = []
for _ in range(EPOCHS):
    spy = Spy()
    model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0,
              callbacks=[SmoothingScheduler(validation_value=None), spy])
    seen += spy.seen
out["loop_loss"] = [s[1] for s in seen]
# ... and across an interruption resumed by BackupAndRestore (a real exception mid-fit).
import tempfile
class Interrupt(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise RuntimeError("preemption")
backup = tempfile.mkdtemp()
model, loss, _ = model_and_loss(True, sched)
try:
    model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0,
              callbacks=[SmoothingScheduler(), keras.callbacks.BackupAndRestore(backup),
                         Interrupt()])
except RuntimeError:
    pass
model, loss, _ = model_and_loss(True, sched)  # a new process would build it anew
spy = Spy()
model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0,
          callbacks=[SmoothingScheduler(), keras.callbacks.BackupAndRestore(backup), spy])
out["resumed"] = [s[1] for s in spy.seen]
out["resumed_losses"] = [s[0] for s in spy.seen]
# No callback at all: an assignment between two fits reaches the (cached) train step on TF
# and torch; on JAX the factor was compiled in as a constant, and the assignment says so.
model, loss, traces = model_and_loss(True)
first = model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0).history["loss"]
try:
    loss.label_smoothing = 0.9
    refused = None
except RuntimeError as e:
    refused = str(e)
second = model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0).history["loss"]
out["manual"] = {"losses": first + second, "traces": len(traces), "refused": refused,
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
    decay = [  # keras.optimizers.schedules.CosineDecay(0.4, STEPS * EPOCHS - 1), in float64
        0.2 * (1 + np.cos(np.pi * min(s, STEPS * EPOCHS - 1) / (STEPS * EPOCHS - 1)))
        for s in range(STEPS * EPOCHS)
    ]
    # jit_compile=False on JAX and torch is op-by-op execution: nothing to compile once.
    for jit, arm in [
        (jit, arm)
        for jit in ([False, True] if backend == "tensorflow" else [True])
        for arm in ("batch", "loss", "keras")
    ]:
        factors = decay if arm == "keras" else [SCHEDULE(s) for s in range(STEPS * EPOCHS)]
        run, plain = out[f"{arm}_{jit}"], out[f"plain_{jit}"]
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
        # logged from the host in float64 (CosineDecay computes in float32: 1e-7 absolute)
        np.testing.assert_allclose(got[:, 1], factors, rtol=1e-6, atol=1e-7)
        # the step's loss, with the factor computed in float32 inside the step
        np.testing.assert_allclose(got[:, 0], running, rtol=1e-5)
        assert run["iterations"] == STEPS * EPOCHS
        # validation uses validation_value = 0: the plain NLL, every epoch
        nll = np_smoothed_ce(yv, z[:16], 0.0)
        np.testing.assert_allclose(run["val"], [nll] * EPOCHS, rtol=1e-5)
        # after fit: the value the next step would use (the schedule's end)
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
    np.testing.assert_allclose(out["loop_loss"], factors, rtol=1e-6)
    # resumed by BackupAndRestore after epoch 1: the last epoch, at its own steps
    np.testing.assert_allclose(out["resumed"], factors[2 * STEPS :], rtol=1e-6)
    full = np.asarray(out["loss_True"]["seen"])[2 * STEPS :, 0]
    np.testing.assert_allclose(out["resumed_losses"], full, rtol=1e-5)
    # an assignment between fits, no callback: the next fit uses it on TF and torch; on JAX
    # (a constant of the jitted step) it is refused, loudly, and the step keeps 0.0
    manual = out["manual"]
    if backend == "jax":
        assert "jax.jit function as a constant" in manual["refused"]
    else:
        assert manual["refused"] is None
    z = np.asarray(manual["logits"])
    want = [
        np.mean(
            [
                np_smoothed_ce(y[b * BATCH : (b + 1) * BATCH], z[b * BATCH : (b + 1) * BATCH], a)
                for b in range(STEPS)
            ]
        )
        for a in ((0.0, 0.0) if backend == "jax" else (0.0, 0.9))
    ]
    np.testing.assert_allclose(manual["losses"], want, rtol=1e-5)
