"""
Title: Label smoothing on padded sequences: the addition RNN
Author: keras-ls contributors
Date created: 2026/11/22
Last modified: 2026/11/22
Description: A sequence-to-sequence LSTM learns to add numbers given as text;
    targets have variable length and are padded, and `SmoothedCE(ignore_class=PAD)`
    keeps the padding out of the loss.
Accelerator: None (CPU, about a minute)

## Introduction

This is the classic Keras "addition RNN" tutorial task: the input is a
string such as `"535+61"` and the model writes the answer `"596"` one
character at a time. Unlike the original tutorial, the answers here have
their natural, *variable* length followed by an end-of-sequence token, and
are padded with a `PAD` token to a fixed length. Padding is not part of the
task, so it must not count in the loss, in its mean, or in the accuracy.

`keras_ls.SmoothedCE(0.1, ignore_class=PAD, from_logits=True)` takes integer
targets of shape `(B, T)` and logits of shape `(B, T, K)`; positions whose
target is `PAD` get a loss of 0 and a Keras mask, so the batch loss is the
mean over the real tokens only. Below we check that against a hand-written
numpy computation, and check that the model's outputs at padded positions
have no influence at all.

As in the keras-io tutorial, the model trains in a loop of `model.fit(...,
epochs=1)` calls. A `SmoothingScheduler` lowers the factor from 0.1 to 0 over the
iterations: its clock is the optimizer's iteration count, so it follows the
training across the `fit` calls (with an epoch counter it would stay at epoch 0).

Run it with:

```
python examples/seq2seq_padding.py
```
"""

import argparse
import time

import keras
import numpy as np

from keras_ls import SmoothedCE, SmoothingScheduler, schedules

"""
## Vocabulary and data

Inputs are one-hot characters (digits, `+` and a space for padding the
question, reversed as in the original tutorial). Targets are integer tokens:
`PAD = 0`, the digits `0`-`9` as 1-10 and `EOS = 11`.
"""

PAD, EOS = 0, 11
NUM_TOKENS = 12
IN_CHARS = "0123456789+ "
IN_INDEX = {c: i for i, c in enumerate(IN_CHARS)}


