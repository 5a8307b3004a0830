"""JAX and torch backends (each in its own process: KERAS_BACKEND is read at import)."""

import json

import pytest
from ls_reference import run_python

SCRIPT = r"""
import json, numpy as np, keras
from keras_ls import SmoothedCE, SmoothedBCE, SmoothingScheduler, schedules
assert keras.backend.backend() == BACKEND, keras.backend.backend()

def ref(y, z, a, ignore=None):
    z = z.astype(np.float64); k = z.shape[-1]
    lp = z - z.max(-1, keepdims=True); lp = lp - np.log(np.exp(lp).sum(-1, keepdims=True))
    valid = np.ones(y.shape, bool) if ignore is None else y != ignore
    t = (1 - a) * np.eye(k)[np.where(valid, y, 0)] + a / k
    per = -(t * lp).sum(-1)
    return float((per * valid).sum() / max(valid.sum(), 1))

rng = np.random.default_rng(0)
out = {}
z = (rng.normal(size=(3, 5, 6)) * 3).astype("float32"); y = rng.integers(0, 6, (3, 5)); y[:, 3:] = 0
out["sparse"] = [float(SmoothedCE(0.1, from_logits=True, ignore_class=0)(y, z)), ref(y, z, 0.1, 0)]
out["dense"] = [float(SmoothedCE(0.3, from_logits=True)(np.eye(6)[y], z)), ref(y, z, 0.3)]
big = np.array([[1e4, -1e4, 0.0]], "float32")
out["extreme_finite"] = bool(np.isfinite(float(SmoothedCE(0.1, from_logits=True)([1], big))))
yb = (rng.random((4, 3)) > 0.5).astype("float32"); zb = rng.normal(size=(4, 3)).astype("float32")
out["bce"] = [float(SmoothedBCE(0.2, from_logits=True)(yb, zb)),
              float(keras.losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.2)(yb, zb))]

# A schedule must take effect inside one fit (lr = 0 keeps the weights fixed).
x = rng.normal(size=(64, 4)).astype("float32"); yy = rng.integers(0, 3, 64)
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
loss = SmoothedCE(0.0, from_logits=True)
model.compile(keras.optimizers.SGD(0.0), loss)
hist = model.fit(x, yy, epochs=3, batch_size=16, verbose=0, shuffle=False,
                 callbacks=[SmoothingScheduler(schedules.Piecewise([1, 2], [0.0, 0.5, 1.0]))])
logits = np.asarray(model.predict(x, verbose=0))
out["fit"] = [hist.history["loss"], [ref(yy, logits, a) for a in (0.0, 0.5, 1.0)]]
out["logged"] = hist.history["label_smoothing"]
# batch-wise updates too
loss2 = SmoothedCE(0.0, from_logits=True)
model.compile(keras.optimizers.SGD(0.0), loss2)
seen = []
class Spy(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        seen.append(float(logs["loss"]))
model.fit(x, yy, epochs=1, batch_size=64, verbose=0, steps_per_epoch=None,
          callbacks=[SmoothingScheduler(schedules.Constant(0.7), update="batch"), Spy()])
out["batch"] = [seen[-1], ref(yy, logits, 0.7)]

path = TMP + "/m.keras"
loss.label_smoothing = 0.25
model.compile(keras.optimizers.SGD(0.0), loss)
model.save(path)
out["reloaded"] = keras.saving.load_model(path).loss.label_smoothing
print(json.dumps(out))
"""


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_backend(backend, tmp_path):
    code = f"BACKEND = {backend!r}\nTMP = {str(tmp_path)!r}\n" + SCRIPT
    out = json.loads(run_python(code, env={"KERAS_BACKEND": backend}).strip().splitlines()[-1])
    for key in ("sparse", "dense", "bce", "batch"):
        got, ref = out[key]
        assert got == pytest.approx(ref, rel=1e-5), key
    assert out["extreme_finite"] is True
    got, ref = out["fit"]
    assert got == pytest.approx(ref, rel=1e-5)
    assert out["logged"] == [0.0, 0.5, 1.0]
    assert out["reloaded"] == pytest.approx(0.25)
