"""OnlineSmoothedCE + OnlineLabelSmoothing against a float64 numpy re-implementation.

The reference trains the same linear model with plain SGD, in numpy, following
Zhang et al. (2021), Algorithm 1: per batch the loss ``(1-a) CE(onehot) + a
CE(S[y])``, accumulation of the predicted distributions of correctly
classified samples by true class, and a row-normalised swap of ``S`` at each
epoch boundary (rows without a correct sample keep their previous value).
"""

from __future__ import annotations

import json
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_ls
from keras_ls.losses.online import MAX_CLASSES, OnlineSmoothedCE, OnlineSoftTargets

N, F, K, BATCH, LR = 48, 5, 4, 16, 0.5


# -- float64 reference ----------------------------------------------------------------
def np_log_softmax(z):
    z = np.asarray(z, np.float64)
    m = z.max(-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))


def np_online_loss(labels, logits, S, a, ignore_class=None):
    logp = np_log_softmax(logits)
    valid = np.ones(labels.shape, bool) if ignore_class is None else labels != ignore_class
    lab = np.where(valid, labels, 0)
    t = (1 - a) * np.eye(S.shape[0])[lab] + a * S[lab]
    per = np.where(valid, -(t * logp).sum(-1), 0.0)
    return per, valid


def np_swap(S, sums, counts):
    new = S.copy()
    seen = counts > 0
    new[seen] = sums[seen] / sums[seen].sum(-1, keepdims=True)
    return new


def np_train(x, y, w0, b0, epochs, a=0.5, s0=0.1, lr=LR):
    """Reference run; returns per-epoch losses, final weights and S."""
    w, b = w0.astype(np.float64), b0.astype(np.float64)
    S = (1 - s0) * np.eye(K) + s0 / K
    sums, counts = np.zeros((K, K)), np.zeros(K)
    losses = []
    for _ in range(epochs):
        S = np_swap(S, sums, counts)
        sums, counts = np.zeros((K, K)), np.zeros(K)
        batch_losses = []
        for s in range(0, len(x), BATCH):
            xb, yb = x[s : s + BATCH].astype(np.float64), y[s : s + BATCH]
            z = xb @ w + b
            p = np.exp(np_log_softmax(z))
            per, _ = np_online_loss(yb, z, S, a)
            batch_losses.append(per.mean())
            correct = p.argmax(-1) == yb
            np.add.at(sums, yb[correct], p[correct])
            np.add.at(counts, yb[correct], 1.0)
            t = (1 - a) * np.eye(K)[yb] + a * S[yb]
            gz = (p - t) / len(yb)
            w, b = w - lr * xb.T @ gz, b - lr * gz.sum(0)
        losses.append(float(np.mean(batch_losses)))
    return losses, w, b, S, sums, counts


def data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, F)).astype(np.float32)
    y = (np.argmax(x[:, :K] + 0.8 * rng.normal(size=(N, K)), -1)).astype(np.int32)
    w0 = (rng.normal(size=(F, K)) * 0.3).astype(np.float32)
    b0 = np.zeros(K, np.float32)
    return x, y, w0, b0


def build(w0, b0, a=0.5, s0=0.1, with_metric=False, **kw):
    """``with_metric=True`` also lists the state as a metric (``metrics=[loss.targets]``)."""
    model = keras.Sequential([keras.Input((F,)), keras.layers.Dense(K)])
    model.set_weights([w0, b0])
    loss = OnlineSmoothedCE(K, a, initial_smoothing=s0, from_logits=True, **kw)
    model.compile(keras.optimizers.SGD(LR), loss, metrics=[loss.targets] if with_metric else None)
    return model, loss


def fit_online(model, x, y, epochs=2, **kw):
    """The fit every test here runs: fixed batches, no shuffle, the online callback."""
    callbacks = [keras_ls.OnlineLabelSmoothing()]
    return model.fit(
        x, y, epochs=epochs, batch_size=BATCH, shuffle=False, verbose=0, callbacks=callbacks, **kw
    )


def state(loss):
    t = loss.targets
    return (
        keras.ops.convert_to_numpy(t.soft_targets),
        keras.ops.convert_to_numpy(t.sums),
        keras.ops.convert_to_numpy(t.counts),
    )


