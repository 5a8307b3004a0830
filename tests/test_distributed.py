"""Distributed training gives the single-device numbers.

Each scenario runs in a fresh subprocess (this file doubles as the worker
script), because device layout must be fixed before TensorFlow / JAX start:

- ``tf.distribute.MirroredStrategy`` on two logical CPU devices;
- ``keras.distribution.DataParallel`` on the JAX backend with two host devices
  (``--xla_force_host_platform_device_count=2``);
- ``tf.distribute.MultiWorkerMirroredStrategy`` with two worker processes on
  127.0.0.1 (free ports picked by the OS, bounded by timeouts, always killed).

Within one process each scenario trains the *same* model (same initial
weights, same data order, plain SGD) once on one device and once distributed,
and compares: the loss of the first step, the first step's gradient (the
weight change with ``lr=1``), the per-epoch losses and smoothing factors under
``SmoothingScheduler``, and the final weights. The sequences batch is built so
that the two halves hold very different numbers of ``ignore_class`` tokens:
per-replica normalisation would show up as a mismatch there.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve()
B, T, F, K = 8, 5, 3, 4
IGNORE = -1
TIMEOUT = 240


# -- shared data / model (imported by the workers too) --------------------------------
def make_data(n: int = 2 * B) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, T, F)).astype(np.float32)
    y = rng.integers(0, K, size=(n, T)).astype(np.int32)
    # Per global batch of 8: the first half (replica 0) keeps 2 of 20 tokens,
    # the second half (replica 1) keeps 19 of 20.
    for s in range(0, n, B):
        y[s : s + B // 2, :] = IGNORE
        y[s, :2] = rng.integers(0, K, size=2)
        y[s + B - 1, 0] = IGNORE
    return x, y


def initial_weights() -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.normal(size=(F, K)).astype(np.float32), rng.normal(size=K).astype(np.float32)]


def np_reference_loss(kind: str, a: float) -> float:
    """float64 loss of the first global batch at the initial weights."""
    x, y = make_data()
    x, y = x[:B].astype(np.float64), y[:B]
    w, b = (v.astype(np.float64) for v in initial_weights())
    z = x @ w + b
    logp = z - z.max(-1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
    valid = y != IGNORE if kind != "ce" else np.ones_like(y, bool)
    lab = np.where(y == IGNORE, 0, y)
    nll = -np.take_along_axis(logp, lab[..., None], -1)[..., 0]
    if kind == "cp_ignore":
        per = nll + a * (np.exp(logp) * logp).sum(-1)
    else:
        per = (1 - a) * nll - a * logp.mean(-1)
    return float(per[valid].sum() / valid.sum())


CASES = {  # name -> (loss factory source, factor, scheduled?)
    "ce": "keras_ls.SmoothedCE(0.1, from_logits=True)",
    "ce_ignore": "keras_ls.SmoothedCE(0.1, from_logits=True, ignore_class=-1)",
    "cp_ignore": "keras_ls.ConfidencePenaltyCE(0.1, from_logits=True, ignore_class=-1)",
    "online_ignore": "keras_ls.OnlineSmoothedCE(4, 0.1, from_logits=True, ignore_class=-1)",
}


def _run_case(case: str, keras, keras_ls, strategy=None) -> dict:
    """Train from fixed weights: one step, then 3 epochs with a schedule."""
    import contextlib

    def ctx():
        return strategy.scope() if strategy is not None else contextlib.nullcontext()

    def build(lr):
        with ctx():
            model = keras.Sequential([keras.Input((T, F)), keras.layers.Dense(K)])
            model.set_weights(initial_weights())
            loss = eval(CASES[case])
            online = isinstance(loss, keras_ls.OnlineSmoothedCE)
            model.compile(keras.optimizers.SGD(lr), loss)
        return model, loss, [keras_ls.OnlineLabelSmoothing()] if online else []

    x, y = make_data()
    if case == "ce":
        y = np.where(y == IGNORE, 0, y)
    out: dict = {}
    model, _, extra = build(1.0)
    hist = model.fit(
        x[:B], y[:B], batch_size=B, epochs=1, shuffle=False, verbose=0, callbacks=extra
    )
    w1 = model.get_weights()
    out["loss0"] = float(hist.history["loss"][0])
    out["grad"] = [(w0 - w).tolist() for w0, w in zip(initial_weights(), w1)]
    model, loss, extra = build(0.5)
    sched = keras_ls.SmoothingScheduler(keras_ls.schedules.Linear(0.3, 0.0, steps=2))
    hist = model.fit(
        x, y, batch_size=B, epochs=3, shuffle=False, verbose=0, callbacks=[sched, *extra]
    )
    out["losses"] = [float(v) for v in hist.history["loss"]]
    out["factors"] = [float(v) for v in hist.history[loss.schedulable[0]]]
    out["final"] = [w.tolist() for w in model.get_weights()]
    if extra:  # online label smoothing: the learned soft labels too
        out["final"].append(keras.ops.convert_to_numpy(loss.targets.soft_targets).tolist())
    return out


def worker_mirrored() -> dict:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras

    import keras_ls

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    res = {}
    for case in CASES:
        res[case] = {
            "single": _run_case(case, keras, keras_ls),
            "dist": _run_case(case, keras, keras_ls, strategy=strategy),
        }
    return res


def worker_jax() -> dict:
    import jax
    import keras

    import keras_ls

    assert keras.backend.backend() == "jax" and len(jax.devices()) == 2
    res = {case: {"single": _run_case(case, keras, keras_ls)} for case in CASES}
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax.devices()))
    for case in CASES:
        res[case]["dist"] = _run_case(case, keras, keras_ls)
    # the variables really are sharded/replicated over both devices
    model = keras.Sequential([keras.Input((T, F)), keras.layers.Dense(K)])
    res["devices"] = len(model.weights[0].value.sharding.device_set)
    return res


def _patch_multi_worker_log_reduction() -> None:
    """Work around the other half of keras-team/keras#20585.

    Keras reduces each step's (scalar) logs with ``strategy.reduce("MEAN", v,
    axis=0)`` under multi-worker collectives, which fails on 0-d values. Reduce
    them with ``axis=None`` (the mean over replicas) instead.
    """
    from keras import tree
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original = tf_trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and tf_trainer._collective_all_reduce_multi_worker(
            strategy
        ):
            return tree.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return original(values, strategy, reduction)

    tf_trainer.reduce_per_replica = reduce_per_replica


def worker_multiworker(index: int) -> dict:
    import tensorflow as tf

    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    import keras

    import keras_ls

    assert strategy.num_replicas_in_sync == 2
    x, y = make_data()
    with strategy.scope():
        model = keras.Sequential([keras.Input((T, F)), keras.layers.Dense(K)])
        model.set_weights(initial_weights())
        loss = keras_ls.ConfidencePenaltyCE(0.1, from_logits=True, ignore_class=IGNORE)
        model.compile(keras.optimizers.SGD(0.5), loss)
        # Keras 3 bug (keras-team/keras#20585, tensorflow/tensorflow#72388): fit()
        # first reduces a PerReplica batch eagerly, which CollectiveAllReduce
        # refuses. Build from a plain batch instead and skip that step.
        model._symbolic_build(data_batch=(x[:B], y[:B], None))
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None
    _patch_multi_worker_log_reduction()
    sched = keras_ls.SmoothingScheduler(keras_ls.schedules.Linear(0.3, 0.0, steps=2))
    seen = []

    class Spy(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.append(loss.beta)

    hist = model.fit(
        x, y, batch_size=B, epochs=3, shuffle=False, verbose=0, callbacks=[sched, Spy()]
    )
    return {
        "index": index,
        "losses": [float(v) for v in hist.history["loss"]],
        "factors": [float(v) for v in hist.history["beta"]],
        "seen": seen,
        "final": [w.tolist() for w in model.get_weights()],
    }


# -- subprocess plumbing ------------------------------------------------------------------
def _env(**extra: str) -> dict:
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def _spawn(args: list[str], env: dict, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(HERE), *args, str(out)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _finish(procs: list[subprocess.Popen], timeout: float) -> list[str]:
    """Wait for all, bounded; kill whatever is left. Returns their logs."""
    deadline = time.monotonic() + timeout
    logs = []
    try:
        for p in procs:
            left = max(deadline - time.monotonic(), 1)
            logs.append(p.communicate(timeout=left)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, 9)
                p.wait(10)
    return logs


def _run_worker(kind: str, tmp: Path, env: dict) -> dict:
    out = tmp / f"{kind}.json"
    proc = _spawn([kind], env, out)
    try:
        (log,) = _finish([proc], TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{kind} worker exceeded {TIMEOUT}s")
    assert proc.returncode == 0, log[-4000:]
    return json.loads(out.read_text())


def _assert_same(single: dict, dist: dict, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    assert dist["loss0"] == pytest.approx(single["loss0"], rel=rtol, abs=atol)
    for g_s, g_d in zip(single["grad"], dist["grad"]):
        np.testing.assert_allclose(g_d, g_s, rtol=rtol, atol=atol)
    assert dist["factors"] == pytest.approx(single["factors"])
    np.testing.assert_allclose(dist["losses"], single["losses"], rtol=rtol, atol=atol)
    for w_s, w_d in zip(single["final"], dist["final"]):
        np.testing.assert_allclose(w_d, w_s, rtol=rtol, atol=atol)


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory):
    return _run_worker(
        "mirrored", tmp_path_factory.mktemp("mirrored"), _env(KERAS_BACKEND="tensorflow")
    )


@pytest.fixture(scope="module")
def jax_dp(tmp_path_factory):
    pytest.importorskip("jax")
    env = _env(
        KERAS_BACKEND="jax",
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
        JAX_PLATFORMS="cpu",
    )
    return _run_worker("jax", tmp_path_factory.mktemp("jax"), env)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["ce", "ce_ignore", "cp_ignore", "online_ignore"])
def test_mirrored_matches_single_device(mirrored, case):
    res = mirrored[case]
    assert res["single"]["factors"] == pytest.approx([0.3, 0.15, 0.0])
    # the first-step loss is the float64 reference with *global* normalisation
    assert res["single"]["loss0"] == pytest.approx(_reference(case), rel=1e-5)
    _assert_same(res["single"], res["dist"])


def _reference(case: str) -> float:
    # Online LS at epoch 0: (1-a) onehot + a mix(onehot, 1/K, 0.1) = SmoothedCE(a * 0.1).
    if case == "online_ignore":
        return np_reference_loss("ce_ignore", 0.1 * 0.1)
    return np_reference_loss(case, 0.1)


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_jax_data_parallel_matches_single_device(jax_dp, case):
    assert jax_dp["devices"] == 2
    res = jax_dp[case]
    assert res["single"]["loss0"] == pytest.approx(_reference(case), rel=1e-5)
    _assert_same(res["single"], res["dist"])


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest.mark.slow
def test_schedule_under_multi_worker_mirrored(tmp_path, mirrored):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs, outs = [], []
    for i in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
        outs.append(tmp_path / f"worker{i}.json")
        env = _env(KERAS_BACKEND="tensorflow", TF_CONFIG=tf_config)
        procs.append(_spawn(["multiworker", str(i)], env, outs[-1]))
    try:
        logs = _finish(procs, TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"MultiWorkerMirroredStrategy workers exceeded {TIMEOUT}s")
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-4000:]
    w0, w1 = (json.loads(o.read_text()) for o in outs)
    for w in (w0, w1):
        assert w["factors"] == pytest.approx([0.3, 0.15, 0.0])
        assert w["seen"] == pytest.approx([0.3, 0.15, 0.0])
    np.testing.assert_allclose(w0["losses"], w1["losses"], rtol=1e-6)
    for a, b in zip(w0["final"], w1["final"]):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    # ... and equal to single-device training of the same loss and schedule
    single = mirrored["cp_ignore"]["single"]
    np.testing.assert_allclose(w0["losses"], single["losses"], rtol=1e-5, atol=1e-6)
    for a, b in zip(w0["final"], single["final"]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def _main(argv: list[str]) -> None:
    kind, out = argv[1], Path(argv[-1])
    sys.path.insert(0, str(HERE.parents[1]))
    if kind == "mirrored":
        res = worker_mirrored()
    elif kind == "jax":
        res = worker_jax()
    elif kind == "multiworker":
        res = worker_multiworker(int(argv[2]))
    else:
        raise SystemExit(f"unknown worker {kind!r}")
    out.write_text(json.dumps(res))


if __name__ == "__main__":
    _main(sys.argv)
