"""A `.keras` model saved mid-schedule reloads with its factor in a fresh process."""

import json

import keras
import numpy as np
import pytest
from ls_reference import run_python

from keras_ls import SmoothedCE, SmoothingScheduler, schedules


@pytest.mark.parametrize("imports", ["import keras, keras_ls", "import keras_ls, keras"])
def test_saved_mid_schedule_loads_in_fresh_process(tmp_path, imports):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 5)).astype("float32")
    y = rng.integers(0, 3, 64)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3)])
    loss = SmoothedCE(0.2, from_logits=True, ignore_class=2, prior=[0.5, 0.25, 0.25])
    model.compile("adam", loss)
    model.fit(
        x,
        y,
        epochs=2,
        verbose=0,
        callbacks=[SmoothingScheduler(schedules.Linear(0.2, 0.0, steps=4))],
    )
    assert loss.label_smoothing == np.float32(0.15)  # epoch index 1 of a 0.2 -> 0 ramp over 4
    path = tmp_path / "model.keras"
    model.save(path)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "pred.npy", model.predict(x, verbose=0))
    out = run_python(
        f"import json, numpy as np\n{imports}\n"
        f"m = keras.saving.load_model({str(path)!r})\n"
        f"x = np.load({str(tmp_path / 'x.npy')!r})\n"
        f"same = np.allclose(m.predict(x, verbose=0), np.load({str(tmp_path / 'pred.npy')!r}))\n"
        "c = m.loss.get_config()\n"
        "print(json.dumps({'cls': type(m.loss).__name__, 'ls': m.loss.label_smoothing,\n"
        "  'ignore': c['ignore_class'], 'prior': c['prior'], 'same': bool(same)}))\n"
    )
    got = json.loads(out.strip().splitlines()[-1])
    assert got == {
        "cls": "SmoothedCE",
        "ls": 0.15000000596046448,  # float32 variable
        "ignore": 2,
        "prior": [0.5, 0.25, 0.25],
        "same": True,
    }