# -- the loss value ---------------------------------------------------------------------
def test_loss_value_gradient_and_ignore_class():
    rng = np.random.default_rng(1)
    logits = (rng.normal(size=(3, 6, K)) * 3).astype(np.float32)
    labels = rng.integers(0, K, size=(3, 6))
    labels[0, :4] = 9
    S = rng.dirichlet(np.ones(K), size=K)
    loss = OnlineSmoothedCE(K, 0.3, from_logits=True, ignore_class=9)
    loss.targets.soft_targets.assign(S.astype(np.float32))
    per, valid = np_online_loss(labels, logits, S, 0.3, ignore_class=9)
    z = tf.Variable(logits)
    with tf.GradientTape() as tape:
        val = loss(labels, z)
    assert float(val) == pytest.approx(per.sum() / valid.sum(), rel=1e-5)
    # d/dz = (p - t) / #valid on valid positions; no gradient into S
    p = np.exp(np_log_softmax(logits))
    lab = np.where(valid, labels, 0)
    t = 0.7 * np.eye(K)[lab] + 0.3 * S[lab]
    want = np.where(valid[..., None], p - t, 0) / valid.sum()
    np.testing.assert_allclose(tape.gradient(val, z), want, rtol=1e-4, atol=1e-6)
    # probabilities input, (B, 1) labels
    probs = p[1].astype(np.float32)
    got = OnlineSmoothedCE(K, 0.3, ignore_class=9)
    got.targets.soft_targets.assign(S.astype(np.float32))
    assert float(got(labels[1][:, None], probs)) == pytest.approx(per[1].mean(), rel=1e-4)


def test_epoch0_is_uniform_smoothing():
    """(1-a) onehot + a mix(onehot, 1/K, s) = mix(onehot, 1/K, a*s): SmoothedCE(a*s)."""
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(10, K)).astype(np.float32)
    labels = rng.integers(0, K, size=10)
    got = OnlineSmoothedCE(K, 0.5, initial_smoothing=0.2, from_logits=True)(labels, logits)
    want = keras_ls.SmoothedCE(0.1, from_logits=True)(labels, logits)
    assert float(got) == pytest.approx(float(want), rel=1e-6)


def test_statistics_update_and_swap():
    rng = np.random.default_rng(3)
    logits = (rng.normal(size=(2, 20, K)) * 2).astype(np.float32)
    labels = rng.integers(0, K, size=(2, 20))
    labels[1, :5] = -1
    sw = rng.uniform(0.5, 2, size=(2,)).astype(np.float32)
    m = OnlineSoftTargets(K, 0.1, from_logits=True, ignore_class=-1)
    m.accumulate(labels, logits, sample_weight=sw)  # collecting is off
    assert np.all(keras.ops.convert_to_numpy(m.counts) == 0)
    m.collecting.assign(1.0)
    m.update_state(labels, logits, sample_weight=sw)  # a no-op: the loss accumulates
    assert np.all(keras.ops.convert_to_numpy(m.counts) == 0)
    m.accumulate(labels, logits, sample_weight=sw)
    p = np.exp(np_log_softmax(logits))
    correct = (p.argmax(-1) == labels) & (labels != -1)
    w = correct * sw[:, None]
    sums, counts = np.zeros((K, K)), np.zeros(K)
    np.add.at(sums, labels[correct], (p * w[..., None])[correct])
    np.add.at(counts, labels[correct], w[correct])
    np.testing.assert_allclose(m.sums, sums, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m.counts, counts, rtol=1e-5)
    m.reset_state()  # Keras' per-epoch reset must not touch the state
    np.testing.assert_allclose(m.counts, counts, rtol=1e-5)
    S0 = keras.ops.convert_to_numpy(m.soft_targets).astype(np.float64)
    m.counts.assign(np.where(np.arange(K) == 0, 0.0, counts).astype(np.float32))
    m.swap()
    want = np_swap(S0, sums, np.where(np.arange(K) == 0, 0.0, counts))
    np.testing.assert_allclose(m.soft_targets, want, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(m.soft_targets)[0], S0[0])  # kept
    assert np.all(keras.ops.convert_to_numpy(m.sums) == 0)
    assert float(m.result()) == pytest.approx(np.mean(np.diag(want)), rel=1e-6)


