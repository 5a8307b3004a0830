"""SmoothingScheduler inside real `fit` calls (graph and XLA), resume, errors."""

import keras
import numpy as np
import pytest
from ls_reference import np_smoothed_ce

from keras_ls import SmoothedBCE, SmoothedCE, SmoothingScheduler, schedules

N, D, K = 96, 6, 4


def _data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, D)).astype("float32")
    y = rng.integers(0, K, N)
    return x, y


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((D,)), keras.layers.Dense(K)])


def _counting(loss):
    calls = []
    original = loss.call

    def call(*args):
        calls.append(1)
        return original(*args)

    loss.call = call
    return calls


@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("update", ["epoch", "batch"])
def test_factor_changes_inside_one_fit_with_one_trace(jit_compile, update):
    x, y = _data()
    model = _model()
    loss = SmoothedCE(0.0, from_logits=True)
    traces = _counting(loss)
    model.compile(keras.optimizers.SGD(0.0), loss, jit_compile=jit_compile)
    sched = schedules.Piecewise([1, 2], [0.0, 0.5, 1.0])
    if update == "batch":  # 3 batches per epoch: steps 0-2 epoch 0, 3-5 epoch 1, ...
        sched = schedules.Piecewise([3, 6], [0.0, 0.5, 1.0])
    hist = model.fit(
        x,
        y,
        epochs=3,
        batch_size=32,
        shuffle=False,
        verbose=0,
        callbacks=[SmoothingScheduler(sched, update=update)],
    )
    assert hist.history["label_smoothing"] == [0.0, 0.5, 1.0]
    logits = model.predict(x, verbose=0)  # weights never move (lr = 0)
    expected = [np_smoothed_ce(y, logits, a) for a in (0.0, 0.5, 1.0)]
    np.testing.assert_allclose(hist.history["loss"], expected, rtol=1e-5)
    assert len(traces) == 1  # one trace of the train step served every value
    assert loss.label_smoothing == 1.0


def test_batch_update_uses_global_step_within_epoch():
    x, y = _data()
    model = _model()
    loss = SmoothedCE(0.0, from_logits=True)
    model.compile(keras.optimizers.SGD(0.0), loss)
    seen = []

    class Spy(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(logs["label_smoothing"])

    lin = schedules.Linear(0.0, 0.5, steps=5)
    model.fit(
        x,
        y,
        epochs=2,
        batch_size=32,
        verbose=0,
        callbacks=[SmoothingScheduler(lin, update="batch"), Spy()],
    )
    np.testing.assert_allclose(seen, [lin(s) for s in range(6)])


def test_keras_learning_rate_schedule_is_accepted():
    x, y = _data()
    model = _model()
    model.compile("sgd", SmoothedCE(0.3, from_logits=True))
    kschedule = keras.optimizers.schedules.PiecewiseConstantDecay([1], [0.2, 0.05])
    hist = model.fit(
        x, y, epochs=3, verbose=0, batch_size=N, callbacks=[SmoothingScheduler(kschedule)]
    )
    np.testing.assert_allclose(hist.history["label_smoothing"], [0.2, 0.2, 0.05], rtol=1e-6)


def test_multi_output_model_all_losses_driven():
    inp = keras.Input((D,))
    out_a = keras.layers.Dense(K, name="a")(inp)
    out_b = keras.layers.Dense(3, name="b")(inp)
    model = keras.Model(inp, {"a": out_a, "b": out_b})
    la, lb = SmoothedCE(0.0, from_logits=True), SmoothedBCE(0.0, from_logits=True)
    model.compile("sgd", loss={"a": la, "b": lb})
    x, y = _data()
    yb = (np.random.default_rng(1).random((N, 3)) > 0.5).astype("float32")
    model.fit(
        x,
        {"a": y, "b": yb},
        epochs=2,
        verbose=0,
        callbacks=[SmoothingScheduler(schedules.Linear(0.2, 0.1, 1))],
    )
    assert la.label_smoothing == pytest.approx(0.1)
    assert lb.label_smoothing == pytest.approx(0.1)


def test_errors_are_clear():
    x, y = _data()
    model = _model()
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    # The message lists every loss class that declares a schedulable hyperparameter.
    with pytest.raises(ValueError, match="found no keras-ls loss with a schedulable") as err:
        model.fit(x, y, epochs=1, verbose=0, callbacks=[SmoothingScheduler(0.1)])
    for kind in ("SmoothedCE (label_smoothing)", "ConfidencePenaltyCE (beta)", "SmoothedDice"):
        assert kind in str(err.value)
    model.compile("sgd", SmoothedCE(0.1, from_logits=True))
    bad = SmoothingScheduler(lambda step: 0.5 + step)
    with pytest.raises(ValueError, match="at step 1.*\\[0, 1\\]"):
        model.fit(x, y, epochs=2, verbose=0, callbacks=[bad])
    with pytest.raises(ValueError, match="update"):
        SmoothingScheduler(0.1, update="step")
    with pytest.raises(ValueError, match="loss"):
        SmoothingScheduler(0.1, loss=keras.losses.MeanSquaredError())


class _Interrupt(keras.callbacks.Callback):
    def __init__(self, at_epoch):
        super().__init__()
        self.at_epoch = at_epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.at_epoch:
            raise RuntimeError("simulated preemption")


def test_backup_and_restore_resumes_schedule_exactly(tmp_path):
    x, y = _data()
    sched = schedules.Linear(0.3, 0.0, steps=3)

    def run(callbacks):
        model = _model()
        model.compile(keras.optimizers.SGD(0.1), SmoothedCE(0.3, from_logits=True))
        return model.fit(
            x,
            y,
            epochs=4,
            batch_size=32,
            shuffle=False,
            verbose=0,
            callbacks=[SmoothingScheduler(sched), *callbacks],
        )

    full = run([])
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    with pytest.raises(RuntimeError, match="preemption"):
        run([backup, _Interrupt(2)])
    resumed = run([keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))])
    # The resumed fit runs epochs 2 and 3 only, with the factor for those epochs,
    # and lands on the same losses as the uninterrupted run.
    assert resumed.epoch == [2, 3]
    np.testing.assert_allclose(resumed.history["label_smoothing"], [0.1, 0.0], atol=1e-12)
    np.testing.assert_allclose(resumed.history["loss"], full.history["loss"][2:], rtol=1e-5)