def make_dataset(n: int, digits: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``n`` distinct additions of numbers with 1..``digits`` digits.

    Returns one-hot questions ``(n, 2*digits+1, 12)``, padded integer answers
    ``(n, digits+2)`` (answer digits, EOS, then PAD) and the question strings.
    """
    rng = np.random.default_rng(seed)
    in_len, out_len = 2 * digits + 1, digits + 2
    seen: set[tuple[int, int]] = set()
    questions: list[str] = []
    answers: list[str] = []
    if n > (10**digits) ** 2:
        raise ValueError(f"At most {(10**digits) ** 2} distinct questions with {digits} digits.")
    while len(questions) < n:
        # Pick the length first, so short numbers are as common as long ones.
        a, b = (int(rng.integers(10 ** (k - 1) if k > 1 else 0, 10**k))
                for k in rng.integers(1, digits + 1, size=2))
        if (a, b) in seen:
            continue
        seen.add((a, b))
        questions.append(f"{a}+{b}")
        answers.append(str(a + b))
    x = np.zeros((n, in_len, len(IN_CHARS)), dtype=np.float32)
    y = np.full((n, out_len), PAD, dtype=np.int32)
    for i, (q, ans) in enumerate(zip(questions, answers)):
        for t, c in enumerate(q.ljust(in_len)[::-1]):  # reversed, as in the tutorial
            x[i, t, IN_INDEX[c]] = 1.0
        tokens = [int(c) + 1 for c in ans] + [EOS]
        y[i, : len(tokens)] = tokens
    return x, y, questions


def decode(tokens: np.ndarray) -> str:
    """Token ids up to the first EOS (or PAD) -> the answer string."""
    out = []
    for t in tokens:
        if t in (EOS, PAD):
            break
        out.append(str(int(t) - 1))
    return "".join(out)


"""
## The model

An LSTM encoder reads the question into one vector, `RepeatVector` feeds it
to every output step, and an LSTM decoder emits one logit vector per step:
`(B, T, K)` logits.
"""


def build_model(in_len: int, out_len: int, units: int) -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((in_len, len(IN_CHARS))),
            keras.layers.LSTM(units),
            keras.layers.RepeatVector(out_len),
            keras.layers.LSTM(units, return_sequences=True),
            keras.layers.Dense(NUM_TOKENS),
        ],
        name="addition_rnn",
    )


"""
## Checking that padding is excluded

For the non-pad positions `v`, the smoothed loss is

`mean_{v} -[(1 - a) log p_y + a * mean_k log p_k]`

(the uniform prior puts `a / K` on every token). We compute it in numpy and
compare; then we scramble the logits at the padded positions and check that
the loss does not move. A loss that counted padding as a class would give a
different number, printed for contrast.
"""


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def check_padding(loss: SmoothedCE, y: np.ndarray, logits: np.ndarray, seed: int) -> float:
    a = loss.label_smoothing
    valid = y != PAD
    logp = log_softmax(logits)
    logp_y = np.take_along_axis(logp, y[..., None].astype(np.int64), axis=-1)[..., 0]
    per_token = -((1 - a) * logp_y + a * logp.mean(axis=-1))
    manual = float(per_token[valid].mean())

    keras_value = float(loss(y, logits))
    scrambled = logits.copy()
    rng = np.random.default_rng(seed)
    scrambled[~valid] = rng.normal(scale=20.0, size=scrambled[~valid].shape)
    scrambled_value = float(loss(y, scrambled))
    naive = float(SmoothedCE(a, from_logits=True)(y, logits))  # PAD counted as a class

    print(f"Padding check on {y.shape[0]} sequences ({valid.mean():.0%} of positions real): "
          f"SmoothedCE={keras_value:.6f}, numpy masked mean={manual:.6f}, "
          f"with scrambled pad logits={scrambled_value:.6f}, counting PAD={naive:.6f}")
    np.testing.assert_allclose(keras_value, manual, rtol=1e-5)
    np.testing.assert_allclose(scrambled_value, keras_value, rtol=1e-6)
    print(f"RESULT padding loss={keras_value:.6f} manual={manual:.6f} "
          f"scrambled={scrambled_value:.6f} naive={naive:.6f}")
    return keras_value


"""
## Token accuracy on the real tokens

Keras' built-in `"accuracy"` metric counts the (easy) padded positions. During
training we pass `sample_weight=(y != PAD)` and list the accuracy in
`weighted_metrics`, which measures the real tokens only, next to the plain
`"accuracy"` for contrast; at the end we also measure the share of answers that are
entirely right.
"""


def token_metrics(y: np.ndarray, logits: np.ndarray) -> dict[str, float]:
    pred = logits.argmax(axis=-1)
    valid = y != PAD
    correct = (pred == y) | ~valid
    return {
        "token_accuracy": float((pred == y)[valid].mean()),
        "sequence_accuracy": float(correct.all(axis=-1).mean()),
    }


def main(args: argparse.Namespace) -> dict[str, float]:
    t0 = time.perf_counter()
    keras.utils.set_random_seed(args.seed)
    x, y, questions = make_dataset(args.n_train + args.n_test, args.digits, args.seed)
    x_train, y_train = x[: args.n_train], y[: args.n_train]
    x_test, y_test, q_test = x[args.n_train :], y[args.n_train :], questions[args.n_train :]
    print(f"{args.n_train} training and {args.n_test} test additions with up to "
          f"{args.digits} digits; targets padded to length {y.shape[1]}.")

    model = build_model(x.shape[1], y.shape[1], args.units)
    loss = SmoothedCE(args.label_smoothing, ignore_class=PAD, from_logits=True)
    model.compile(
        optimizer=keras.optimizers.Adam(args.learning_rate),
        loss=loss,
        metrics=["accuracy"],  # counts PAD positions
        weighted_metrics=["sparse_categorical_accuracy"],  # real tokens: sample_weight below
    )

    # The check holds for any logits: run it before and after training.
    batch = slice(0, min(256, args.n_test))
    check_padding(loss, y_test[batch], model.predict(x_test[batch], verbose=0), args.seed)

    # keras-io's addition_rnn trains in a loop of fit(epochs=1); so do we. One scheduler
    # for the whole loop; a fresh one per call would give the same factors (same clock).
    steps = max(args.epochs - 1, 1)
    scheduler = SmoothingScheduler(schedules.Linear(args.label_smoothing, 0.0, steps))
    seen = []
    for iteration in range(args.epochs):
        hist = model.fit(
            x_train, y_train, sample_weight=(y_train != PAD).astype("float32"),
            batch_size=args.batch_size, epochs=1, callbacks=[scheduler], verbose=0,
            validation_data=(x_test, y_test, (y_test != PAD).astype("float32")),
        )
        h = {k: v[-1] for k, v in hist.history.items()}
        seen.append(h["label_smoothing"])
        print(f"Iteration {iteration + 1}: label_smoothing={h['label_smoothing']:.3f} "
              f"loss={h['loss']:.4f} val_loss (NLL)={h['val_loss']:.4f} "
              f"val accuracy counting PAD={h['val_accuracy']:.4f} "
              f"on real tokens={h['val_sparse_categorical_accuracy']:.4f}")
    want = [scheduler.schedule(i) for i in range(args.epochs)]
    np.testing.assert_allclose(seen, want, atol=1e-12)  # the schedule followed the loop
    print("RESULT schedule " + " ".join(f"fit{i}={v:.4f}" for i, v in enumerate(seen)))
    logits = model.predict(x_test, batch_size=1024, verbose=0)
    check_padding(loss, y_test[batch], logits[batch], args.seed + 1)

    metrics = token_metrics(y_test, logits)
    for i in range(min(5, args.n_test)):
        truth, guess = decode(y_test[i]), decode(logits[i].argmax(-1))
        print(f"  {q_test[i]:>{2 * args.digits + 1}} = {truth:<{args.digits + 1}} "
              f"model: {guess:<{args.digits + 1}} {'ok' if guess == truth else 'x'}")
    print(f"RESULT token_accuracy={metrics['token_accuracy']:.4f} "
          f"sequence_accuracy={metrics['sequence_accuracy']:.4f}")
    print(f"Done in {time.perf_counter() - t0:.0f}s.")
    return metrics


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Addition RNN with padded targets and SmoothedCE.")
    p.add_argument("--digits", type=int, default=3)
    p.add_argument("--n-train", type=int, default=20_000)
    p.add_argument("--n-test", type=int, default=2_000)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--units", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--learning-rate", type=float, default=3e-3)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