# -- training against the numpy reference -----------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("with_metric", [False, True])
def test_fit_matches_numpy_reference_and_validation_does_not_leak(with_metric):
    # with_metric=True: listing `metrics=[loss.targets]` too counts nothing twice.
    x, y, w0, b0 = data()
    model, loss = build(w0, b0, with_metric=with_metric)
    hist = model.fit(
        x,
        y,
        epochs=4,
        batch_size=BATCH,
        shuffle=False,
        verbose=0,
        validation_data=(x[:16], (y[:16] + 1) % K),  # wrong labels: must not leak
        callbacks=[keras_ls.OnlineLabelSmoothing()],
    )
    losses, w, b, S, sums, counts = np_train(x, y, w0, b0, epochs=4)
    np.testing.assert_allclose(hist.history["loss"], losses, rtol=1e-4)
    np.testing.assert_allclose(model.get_weights()[0], w, rtol=1e-4, atol=1e-5)
    got_S, got_sums, got_counts = state(loss)
    np.testing.assert_allclose(got_S, S, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got_counts, counts)
    np.testing.assert_allclose(got_sums, sums, rtol=1e-4, atol=1e-6)
    assert not np.allclose(S, (0.9 * np.eye(K) + 0.1 / K))  # it did learn something
    # after fit, collection is off: evaluate does not accumulate
    model.evaluate(x, y, verbose=0)
    np.testing.assert_allclose(state(loss)[2], counts)


