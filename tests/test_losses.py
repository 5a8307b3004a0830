"""SmoothedCE / SmoothedBCE against numpy float64, PyTorch and Keras."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from ls_reference import np_log_softmax, np_smoothed_ce

from keras_ls import SmoothedBCE, SmoothedCE

RNG = np.random.default_rng(0)


def _logits(shape, scale=3.0):
    return (RNG.normal(size=shape) * scale).astype("float32")


def _torch_ce(logits, labels, a, axis=-1, ignore_index=-100):
    z = torch.tensor(np.moveaxis(logits, axis, 1) if logits.ndim > 2 else logits)
    return float(
        F.cross_entropy(
            z, torch.tensor(labels).long(), label_smoothing=a, ignore_index=ignore_index
        )
    )


@pytest.mark.parametrize("a", [0.0, 0.1, 0.5, 1.0])
@pytest.mark.parametrize("shape", [(16, 7), (4, 6, 9), (2, 5, 4, 3)])
def test_sparse_matches_torch_cross_entropy(a, shape):
    z = _logits(shape)
    y = RNG.integers(0, shape[-1], shape[:-1])
    got = float(SmoothedCE(a, from_logits=True)(y, z))
    assert got == pytest.approx(_torch_ce(z, y, a), rel=1e-5)
    assert got == pytest.approx(np_smoothed_ce(y, z, a), rel=1e-5)


@pytest.mark.parametrize("shape, axis", [((4, 6, 9), 1), ((2, 5, 4, 3), 1), ((3, 4, 6), 0)])
def test_sparse_class_axis(shape, axis):
    z = _logits(shape)
    label_shape = tuple(d for i, d in enumerate(shape) if i != axis)
    y = RNG.integers(0, shape[axis], label_shape)
    got = float(SmoothedCE(0.2, from_logits=True, axis=axis)(y, z))
    assert got == pytest.approx(np_smoothed_ce(y, z, 0.2, axis=axis), rel=1e-5)
    if axis == 1:
        assert got == pytest.approx(_torch_ce(np.moveaxis(z, 1, -1), y, 0.2), rel=1e-5)


def test_ignore_class_matches_torch_ignore_index():
    z = _logits((3, 10, 6))
    y = RNG.integers(0, 6, (3, 10))
    y[:, 7:] = 0  # padding id 0
    y[0, :] = 0
    got = float(SmoothedCE(0.1, from_logits=True, ignore_class=0)(y, z))
    assert got == pytest.approx(_torch_ce(z, y, 0.1, ignore_index=0), rel=1e-5)
    assert got == pytest.approx(np_smoothed_ce(y, z, 0.1, ignore_class=0), rel=1e-5)


def test_ignore_class_outside_label_range_like_minus_one():
    z = _logits((8, 4))
    y = RNG.integers(0, 4, 8)
    y[:3] = -1
    got = float(SmoothedCE(0.3, from_logits=True, ignore_class=-1)(y, z))
    assert got == pytest.approx(_torch_ce(z, y, 0.3, ignore_index=-1), rel=1e-5)


def test_all_ignored_batch_gives_zero_loss_and_zero_grad():
    z = tf.Variable(_logits((4, 5)))
    y = np.full(4, 3)
    with tf.GradientTape() as tape:
        loss = SmoothedCE(0.1, from_logits=True, ignore_class=3)(y, z)
    grad = tape.gradient(loss, z).numpy()
    assert float(loss) == 0.0
    assert np.all(grad == 0.0)


@pytest.mark.parametrize("a", [0.0, 0.15, 0.9])
def test_dense_matches_keras_categorical_crossentropy(a):
    z = _logits((12, 5))
    y = np.eye(5, dtype="float32")[RNG.integers(0, 5, 12)]
    soft = RNG.dirichlet(np.ones(5), size=12).astype("float32")  # MixUp-like
    for labels in (y, soft):
        ours = float(SmoothedCE(a, from_logits=True)(labels, z))
        ref = float(
            keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=a)(labels, z)
        )
        assert ours == pytest.approx(ref, rel=1e-6)
    probs = tf.nn.softmax(z).numpy()
    ours = float(SmoothedCE(a)(y, probs))
    ref = float(keras.losses.CategoricalCrossentropy(label_smoothing=a)(y, probs))
    assert ours == pytest.approx(ref, rel=1e-5)


def test_sparse_and_dense_labels_agree_including_trailing_one():
    z = _logits((10, 8))
    y = RNG.integers(0, 8, 10)
    loss = SmoothedCE(0.1, from_logits=True)
    a = float(loss(y, z))
    assert float(loss(y[:, None], z)) == pytest.approx(a, rel=1e-6)
    assert float(loss(np.eye(8)[y], z)) == pytest.approx(a, rel=1e-6)


def test_probabilities_sparse_matches_keras_dense():
    z = _logits((10, 4), scale=1.0)
    p = tf.nn.softmax(z).numpy()
    y = RNG.integers(0, 4, 10)
    ours = float(SmoothedCE(0.2)(y, p))
    ref = float(keras.losses.CategoricalCrossentropy(label_smoothing=0.2)(np.eye(4)[y], p))
    assert ours == pytest.approx(ref, rel=1e-5)


def test_prior_sparse_and_dense():
    prior = np.array([0.4, 0.3, 0.2, 0.1])
    z = _logits((20, 4))
    y = RNG.integers(0, 4, 20)
    sparse = float(SmoothedCE(0.3, from_logits=True, prior=prior)(y, z))
    dense = float(SmoothedCE(0.3, from_logits=True, prior=prior)(np.eye(4)[y], z))
    ref = np_smoothed_ce(y, z, 0.3, prior=prior)
    assert sparse == pytest.approx(ref, rel=1e-5)
    assert dense == pytest.approx(ref, rel=1e-5)


def _np_grad(labels, logits, a, prior=None, ignore_class=None):
    k = logits.shape[-1]
    valid = np.ones(labels.shape, bool) if ignore_class is None else labels != ignore_class
    onehot = np.eye(k)[np.where(valid, labels, 0)]
    p = np.full(k, 1.0 / k) if prior is None else prior
    target = (1 - a) * onehot + a * p
    soft = np.exp(np_log_softmax(logits))
    return (soft - target) * valid[:, None] / max(valid.sum(), 1)


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("prior", [None, np.array([0.1, 0.2, 0.3, 0.15, 0.25])])
def test_gradient_matches_reference_graph_and_xla(jit, prior):
    z = tf.Variable(_logits((9, 5)))
    y = RNG.integers(0, 5, 9)
    y[0] = 2
    loss = SmoothedCE(0.25, from_logits=True, prior=prior, ignore_class=2)

    @tf.function(jit_compile=jit)
    def step():
        with tf.GradientTape() as tape:
            value = loss(y, z)
        return value, tape.gradient(value, z)

    value, grad = step()
    ref = np_smoothed_ce(y, z.numpy(), 0.25, prior=prior, ignore_class=2)
    assert float(value) == pytest.approx(ref, rel=1e-5)
    np.testing.assert_allclose(grad.numpy(), _np_grad(y, z.numpy(), 0.25, prior, 2), atol=1e-6)


def test_gradient_matches_torch_autograd_3d():
    z = _logits((2, 7, 6))
    y = RNG.integers(0, 6, (2, 7))
    zt = tf.Variable(z)
    with tf.GradientTape() as tape:
        value = SmoothedCE(0.1, from_logits=True)(y, zt)
    ours = tape.gradient(value, zt).numpy()
    ztorch = torch.tensor(z, requires_grad=True)
    F.cross_entropy(ztorch.permute(0, 2, 1), torch.tensor(y), label_smoothing=0.1).backward()
    np.testing.assert_allclose(ours, ztorch.grad.numpy(), atol=1e-6)


def test_extreme_logits_finite_loss_and_grad():
    z = tf.Variable(np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4]], "float32"))
    y = np.array([1, 2])
    for labels in (y, np.eye(3)[y]):
        with tf.GradientTape() as tape:
            value = SmoothedCE(0.1, from_logits=True)(labels, z)
        grad = tape.gradient(value, z).numpy()
        assert np.isfinite(float(value)) and np.all(np.isfinite(grad))
    # lse = 1e4 for row 0; loss = 1e4 - 0.9*(-1e4) - 0.1*0 ; row 1 ~ 0.1*(1e4+2e4/3)
    assert float(SmoothedCE(0.1, from_logits=True)(y, z)) == pytest.approx(
        (19000.0 + 0.1 * (1e4 - (-1e4 / 3))) / 2, rel=1e-4
    )


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_mixed_precision_computed_in_float32(dtype):
    z32 = _logits((6, 5), scale=1.0)
    zlow = tf.cast(z32, dtype)
    y = RNG.integers(0, 5, 6)
    loss = SmoothedCE(0.1, from_logits=True)
    value = loss(y, zlow)
    assert value.dtype == tf.float32
    ref = np_smoothed_ce(y, tf.cast(zlow, "float32").numpy(), 0.1)
    assert float(value) == pytest.approx(ref, rel=1e-5)


def test_label_smoothing_property_assignment_and_validation():
    loss = SmoothedCE(0.1)
    assert loss.label_smoothing == pytest.approx(0.1)
    loss.label_smoothing = 0.3
    assert loss.label_smoothing == pytest.approx(0.3)
    for bad in (-0.01, 1.01, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="label_smoothing"):
            loss.label_smoothing = bad
        with pytest.raises(ValueError, match="label_smoothing"):
            SmoothedCE(bad)
    with pytest.raises(TypeError, match="label_smoothing"):
        SmoothedCE("0.1")
    assert loss.label_smoothing == pytest.approx(0.3)  # unchanged by failed sets


def test_assignment_reaches_compiled_function_without_retrace():
    loss = SmoothedCE(0.0, from_logits=True)
    z = _logits((8, 4))
    y = RNG.integers(0, 4, 8)
    traces = []

    @tf.function(jit_compile=True)
    def f(z):
        traces.append(1)
        return loss(y, z)

    values = []
    for a in (0.0, 0.5, 1.0):
        loss.label_smoothing = a
        values.append(float(f(z)))
    np.testing.assert_allclose(
        values, [np_smoothed_ce(y, z, a) for a in (0.0, 0.5, 1.0)], rtol=1e-5
    )
    assert len(traces) == 1


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"prior": [0.5, 0.6]}, "sum to 1"),
        ({"prior": [-0.5, 1.5]}, "non-negative"),
        ({"ignore_class": 1.5}, "ignore_class"),
        ({"axis": "x"}, "axis"),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        SmoothedCE(0.1, **kwargs)


def test_bad_label_shapes_are_named():
    z = _logits((4, 5))
    loss = SmoothedCE(0.1, from_logits=True)
    with pytest.raises(ValueError, match="y_true.shape=\\(4, 3\\)"):
        loss(np.zeros((4, 3)), z)
    with pytest.raises(ValueError, match="y_true.shape=\\(3,\\)"):
        loss(np.zeros(3), z)
    with pytest.raises(ValueError, match="prior.*3 entries.*5 classes"):
        SmoothedCE(0.1, prior=[0.2, 0.3, 0.5])(np.zeros(4), z)
    with pytest.raises(ValueError, match="ignore_class.*integer labels"):
        SmoothedCE(0.1, ignore_class=0)(np.eye(5)[[0, 1, 2, 3]], z)


@settings(max_examples=25, deadline=None)
@given(
    shape=st.lists(st.integers(1, 5), min_size=1, max_size=3),
    k=st.integers(2, 7),
    axis_pick=st.integers(0, 3),
    a=st.floats(0.0, 1.0),
    use_ignore=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_property_sparse_equals_reference(shape, k, axis_pick, a, use_ignore, seed):
    rng = np.random.default_rng(seed)
    full = list(shape) + [k]
    axis = axis_pick % len(full)
    full.insert(axis, full.pop())  # class axis at `axis`
    z = (rng.normal(size=full) * 4).astype("float32")
    labels_shape = [d for i, d in enumerate(full) if i != axis]
    y = rng.integers(0, k, labels_shape)
    ignore = 0 if use_ignore else None
    got = float(SmoothedCE(a, from_logits=True, axis=axis, ignore_class=ignore)(y, z))
    ref = np_smoothed_ce(y, z, a, axis=axis, ignore_class=ignore)
    assert got == pytest.approx(ref, rel=1e-4, abs=1e-5)


# ----------------------------------------------------------------- SmoothedBCE
@pytest.mark.parametrize("a", [0.0, 0.1, 0.6])
@pytest.mark.parametrize("from_logits", [True, False])
def test_bce_matches_keras(a, from_logits):
    z = _logits((6, 4), scale=1.5)
    pred = z if from_logits else tf.sigmoid(z).numpy()
    y = RNG.integers(0, 2, (6, 4)).astype("float32")
    ours = float(SmoothedBCE(a, from_logits=from_logits)(y, pred))
    ref = float(
        keras.losses.BinaryCrossentropy(from_logits=from_logits, label_smoothing=a)(y, pred)
    )
    assert ours == pytest.approx(ref, rel=1e-5)
    t = y * (1 - a) + a / 2
    sig = 1 / (1 + np.exp(-z.astype(np.float64)))
    np_ref = -(t * np.log(sig) + (1 - t) * np.log(1 - sig)).mean()
    assert ours == pytest.approx(np_ref, rel=1e-4)


def test_bce_assignment_and_shape_error():
    loss = SmoothedBCE(0.0, from_logits=True)
    loss.label_smoothing = 1.0  # targets all 0.5: loss = mean softplus(z) - 0.5 z
    z = _logits((3, 2))
    ref = np.mean(np.log1p(np.exp(z.astype(np.float64))) - 0.5 * z)
    assert float(loss(np.zeros((3, 2)), z)) == pytest.approx(ref, rel=1e-5)
    with pytest.raises(ValueError, match="y_true.shape=\\(3,\\)"):
        loss(np.zeros(3), z)


def test_get_config_round_trip_keeps_current_value():
    loss = SmoothedCE(0.1, from_logits=True, ignore_class=0, prior=[0.5, 0.5], axis=1)
    loss.label_smoothing = 0.05
    again = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(again, SmoothedCE)
    assert again.get_config() == loss.get_config()
    assert again.label_smoothing == pytest.approx(0.05)
    bce = SmoothedBCE(0.2, from_logits=True)
    assert keras.losses.deserialize(keras.losses.serialize(bce)).get_config() == bce.get_config()
