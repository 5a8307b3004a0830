"""
Title: Label smoothing for image classification, with calibration measured
Author: keras-ls contributors
Date created: 2026/11/22
Last modified: 2026/11/22
Description: Train a small CNN on Fashion-MNIST with `SmoothedCE`, a smoothing
    schedule and a streaming ECE metric; save, reload and check the model.
Accelerator: None (runs on CPU in a few minutes)

## Introduction

Label smoothing (Szegedy et al., 2016) trains against
`(1 - a) * one_hot(y) + a / K` instead of the one-hot target. It usually makes
a classifier less over-confident, which shows up in its *calibration*: how
well the predicted probability of the top class matches how often that class
is right. This example:

1. trains a small CNN on Fashion-MNIST with `keras_ls.SmoothedCE(0.1)`,
2. lowers the smoothing factor during training with `keras_ls.SmoothingScheduler`,
3. tracks the expected calibration error (ECE) as a Keras metric,
4. logs everything (the smoothing factor included) to TensorBoard and CSV,
5. saves the model to `.keras`, loads it back and checks it is the same model,
6. draws a reliability diagram, and
7. with `--compare-baseline`, trains the same network with plain
   `keras.losses.SparseCategoricalCrossentropy` for a side-by-side table.

Run it with:

```
python examples/image_classification.py --compare-baseline
```

Fashion-MNIST is read from disk through `keras_ls.datasets.load_fashion_mnist`
(the Debian package `dataset-fashion-mnist`, or `$KERAS_LS_FASHION_MNIST_DIR`);
pass `--download` to fall back on `keras.datasets` when it is not installed.
"""

import argparse
import os
import time
from pathlib import Path

import keras
import numpy as np

import keras_ls
from keras_ls import ExpectedCalibrationError, SmoothedCE, SmoothingScheduler, schedules
from keras_ls.calibration import expected_calibration_error, nll, reliability_diagram
from keras_ls.datasets import load_fashion_mnist

NUM_CLASSES = 10


"""
## The model

A small convolutional network that outputs *logits*: the losses and the
ECE metric are told so with `from_logits=True`, which is numerically safer
than a softmax layer followed by a log.
"""


def build_model() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((28, 28)),
            keras.layers.Reshape((28, 28, 1)),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(64, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dropout(0.3),
            keras.layers.Dense(NUM_CLASSES),
        ],
        name="fashion_cnn",
    )


"""
## Training with a smoothed loss and a schedule

`SmoothedCE` takes integer labels directly (no one-hot needed). Its factor
lives in a backend variable, so `SmoothingScheduler` can change it between
epochs without recompiling; here it decays linearly from `a` to `a / 2`.
The callback also writes the current factor into the logs, so TensorBoard
plots it next to the loss.
"""


def train(
    loss: keras.losses.Loss,
    data: tuple,
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    callbacks: list[keras.callbacks.Callback],
) -> keras.Model:
    (x_train, y_train), _ = data
    keras.utils.set_random_seed(seed)  # same initial weights for every loss
    model = build_model()
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=loss,
        metrics=["accuracy", ExpectedCalibrationError(from_logits=True)],
    )
    model.fit(
        x_train,
        y_train,
        batch_size=batch_size,
        epochs=epochs,
        validation_split=0.1,
        callbacks=callbacks,
        verbose=2,
    )
    return model


"""
## Evaluation

`model.evaluate` gives the streamed ECE; the numpy functions of
`keras_ls.calibration` compute the same ECE (same binning) plus the NLL
from the test-set logits.
"""