@pytest.mark.slow
def test_backup_and_restore_resumes_exactly(tmp_path):
    x, y, w0, b0 = data(1)
    losses, w, b, S, _, _ = np_train(x, y, w0, b0, epochs=4)

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("preempted")

    backup = str(tmp_path / "backup")
    model, loss = build(w0, b0)
    with pytest.raises(RuntimeError, match="preempted"):
        model.fit(
            x,
            y,
            epochs=4,
            batch_size=BATCH,
            shuffle=False,
            verbose=0,
            callbacks=[
                keras.callbacks.BackupAndRestore(backup),
                keras_ls.OnlineLabelSmoothing(),
                Interrupt(),
            ],
        )
    # a fresh process would rebuild everything: fresh model, loss, metric
    model, loss = build(np.zeros_like(w0), b0)
    hist = model.fit(
        x,
        y,
        epochs=4,
        batch_size=BATCH,
        shuffle=False,
        verbose=0,
        callbacks=[keras_ls.OnlineLabelSmoothing(), keras.callbacks.BackupAndRestore(backup)],
    )
    np.testing.assert_allclose(hist.history["loss"], losses[2:], rtol=1e-4)
    np.testing.assert_allclose(model.get_weights()[0], w, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(state(loss)[0], S, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_keras_save_load_and_continue(tmp_path):
    x, y, w0, b0 = data(2)
    model, loss = build(w0, b0, a=0.4)
    fit_online(model, x, y, epochs=2)
    path = tmp_path / "ols.keras"
    model.save(path)
    back = keras.models.load_model(path)
    assert isinstance(back.loss, OnlineSmoothedCE)
    assert back.loss.label_smoothing == pytest.approx(0.4)
    for got, want in zip(state(back.loss), state(loss)):
        np.testing.assert_allclose(got, want)
    # continuing after load gives the same result as not stopping
    fit_online(back, x, y, epochs=2)
    fit_online(model, x, y, epochs=2)
    # the callback made the loss's state part of the model
    assert any(m is back.loss.targets for m in back.metrics)
    np.testing.assert_allclose(back.get_weights()[0], model.get_weights()[0], rtol=1e-5)
    np.testing.assert_allclose(state(back.loss)[0], state(loss)[0], rtol=1e-5)


def test_scheduler_discovers_online_loss(capsys):
    x, y, w0, b0 = data(3)
    model, loss = build(w0, b0)
    hist = model.fit(
        x,
        y,
        epochs=2,
        batch_size=BATCH,
        verbose=0,
        callbacks=[
            keras_ls.OnlineLabelSmoothing(loss, verbose=1),
            keras_ls.SmoothingScheduler(keras_ls.schedules.Linear(0.6, 0.2, steps=1)),
        ],
    )
    assert hist.history["label_smoothing"] == pytest.approx([0.6, 0.2])
    assert loss.label_smoothing == pytest.approx(0.2)
    printed = capsys.readouterr().out
    assert "Epoch 1: OnlineLabelSmoothing updates 0 of 4" in printed
    assert "Epoch 2: OnlineLabelSmoothing updates" in printed


# -- bad input ------------------------------------------------------------------------------
def test_guard_and_errors():
    with pytest.raises(ValueError, match=f"limit is num_classes <= {MAX_CLASSES}"):
        OnlineSmoothedCE(MAX_CLASSES + 1)
    with pytest.raises(TypeError, match="`num_classes`"):
        OnlineSmoothedCE(10.0)
    with pytest.raises(ValueError, match="`num_classes`"):
        OnlineSmoothedCE(1)
    with pytest.raises(ValueError, match="`label_smoothing`"):
        OnlineSmoothedCE(3, 1.5)
    with pytest.raises(ValueError, match="`initial_smoothing`"):
        OnlineSmoothedCE(3, initial_smoothing=-0.1)
    with pytest.raises(ValueError, match="integer labels"):
        OnlineSmoothedCE(3, from_logits=True)(np.eye(3), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="`num_classes`=3"):
        OnlineSmoothedCE(3, from_logits=True)([0, 1], np.zeros((2, 4)))
    # extreme logits stay finite
    z = tf.Variable(np.array([[1e30, -1e30, 0.0]], np.float32))
    with tf.GradientTape() as tape:
        val = OnlineSmoothedCE(3, from_logits=True)([1], z)
    assert np.isfinite(float(val)) and np.all(np.isfinite(tape.gradient(val, z).numpy()))
    # callback misuse
    x, y, w0, b0 = data()
    model = keras.Sequential([keras.Input((F,)), keras.layers.Dense(K)])
    model.compile("sgd", keras_ls.SmoothedCE(from_logits=True))
    with pytest.raises(ValueError, match="no OnlineSmoothedCE"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[keras_ls.OnlineLabelSmoothing()])


def test_serialization():
    loss = OnlineSmoothedCE(5, 0.3, initial_smoothing=0.2, from_logits=True, ignore_class=-1)
    back = keras.losses.deserialize(json.loads(json.dumps(keras.losses.serialize(loss))))
    assert isinstance(back, OnlineSmoothedCE)
    assert back.get_config() == loss.get_config()
    m = keras.metrics.deserialize(keras.metrics.serialize(loss.targets))
    assert isinstance(m, OnlineSoftTargets) and m.num_classes == 5


# JAX and torch: the reference run above is repeated on both backends in
# tests/test_losses_extra.py::test_other_backends (one subprocess per backend
# for all the extra losses, to keep the suite fast); it uses `BACKEND_RUN`.
BACKEND_RUN = textwrap.dedent(
    """
    import test_online as t
    x, y, w0, b0 = t.data()
    model, loss = t.build(w0, b0)
    hist = model.fit(x, y, epochs=3, batch_size=t.BATCH, shuffle=False, verbose=0,
                     validation_data=(x[:16], (y[:16] + 1) % t.K),
                     callbacks=[keras_ls.OnlineLabelSmoothing()])
    out["online"] = {"losses": hist.history["loss"], "w": model.get_weights()[0].tolist(),
                     "S": keras.ops.convert_to_numpy(loss.targets.soft_targets).tolist()}
    # preempted after epoch 1, resumed by BackupAndRestore in a fresh model
    import tempfile
    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("preempted")
    backup = tempfile.mkdtemp()
    model, loss = t.build(w0, b0)
    try:
        model.fit(x, y, epochs=3, batch_size=t.BATCH, shuffle=False, verbose=0, callbacks=[
            keras.callbacks.BackupAndRestore(backup), keras_ls.OnlineLabelSmoothing(),
            Interrupt()])
    except RuntimeError:
        pass
    model, loss = t.build(0 * w0, b0)
    hist = model.fit(x, y, epochs=3, batch_size=t.BATCH, shuffle=False, verbose=0, callbacks=[
        keras_ls.OnlineLabelSmoothing(), keras.callbacks.BackupAndRestore(backup)])
    out["resumed"] = {"losses": hist.history["loss"], "w": model.get_weights()[0].tolist(),
                      "S": keras.ops.convert_to_numpy(loss.targets.soft_targets).tolist()}
    # 0.1 style, metrics=[loss.targets]: same run
    model, loss = t.build(w0, b0, with_metric=True)
    hist = model.fit(x, y, epochs=3, batch_size=t.BATCH, shuffle=False, verbose=0,
                     callbacks=[keras_ls.OnlineLabelSmoothing()])
    out["with_metric"] = {"losses": hist.history["loss"], "w": model.get_weights()[0].tolist(),
                          "S": keras.ops.convert_to_numpy(loss.targets.soft_targets).tolist()}
    """
)


def check_backend_run(out: dict, resumed: dict, with_metric: dict) -> None:
    x, y, w0, b0 = data()
    losses, w, _, S, _, _ = np_train(x, y, w0, b0, epochs=3)
    for run in (out, with_metric):
        np.testing.assert_allclose(run["losses"], losses, rtol=1e-4)
        np.testing.assert_allclose(run["w"], w, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(run["S"], S, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(resumed["losses"], losses[2:], rtol=1e-4)
    np.testing.assert_allclose(resumed["w"], w, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(resumed["S"], S, rtol=1e-4, atol=1e-6)
