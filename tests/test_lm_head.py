"""The fused LM head (``keras_ls.losses.linear_smoothed_crossentropy``, ``LinearSmoothedCE``).

Runs under the process's ``KERAS_BACKEND`` (run it under tensorflow, jax and torch). The
reference is the unfused head in numpy float64 (values and the three gradients, written out
from the definition), and torch's ``F.cross_entropy(label_smoothing=...)`` on torch.
Tolerances: float32 inputs, logits of size ~10 summed over H <= 32 and V <= 300 terms, give
~1e-6 relative error; 2e-5 leaves room for another machine's BLAS blocking.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops

import keras_ls
from keras_ls.losses import LinearSmoothedCE, linear_smoothed_crossentropy

BACKEND = keras.backend.backend()


def reference(y, h, w, b, a, ignore=None, transpose=False, cap=None, z_loss=0.0, g=None):
    """Per-token loss and (dh, dW, db) of ``sum(g * loss)`` in float64, from the definition."""
    h = np.asarray(h, np.float64)
    w = np.asarray(w, np.float64)
    wm = w.T if transpose else w
    shape = h.shape[:-1]
    h2 = h.reshape(-1, h.shape[-1])
    y2 = np.asarray(y).reshape(-1)
    valid = np.ones_like(y2, bool) if ignore is None else y2 != ignore
    yy = np.where(valid, y2, 0)
    raw = h2 @ wm + (0.0 if b is None else np.asarray(b, np.float64))
    z = raw if cap is None else cap * np.tanh(raw / cap)
    m = z.max(-1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(z - m).sum(-1))
    logp = z - lse[:, None]
    v = z.shape[-1]
    loss = -(1 - a) * logp[np.arange(len(yy)), yy] - a * logp.mean(-1) + z_loss * lse**2
    loss = np.where(valid, loss, 0.0)
    g = np.ones_like(loss) if g is None else np.asarray(g, np.float64).reshape(-1)
    g = np.where(valid, g, 0.0)
    p = np.exp(logp)
    target = (1 - a) * np.eye(v)[yy] + a / v
    dz = (p - target + 2 * z_loss * lse[:, None] * p) * g[:, None]
    if cap is not None:
        dz = dz * (1 - (z / cap) ** 2)
    dh = (dz @ wm.T).reshape(h.shape)
    dw = h2.T @ dz
    return loss.reshape(shape), dh, (dw.T if transpose else dw), dz.sum(0)


def value_and_grads(fn, params, g):
    """``fn(*params)`` (per-token) and the gradients of ``sum(g * fn(*params))`` (numpy)."""
    params = [None if p is None else np.asarray(p) for p in params]
    present = [i for i, p in enumerate(params) if p is not None]
    if BACKEND == "jax":
        import jax
        import jax.numpy as jnp

        def total(ps):
            full = list(params)
            for i, p in zip(present, ps):
                full[i] = p
            out = fn(*full)
            return jnp.sum(out * g), out

        ps = [jnp.asarray(params[i]) for i in present]
        (_, out), grads = jax.value_and_grad(total, has_aux=True)(ps)
    elif BACKEND == "torch":
        import torch

        ps = [torch.tensor(params[i], requires_grad=True) for i in present]
        full = list(params)
        for i, p in zip(present, ps):
            full[i] = p
        out = fn(*full)
        (out * torch.as_tensor(g, dtype=out.dtype)).sum().backward()
        grads = [p.grad for p in ps]
        out = out.detach()
    else:
        import tensorflow as tf

        ps = [tf.Variable(params[i]) for i in present]
        full = list(params)
        with tf.GradientTape() as tape:
            for i, p in zip(present, ps):
                full[i] = p
            out = fn(*full)
            total = tf.reduce_sum(out * tf.cast(g, out.dtype))
        grads = tape.gradient(total, ps)
    grads = [np.asarray(ops.convert_to_numpy(ops.cast(x, "float32")), np.float64) for x in grads]
    result = dict(zip(present, grads))
    loss = np.asarray(ops.convert_to_numpy(ops.cast(out, "float32")), np.float64)
    return loss, [result.get(i) for i in range(len(params))]


def problem(rng, n=(3, 13), hidden=16, vocab=50, scale=1.0, dtype="float32"):
    h = (rng.normal(size=(*n, hidden)) * scale).astype(dtype)
    w = (rng.normal(size=(hidden, vocab)) / np.sqrt(hidden)).astype(dtype)
    b = rng.normal(size=(vocab,)).astype(dtype)
    y = rng.integers(0, vocab, size=n)
    g = rng.uniform(0.5, 2.0, size=n).astype("float32")
    return y, h, w, b, g


def check(rng, *, a=0.1, ignore=None, transpose=False, cap=None, z_loss=0.0, chunk=7,
          bias=True, mean=False, rtol=2e-5, atol=2e-6, **shape):
    """``mean``: the upstream gradient of a masked mean (the gradients computed in the
    forward sweep and scaled); otherwise random per-token weights (the recomputing sweep)."""
    y, h, w, b, g = problem(rng, **shape)
    if ignore is not None:
        y[0, :4] = ignore
    if mean:
        valid = np.ones(y.shape) if ignore is None else (y != ignore).astype(float)
        g = (valid / valid.sum()).astype("float32")
    if not bias:
        b = None
    if transpose:
        w = np.ascontiguousarray(w.T)

    def fn(h, w, b):
        return linear_smoothed_crossentropy(
            y, h, w, b, label_smoothing=a, ignore_class=ignore, chunk_size=chunk,
            transpose_kernel=transpose, logit_soft_cap=cap, z_loss=z_loss,
        )

    loss, (dh, dw, db) = value_and_grads(fn, [h, w, b], g)
    ref = reference(y, h, w, b, a, ignore, transpose, cap, z_loss, g)
    np.testing.assert_allclose(loss, ref[0], rtol=rtol, atol=atol)
    np.testing.assert_allclose(dh, ref[1], rtol=rtol, atol=atol)
    np.testing.assert_allclose(dw, ref[2], rtol=rtol, atol=atol)
    if bias:
        np.testing.assert_allclose(db, ref[3], rtol=rtol, atol=atol)


@pytest.mark.parametrize("mean", [False, True], ids=["weights", "mean"])
@pytest.mark.parametrize("a", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("chunk", [1, 7, 64])  # 39 tokens: a ragged last chunk, one chunk
def test_values_and_gradients(a, chunk, mean):
    check(np.random.default_rng(1), a=a, chunk=chunk, mean=mean)


@pytest.mark.parametrize(
    "options",
    [
        dict(ignore=0),
        dict(ignore=0, mean=True),
        dict(ignore=-100),
        dict(transpose=True, bias=False),
        dict(cap=3.0, z_loss=1e-2),
        dict(chunk=None, vocab=300),
    ],
    ids=["ignore0", "ignore0_mean", "ignore-100", "transposed", "softcap_zloss", "default_chunk"],
)
def test_options(options):
    check(np.random.default_rng(2), **options)


def test_bf16_inputs():
    """bf16 hidden/kernel: logits accumulate in float32 from exact products (same value as
    the float64 reference of the rounded inputs to float32 rounding); the gradients of the
    hidden states pass dz through bf16 (~2**-8 relative per term), as mixed precision does."""
    rng = np.random.default_rng(3)
    y, h, w, b, g = problem(rng)
    hb, wb, bb = (ops.cast(x, "bfloat16") for x in (h, w, b))
    h64, w64, b64 = (np.asarray(ops.convert_to_numpy(ops.cast(x, "float32")), np.float64)
                     for x in (hb, wb, bb))

    def fn(h, w, b):
        hb, wb, bb = (ops.cast(x, "bfloat16") for x in (h, w, b))
        return linear_smoothed_crossentropy(y, hb, wb, bb, label_smoothing=0.1, chunk_size=5)

    out = linear_smoothed_crossentropy(y, hb, wb, bb, label_smoothing=0.1, chunk_size=5)
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    ref = reference(y, h64, w64, b64, 0.1, g=g)
    np.testing.assert_allclose(ops.convert_to_numpy(out), ref[0], rtol=1e-5, atol=1e-5)
    loss, (dh, dw, db) = value_and_grads(fn, [h64.astype("float32"), w64.astype("float32"),
                                              b64.astype("float32")], g)
    np.testing.assert_allclose(loss, ref[0], rtol=1e-5, atol=1e-5)
    for got, want in zip((dh, dw, db), ref[1:]):
        np.testing.assert_allclose(got, want, rtol=2e-2, atol=2e-2 * np.abs(want).max())


def test_extreme_logits_are_exact():
    """Logits of +-1e4 (max-shifted in the shared kernel): equal top logits give ln 2."""
    h = np.array([[1.0, 0.0]], "float32")
    w = np.array([[1e4, 1e4, -1e4], [0.0, 0.0, 0.0]], "float32")
    out = linear_smoothed_crossentropy([0], h, w, label_smoothing=0.0)
    assert abs(float(ops.convert_to_numpy(out)[0]) - np.log(2.0)) < 1e-6
    out = linear_smoothed_crossentropy([0], h, w, label_smoothing=1.0)  # <log p> finite
    np.testing.assert_allclose(ops.convert_to_numpy(out)[0], (np.log(2) * 3 + 2e4) / 3, rtol=1e-6)


def test_matches_unfused_smoothed_ce():
    rng = np.random.default_rng(4)
    y, h, w, b, _ = problem(rng, vocab=120)
    y[1, 3:] = 7
    fused = linear_smoothed_crossentropy(y, h, w, b, label_smoothing=0.2, ignore_class=7)
    full = keras_ls.losses.smoothed_crossentropy(
        y, ops.matmul(h, w) + b, 0.2, from_logits=True, ignore_class=7
    )
    np.testing.assert_allclose(ops.convert_to_numpy(fused), ops.convert_to_numpy(full),
                               rtol=2e-5, atol=2e-6)


@pytest.mark.skipif(BACKEND != "torch", reason="torch's own loss as a second reference")
def test_torch_cross_entropy_reference():
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(5)
    y, h, w, b, _ = problem(rng, n=(40,), vocab=200)
    y[:5] = -100
    ht, wt, bt = (torch.tensor(x, requires_grad=True) for x in (h, w, b))
    ref = F.cross_entropy(ht @ wt + bt, torch.tensor(y), label_smoothing=0.1, ignore_index=-100)
    ref.backward()
    want = [ref.item()] + [x.grad.clone() for x in (ht, wt, bt)]
    for x in (ht, wt, bt):
        x.grad = None
    loss = LinearSmoothedCE(0.1, kernel=wt, bias=bt, ignore_class=-100, chunk_size=16)(y, ht)
    loss.backward()
    np.testing.assert_allclose(loss.item(), want[0], rtol=1e-5)
    for x, ref_grad in zip((ht, wt, bt), want[1:]):
        np.testing.assert_allclose(x.grad.numpy(), ref_grad.numpy(), rtol=2e-5, atol=1e-7)


def test_traced_factor_one_formula():
    """The factor as a traced scalar inside a compiled function: no Python branch on it."""
    rng = np.random.default_rng(6)
    y, h, w, b, _ = problem(rng)
    want = [reference(y, h, w, b, a)[0] for a in (0.0, 0.3)]
    if BACKEND == "jax":
        import jax

        f = jax.jit(lambda a: linear_smoothed_crossentropy(y, h, w, b, label_smoothing=a))
    elif BACKEND == "tensorflow":
        import tensorflow as tf

        f = tf.function(
            lambda a: linear_smoothed_crossentropy(y, h, w, b, label_smoothing=a),
            jit_compile=True,
        )
    else:
        import torch

        def f(a):
            return linear_smoothed_crossentropy(y, h, w, b, label_smoothing=torch.tensor(a))

    for a, ref in zip((0.0, 0.3), want):
        got = ops.convert_to_numpy(f(np.float32(a)))
        np.testing.assert_allclose(got, ref, rtol=2e-5, atol=2e-6)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TF graph and XLA gradients")
@pytest.mark.parametrize("jit", [False, True])
def test_tf_function_gradients(jit):
    import tensorflow as tf

    rng = np.random.default_rng(7)
    y, h, w, b, g = problem(rng)
    hv, wv, bv = tf.Variable(h), tf.Variable(w), tf.Variable(b)

    @tf.function(jit_compile=jit)
    def step():
        with tf.GradientTape() as tape:
            loss = linear_smoothed_crossentropy(y, hv, wv, bv, label_smoothing=0.1,
                                                chunk_size=4, ignore_class=3)
            total = tf.reduce_sum(loss * g)
        return loss, tape.gradient(total, [hv, wv, bv])

    loss, grads = step()
    ref = reference(y, h, w, b, 0.1, ignore=3, g=g)
    np.testing.assert_allclose(loss.numpy(), ref[0], rtol=2e-5, atol=2e-6)
    for got, want in zip(grads, ref[1:]):
        np.testing.assert_allclose(got.numpy(), want, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(kernel=np.zeros((5, 9), "float32")), "kernel` must be \\(H, V\\) with H = 4"),
        (dict(bias=np.zeros((3,), "float32")), "`bias` must have shape \\(9,\\)"),
        (dict(y_true=np.zeros((2, 2), "int32")), "shape of `hidden` without"),
        (dict(chunk_size=0), "`chunk_size` must be a positive integer"),
        (dict(z_loss=-1.0), "`z_loss` must be a finite number >= 0"),
        (dict(label_smoothing=1.5), "label_smoothing"),
    ],
)
def test_errors_name_the_argument(bad, match):
    args = dict(
        y_true=np.zeros((3,), "int32"),
        hidden=np.zeros((3, 4), "float32"),
        kernel=np.zeros((4, 9), "float32"),
        bias=None,
    )
    kwargs = {k: bad.pop(k) for k in list(bad) if k not in args}
    args.update(bad)
    with pytest.raises((ValueError, TypeError), match=match):
        linear_smoothed_crossentropy(**args, **kwargs)


def test_out_of_range_label_is_an_error():
    with pytest.raises(ValueError, match="outside \\[0, 9\\)"):
        linear_smoothed_crossentropy(
            [9], np.zeros((1, 4), "float32"), np.zeros((4, 9), "float32")
        )


def _tiny_lm(vocab=40, hidden=16, steps=6):
    keras.utils.set_random_seed(0)
    inp = keras.Input((steps,), dtype="int32")
    emb = keras.layers.Embedding(vocab, hidden)(inp)
    hid = keras.layers.Dense(hidden, activation="tanh", name="trunk")(emb)
    head = keras.layers.Dense(vocab, name="lm_head")
    return inp, hid, head, keras.Model(inp, head(hid))


@pytest.mark.slow
def test_fit_matches_dense_smoothed_ce():
    """The documented pattern: train a model that outputs the hidden states (tracking the
    head as an attribute) with LinearSmoothedCE; the same losses as Dense + SmoothedCE, and
    the inference model (sharing the layers) predicts the same logits."""
    rng = np.random.default_rng(0)
    x = rng.integers(1, 40, size=(32, 6))
    y = np.roll(x, -1, axis=1)
    y[:, -1] = 0  # padding, ignored
    _, _, _, unfused = _tiny_lm()
    unfused.compile(keras.optimizers.SGD(0.5),
                    keras_ls.SmoothedCE(0.1, from_logits=True, ignore_class=0))
    want = unfused.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0).history["loss"]

    inp, hid, head, inference = _tiny_lm()
    train = keras.Model(inp, hid)
    train.lm_head = head  # tracked: its kernel and bias are trained by fit
    loss = LinearSmoothedCE(0.1, layer=head, ignore_class=0, chunk_size=5)
    train.compile(keras.optimizers.SGD(0.5), loss)
    got = train.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0).history["loss"]
    np.testing.assert_allclose(got, want, rtol=1e-5)
    np.testing.assert_allclose(inference.predict(x[:4], verbose=0),
                               unfused.predict(x[:4], verbose=0), rtol=1e-4, atol=1e-5)
    if keras.backend.backend() == "jax":  # a constant of the jitted step: refused, not ignored
        with pytest.raises(RuntimeError, match="jax.jit function as a constant"):
            loss.label_smoothing = 0.0
        return
    loss.label_smoothing = 0.0  # the schedulable factor, read inside the compiled step
    got = train.evaluate(x, y, batch_size=8, verbose=0)
    unfused.loss.label_smoothing = 0.0
    np.testing.assert_allclose(got, unfused.evaluate(x, y, batch_size=8, verbose=0), rtol=1e-5)


def test_config_round_trip_and_missing_head():
    loss = LinearSmoothedCE(0.2, kernel=keras.Variable(np.zeros((4, 9), "float32")),
                            ignore_class=-1, z_loss=1e-4, logit_soft_cap=30.0)
    config = loss.get_config()
    clone = LinearSmoothedCE.from_config(config)
    assert clone.get_config() == config
    with pytest.raises(ValueError, match="has no head"):
        clone(np.zeros((3,), "int32"), np.zeros((3, 4), "float32"))
    with pytest.raises(ValueError, match="exactly one of `layer`"):
        LinearSmoothedCE(layer=keras.layers.Dense(3), kernel=keras.Variable(np.zeros((2, 3))))


@pytest.mark.slow
def test_keras_hub_gpt2_trains_through_fused_loss():
    """A tiny GPT-2 from config (no download): the backbone outputs the hidden states and
    owns the tied embedding; fit through LinearSmoothedCE equals GPT2CausalLM + SmoothedCE,
    and a GPT2CausalLM on the same backbone still predicts logits and generates tokens."""
    keras_hub = pytest.importorskip("keras_hub")
    vocab, steps = 64, 8
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, vocab, size=(16, steps + 1)).astype("int32")
    x = {"token_ids": tokens[:, :-1], "padding_mask": np.ones((16, steps), bool)}
    y = tokens[:, 1:]

    def backbone():
        keras.utils.set_random_seed(0)
        return keras_hub.models.GPT2Backbone(
            vocabulary_size=vocab, num_layers=1, num_heads=2, hidden_dim=16,
            intermediate_dim=32, max_sequence_length=steps + 4, dropout=0.0,
        )

    unfused = keras_hub.models.GPT2CausalLM(backbone=backbone(), preprocessor=None)
    unfused.compile(optimizer=keras.optimizers.SGD(0.1),
                    loss=keras_ls.SmoothedCE(0.1, from_logits=True))
    want = unfused.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0).history["loss"]

    fused = backbone()
    fused.compile(optimizer=keras.optimizers.SGD(0.1),
                  loss=LinearSmoothedCE(0.1, layer=fused.token_embedding))
    got = fused.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0).history["loss"]
    np.testing.assert_allclose(got, want, rtol=1e-5)

    lm = keras_hub.models.GPT2CausalLM(backbone=fused, preprocessor=None)
    lm.compile(sampler="greedy")
    np.testing.assert_allclose(lm.predict(x, verbose=0), unfused.predict(x, verbose=0),
                               rtol=1e-4, atol=1e-5)
    prompt = {"token_ids": x["token_ids"][:2], "padding_mask": np.arange(steps)[None] < [[3], [3]]}
    out = lm.generate(prompt, max_length=steps, stop_token_ids=None)
    assert np.asarray(out["token_ids"]).shape == (2, steps)


def test_keras_hub_gemma2_soft_cap_is_read_from_the_embedding():
    """A tiny Gemma-2-style backbone (final_logit_soft_cap): ``layer=token_embedding`` takes
    the tied matrix and the cap, so the fused loss equals SmoothedCE on the CausalLM's logits."""
    keras_hub = pytest.importorskip("keras_hub")
    vocab, steps = 64, 8
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, vocab, size=(4, steps + 1)).astype("int32")
    x = {"token_ids": tokens[:, :-1], "padding_mask": np.ones((4, steps), bool)}
    y = tokens[:, 1:]
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.GemmaBackbone(
        vocabulary_size=vocab, num_layers=1, num_query_heads=2, num_key_value_heads=1,
        hidden_dim=16, intermediate_dim=32, head_dim=8, final_logit_soft_cap=3.0,
        attention_logit_soft_cap=50.0, use_post_ffw_norm=True, use_post_attention_norm=True,
        query_head_dim_normalize=False, use_sliding_window_attention=False,
    )
    logits = keras_hub.models.GemmaCausalLM(backbone=backbone, preprocessor=None).predict(
        x, verbose=0
    )
    want = keras_ls.losses.smoothed_crossentropy(y, logits, 0.1, from_logits=True)
    hidden = backbone.predict(x, verbose=0)
    got = LinearSmoothedCE(0.1, layer=backbone.token_embedding, reduction=None)(y, hidden)
    np.testing.assert_allclose(ops.convert_to_numpy(got), ops.convert_to_numpy(want),
                               rtol=2e-5, atol=2e-6)