def evaluate(model: keras.Model, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    logits = model.predict(x, batch_size=1024, verbose=0)
    results = model.evaluate(x, y, batch_size=1024, verbose=0, return_dict=True)
    ece = expected_calibration_error(y, logits, num_bins=15, from_logits=True)
    # The streamed metric bins exactly like the numpy function (float32 sums).
    assert abs(results["ece"] - ece) < 1e-3, (results["ece"], ece)
    return {
        "accuracy": float(np.mean(np.argmax(logits, axis=-1) == y)),
        "nll": nll(y, logits, from_logits=True),
        "ece": ece,
        "ece_metric": float(results["ece"]),
    }


def print_table(rows: dict[str, dict[str, float]]) -> None:
    print(f"\n{'model':<38}{'accuracy':>10}{'NLL':>8}{'ECE':>8}")
    for name, m in rows.items():
        print(f"{name:<38}{m['accuracy']:>10.4f}{m['nll']:>8.4f}{m['ece']:>8.4f}")
    # One machine-readable line per model (the test suite parses these).
    for name, m in rows.items():
        tag = "baseline" if "Keras" in name else "smoothed"
        print(f"RESULT {tag} accuracy={m['accuracy']:.4f} nll={m['nll']:.4f} ece={m['ece']:.4f} "
              f"ece_metric={m['ece_metric']:.4f}")


"""
## Saving and loading

`SmoothedCE`, its schedules and `ExpectedCalibrationError` are registered
with Keras serialization, so once `keras_ls` is imported,
`keras.saving.load_model` needs no `custom_objects`. The loss is saved with
its *current* factor: a model saved mid-schedule reloads with that value.
"""


def save_and_reload(model: keras.Model, path: Path, x_check: np.ndarray) -> keras.Model:
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(
        reloaded.predict(x_check, verbose=0), model.predict(x_check, verbose=0),
        rtol=1e-5, atol=1e-5,
    )
    assert isinstance(reloaded.loss, SmoothedCE), type(reloaded.loss)
    assert abs(reloaded.loss.label_smoothing - model.loss.label_smoothing) < 1e-7
    print(f"Saved {path} ({os.path.getsize(path) / 1e6:.2f} MB) and reloaded it: same "
          f"predictions, label_smoothing={reloaded.loss.label_smoothing:.4f}.")
    return reloaded


"""
## Logging

`keras.callbacks.TensorBoard` needs the `tensorboard` package, which
TensorFlow no longer installs by itself (`pip install tensorboard`). The
example always writes a CSV of the epoch logs (the smoothing factor
included) and adds TensorBoard logs when the package is there.
"""


def logging_callbacks(log_dir: Path) -> list[keras.callbacks.Callback]:
    log_dir.mkdir(parents=True, exist_ok=True)
    callbacks: list[keras.callbacks.Callback] = [
        keras.callbacks.CSVLogger(str(log_dir / "history.csv"))
    ]
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        print("`tensorboard` is not installed (pip install tensorboard): CSV logs only, "
              f"in {log_dir / 'history.csv'}.")
    else:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(log_dir)))
    return callbacks


"""
## Putting it together
"""


def main(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    t0 = time.perf_counter()
    data = load_fashion_mnist(
        n_train=args.n_train, n_test=args.n_test, seed=args.seed, download=args.download
    )
    (x_train, _), (x_test, y_test) = data
    print(f"Fashion-MNIST: {len(x_train)} training and {len(x_test)} test images.")

    a = args.label_smoothing
    loss = SmoothedCE(a, from_logits=True)
    scheduler = SmoothingScheduler(
        schedules.Linear(a, a / 2, steps=max(args.epochs - 1, 1)), verbose=1
    )
    # The scheduler comes first, so the loggers see `label_smoothing` in the logs.
    smoothed = train(
        loss, data, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
        callbacks=[scheduler, *logging_callbacks(Path(args.log_dir) / "smoothed")],
    )
    rows = {f"SmoothedCE({a:g}→{a / 2:g}), keras-ls": evaluate(smoothed, x_test, y_test)}

    save_and_reload(smoothed, Path(args.model_path), x_test[:256])

    fig = reliability_diagram(
        y_test, smoothed.predict(x_test, verbose=0), num_bins=15, from_logits=True,
        title=f"Fashion-MNIST CNN, SmoothedCE({a:g})",
    )
    Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.plot, dpi=100)
    print(f"Reliability diagram: {args.plot}")

    if args.compare_baseline:
        baseline = train(
            keras.losses.SparseCategoricalCrossentropy(from_logits=True), data,
            epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
            callbacks=logging_callbacks(Path(args.log_dir) / "keras_ce"),
        )
        rows["SparseCategoricalCrossentropy, Keras"] = evaluate(baseline, x_test, y_test)

    print_table(rows)
    print(f"Logs: {args.log_dir} (TensorBoard: tensorboard --logdir {args.log_dir})")
    print(f"Done in {time.perf_counter() - t0:.0f}s (keras-ls {keras_ls.__version__}, "
          f"Keras {keras.__version__}, backend {keras.backend.backend()}).")
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Fashion-MNIST with SmoothedCE (keras-ls).")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--n-train", type=int, default=10_000, help="training subset size")
    p.add_argument("--n-test", type=int, default=None, help="test subset size (default: all)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model-path", default="saved_models/fashion_mnist_smoothed.keras")
    p.add_argument("--plot", default="saved_models/fashion_mnist_reliability.png")
    p.add_argument("--log-dir", default="runs/image_classification")
    p.add_argument("--compare-baseline", action="store_true",
                   help="also train with plain Keras SparseCategoricalCrossentropy")
    p.add_argument("--download", action="store_true",
                   help="allow keras.datasets to download Fashion-MNIST if not on disk")
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
