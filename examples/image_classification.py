"""
Title: Label smoothing for an over-confident classifier, with calibration measured
Author: keras-ls contributors
Date created: 2026/11/22
Last modified: 2026/12/07
Description: Train the same Fashion-MNIST MLP with plain Keras cross-entropy and
    with `SmoothedCE(0.05)`; measure how over-confident each is, compare with
    temperature scaling, save, reload and plot both reliability diagrams.
Accelerator: None (CPU: 29 s wall on an AMD EPYC with 2 cores; it prints its own)

## Introduction

A classifier is *calibrated* when its confidence matches how often it is right:
of the images it labels with 90% confidence, about 90% are correct. Networks
trained with cross-entropy until they fit their training set tend to be
*over-confident* (Guo et al., 2017): the loss keeps pushing the correct logit
up long after the training images are classified, and the confidence of the
test predictions rises with it while their accuracy does not.

Label smoothing (Szegedy et al., 2016) trains against
`(1 - a) * one_hot(y) + a / K` instead of the one-hot target, so the loss has
a finite optimum: the model is no longer rewarded for pushing its confidence
to 1. That is what it is for, and the regime where it helps: a model that is
over-confident without it. (A model that is already calibrated gets
*under*-confident with smoothing; see `benchmarks/results/calibration_study.md`.)

This example sets up that regime and measures it:

1. a small MLP trained for 20 epochs on 5,000 Fashion-MNIST images, long enough
   to fit them, twice from the same initial weights and with the same batch
   order: with plain `keras.losses.SparseCategoricalCrossentropy`
   (`--compare-baseline`) and with `keras_ls.SmoothedCE(0.05)`;
2. the expected calibration error (ECE) as a Keras metric during training, CSV
   and TensorBoard logs;
3. on the test set: accuracy, negative log-likelihood (NLL), ECE and the
   confidence gap (mean confidence minus accuracy) of both models, and of the
   Keras model after temperature scaling (Guo et al., 2017), the post-hoc
   alternative; then one sentence, computed from those numbers, on what they
   mean;
4. the smoothed model saved to `.keras`, reloaded and checked;
5. both models' reliability diagrams in one picture.

Run it with:

```
python examples/image_classification.py --compare-baseline
```

Fashion-MNIST is read from disk through `keras_ls.datasets.load_fashion_mnist`
(the Debian package `dataset-fashion-mnist`, or `$KERAS_LS_FASHION_MNIST_DIR`);
pass `--download` to fall back on `keras.datasets` when it is not installed.
"""

import argparse
import contextlib
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

STARTED = time.perf_counter()  # the report below counts the imports too

"""
## Quiet imports

TensorFlow applies `TF_CPP_MIN_LOG_LEVEL` only once it is loaded, and its
native libraries log a few lines to stderr while they load (a oneDNN notice
and, on a machine without a GPU, "Could not find cuda drivers"). When the
level is 3 (errors off too; `scripts/demo.sh` sets it), the example holds
stderr for the duration of the import and drops those lines; if the import
fails, they are written out before the error.
"""


@contextlib.contextmanager
def native_stderr_held() -> Iterator[None]:
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") != "3":
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


with native_stderr_held():
    import keras

    import keras_ls
    from keras_ls import ExpectedCalibrationError, SmoothedCE, SmoothingScheduler
    from keras_ls.calibration import (
        expected_calibration_error,
        fit_temperature,
        nll,
        reliability_diagram,
    )
    from keras_ls.datasets import load_fashion_mnist

NUM_CLASSES = 10
NUM_BINS = 15  # ECE bins, as in Guo et al. (2017) and the calibration study
DATA_SEED = 0  # the image subsets are fixed; --seed changes weights and batch order


"""
## The data

The training images are split in two: the model trains on one part and the
other, *held-out* part is used to watch validation metrics during training
and to fit the temperature of the Keras model afterwards. The test set is
used only for the final numbers, never to choose anything.
"""


def load_data(n_train: int, n_heldout: int, n_test: int | None, download: bool) -> dict:
    (x, y), (x_test, y_test) = load_fashion_mnist(
        n_train=n_train + n_heldout, n_test=n_test, seed=DATA_SEED, download=download
    )
    # A random split: the stratified subset comes in the files' order.
    order = np.random.default_rng(DATA_SEED).permutation(len(y))
    train, heldout = order[:n_train], order[n_train:]
    return {
        "train": (x[train], y[train]),
        "heldout": (x[heldout], y[heldout]),
        "test": (x_test, y_test),
    }


"""
## The model

A small MLP (the one of `benchmarks/calibration_study.py`) that outputs
*logits*: the losses and the ECE metric are told so with `from_logits=True`,
which is numerically safer than a softmax layer followed by a log. With
256 + 128 hidden units it fits 5,000 images within a few epochs, which is
what makes plain cross-entropy over-confident here.
"""


def build_model() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((28, 28)),
            keras.layers.Flatten(),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(NUM_CLASSES),
        ],
        name="fashion_mlp",
    )


"""
## Training

Both models are built right after `keras.utils.set_random_seed(seed)`, so they
start from the same weights and `fit` shuffles the batches in the same order:
the loss is the only difference.

`SmoothedCE` takes integer labels directly (no one-hot needed). The factor is
constant here; it is still given to a `keras_ls.SmoothingScheduler` (a number
is a constant schedule) for two things it does at every epoch: it writes
`label_smoothing` into the logs, and it sets the factor to 0 while `fit`
validates (`validation_value=0.0`), so `val_loss` is the plain NLL of the
held-out images for both models, comparable on one TensorBoard chart.
"""


def progress(every: int, epochs: int) -> keras.callbacks.Callback:
    """A short line every `every` epochs (fit itself runs with verbose=0)."""

    def on_epoch_end(epoch: int, logs: dict) -> None:
        if (epoch + 1) % every == 0 or epoch + 1 == epochs:
            print(
                f"  epoch {epoch + 1:>3}/{epochs}: train accuracy {logs['accuracy']:.1%}, "
                f"held-out accuracy {logs['val_accuracy']:.1%}, NLL {logs['val_loss']:.3f}, "
                f"ECE {logs['val_ece']:.1%}",
                flush=True,
            )

    return keras.callbacks.LambdaCallback(on_epoch_end=on_epoch_end)


def train(
    name: str,
    loss: keras.losses.Loss,
    data: dict,
    args: argparse.Namespace,
    callbacks: list[keras.callbacks.Callback],
) -> tuple[keras.Model, list[np.ndarray]]:
    """Train a fresh model; return it and its initial weights."""
    print(f"Training with {name}, {args.epochs} epochs:", flush=True)
    keras.utils.set_random_seed(args.seed)
    model = build_model()
    initial_weights = model.get_weights()
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=loss,
        metrics=["accuracy", ExpectedCalibrationError(from_logits=True)],
    )
    model.fit(
        *data["train"],
        batch_size=args.batch_size,
        epochs=args.epochs,
        validation_data=data["heldout"],
        callbacks=[*callbacks, progress(max(1, args.epochs // 4), args.epochs)],
        verbose=0,
    )
    return model, initial_weights


"""
## Evaluation

The test-set logits give every number: accuracy, NLL, ECE with 15 equal-width
bins, and the confidence gap, mean top-class probability minus accuracy
(> 0: over-confident). `model.evaluate` streams the ECE metric over the same
images; it bins exactly like the numpy function.

Temperature scaling divides the Keras model's logits by one number `T` fitted
to minimise the NLL of the *held-out training images*; it changes the
confidence of every prediction but none of the predicted classes.
"""


def metrics(y: np.ndarray, logits: np.ndarray) -> dict[str, float]:
    z = logits.astype(np.float64)
    probs = np.exp(z - z.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    accuracy = float(np.mean(probs.argmax(axis=1) == y))
    return {
        "accuracy": accuracy,
        "nll": nll(y, z, from_logits=True),
        "ece": expected_calibration_error(y, z, num_bins=NUM_BINS, from_logits=True),
        "gap": float(np.mean(probs.max(axis=1))) - accuracy,
    }


def evaluate(model: keras.Model, data: dict) -> tuple[dict[str, float], np.ndarray]:
    x_test, y_test = data["test"]
    logits = model.predict(x_test, batch_size=1000, verbose=0)
    m = metrics(y_test, logits)
    streamed = model.evaluate(x_test, y_test, batch_size=1000, verbose=0, return_dict=True)
    m["ece_metric"] = float(streamed["ece"])
    # Same bins, float32 sums in the metric vs float64 here.
    assert abs(m["ece_metric"] - m["ece"]) < 1e-3, (m["ece_metric"], m["ece"])
    return m, logits


def print_table(rows: dict[str, dict[str, float]], n_test: int) -> None:
    print(f"\nTest set ({n_test} images); ECE with {NUM_BINS} bins; gap = mean confidence "
          "- accuracy (> 0: over-confident)")
    print(f"{'model':<40}{'accuracy':>9}{'NLL':>7}{'ECE':>7}{'gap':>8}")
    for name, m in rows.items():
        print(f"{name:<40}{m['accuracy']:>9.2%}{m['nll']:>7.3f}{m['ece']:>7.2%}"
              f"{100 * m['gap']:>+7.2f}%")


def print_results(results: dict[str, dict[str, float]]) -> None:
    """One machine-readable line per model (the test suite parses these)."""
    for tag, m in results.items():
        print(f"RESULT {tag} " + " ".join(f"{k}={v:.4f}" for k, v in m.items()))


"""
## What the numbers say

The sentence is built from the numbers, so it stays true when they change
(another seed, budget or factor). A gap within 2 points of zero counts as
nearly calibrated: on 10,000 test images, runs that differ only in their seed
differ by about a point.
"""

CALIBRATED_POINTS = 2.0


def confidence_words(m: dict[str, float]) -> str:
    """Describe a model's confidence gap (mean confidence - accuracy) and its ECE."""
    points = 100 * m["gap"]
    if points > CALIBRATED_POINTS:
        return f"over-confident by {points:.1f} points (ECE {m['ece']:.2%})"
    if points < -CALIBRATED_POINTS:
        return f"under-confident by {-points:.1f} points (ECE {m['ece']:.2%})"
    return f"nearly calibrated (gap {points:+.1f} points, ECE {m['ece']:.2%})"


def summary_sentence(
    keras_m: dict[str, float],
    smoothed_m: dict[str, float],
    scaled_m: dict[str, float],
    smoothed_name: str,
    temperature: float,
) -> str:
    """One sentence on what the three rows of the table mean."""
    if 100 * keras_m["gap"] <= CALIBRATED_POINTS:
        verdict = ("the plain model is not over-confident, so label smoothing has nothing to "
                   "correct here")
    elif smoothed_m["ece"] < keras_m["ece"]:
        verdict = ("label smoothing helped because the plain model was over-confident, the "
                   "regime it is for")
    else:
        verdict = "label smoothing did not help although the plain model was over-confident"
    accuracy_change = 100 * (smoothed_m["accuracy"] - keras_m["accuracy"])
    return (
        f"What this means: plain Keras cross-entropy is {confidence_words(keras_m)}; "
        f"{smoothed_name} is {confidence_words(smoothed_m)} for an accuracy change of "
        f"{accuracy_change:+.2f} points "
        f"({keras_m['accuracy']:.2%} -> {smoothed_m['accuracy']:.2%}); temperature scaling "
        f"(T = {temperature:.2f}, fitted after training) gets the Keras model to ECE "
        f"{scaled_m['ece']:.2%} at the same accuracy; {verdict}."
    )


"""
## Saving and loading

`SmoothedCE` and `ExpectedCalibrationError` are registered with Keras
serialization, so once `keras_ls` is imported, `keras.saving.load_model`
needs no `custom_objects`. The loss is saved with its factor.
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
## Reliability diagrams

One panel per model, drawn by `keras_ls.calibration.reliability_diagram`: a
bar per confidence bin at the accuracy of the test images in it, the gap to
the bin's mean confidence shaded, and the diagonal where the two are equal.
A red gap *above* a bar means over-confidence, an amber one inside the bar's
top under-confidence. Each bin's number of test images is written above the
frame, and a green line on the right axis gives the share of images per bin.
The panels share one legend, which names every mark that any panel drew.
"""

LEGEND_TEXT = {  # reliability_diagram's labels -> what they mean here
    "Accuracy": "Accuracy of the test images in a confidence bin",
    "Perfect calibration": "Perfect calibration (accuracy = confidence)",
    "Share of samples (right axis)": "Share of the test images per bin (right axis)",
}


def plot_reliability(
    y: np.ndarray, panels: dict[str, np.ndarray], suptitle: str, path: Path
) -> None:
    import matplotlib
    from matplotlib.figure import Figure

    # Sized for a page about 800 px wide (the README, the docs): 11-point text in a
    # 1200 px image stays legible at two thirds of its size.
    with matplotlib.rc_context({"font.size": 11}):
        fig = Figure(figsize=(4.0 * len(panels), 6.2), layout="constrained")
        draw_panels(fig, y, panels, suptitle)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    print(f"Reliability diagrams: {path}")


def draw_panels(fig, y: np.ndarray, panels: dict[str, np.ndarray], suptitle: str) -> None:
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    # One legend for the figure: every mark any panel drew (a gap colour may be drawn
    # in one panel only), each named once.
    legend: dict[str, object] = {}
    for ax, (title, logits) in zip(axes, panels.items()):
        reliability_diagram(y, logits, NUM_BINS, ax=ax, from_logits=True, title=title)
        own = ax.get_legend()
        for handle, text in zip(own.legend_handles, own.get_texts()):
            legend.setdefault(text.get_text(), handle)
        own.remove()
    fig.legend(list(legend.values()), [LEGEND_TEXT.get(t, t) for t in legend],
               loc="outside lower center", ncols=2, fontsize="small", frameon=False,
               title="Numbers above each frame: test images per bin", title_fontsize="small")
    fig.suptitle(suptitle)


def cpu_model() -> str:
    """The CPU's model name (`lscpu`'s "Model name") and its core count."""
    name = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        name = names[0] if names else name
    return f"{name} ({os.cpu_count()} cores)"


"""
## Putting it together
"""


def main(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    data = load_data(args.n_train, args.n_heldout, args.n_test, args.download)
    (x_heldout, y_heldout), (x_test, y_test) = data["heldout"], data["test"]
    print(f"CPU: {cpu_model()}; the numbers vary by a few tenths of a point across CPUs.")
    print(f"Fashion-MNIST: {len(data['train'][1])} training, {len(y_heldout)} held-out "
          f"(from the training set) and {len(y_test)} test images.")

    a = args.label_smoothing
    smoothed_name = f"SmoothedCE({a:g})"
    log_dir = Path(args.log_dir)
    # The scheduler comes first, so the loggers see `label_smoothing` in the logs.
    smoothed, smoothed_init = train(
        f"keras-ls {smoothed_name}", SmoothedCE(a, from_logits=True), data, args,
        [SmoothingScheduler(a), *logging_callbacks(log_dir / "smoothed")],
    )
    smoothed_m, smoothed_logits = evaluate(smoothed, data)
    rows = {f"keras-ls {smoothed_name}": smoothed_m}
    results = {"smoothed": smoothed_m}
    panels = {f"keras-ls {smoothed_name}\n"
              f"accuracy {smoothed_m['accuracy']:.2%}, gap {100 * smoothed_m['gap']:+.1f} pts":
              smoothed_logits}
    save_and_reload(smoothed, Path(args.model_path), x_test[:256])

    if args.compare_baseline:
        baseline, baseline_init = train(
            "Keras SparseCategoricalCrossentropy",
            keras.losses.SparseCategoricalCrossentropy(from_logits=True), data, args,
            logging_callbacks(log_dir / "keras_ce"),
        )
        for w0, w1 in zip(smoothed_init, baseline_init):
            np.testing.assert_array_equal(w0, w1)  # same start: only the loss differs
        keras_m, keras_logits = evaluate(baseline, data)
        temperature = fit_temperature(
            baseline.predict(x_heldout, batch_size=1000, verbose=0), y_heldout
        )
        scaled_m = metrics(y_test, keras_logits / temperature)
        print(f"Temperature scaling: T = {temperature:.3f}, fitted on the {len(y_heldout)} "
              "held-out training images (not the test set).")
        rows = {
            "Keras SparseCategoricalCrossentropy": keras_m,
            **rows,
            f"Keras CE + temperature scaling (T={temperature:.2f})": scaled_m,
        }
        results = {"baseline": keras_m, **results, "temperature_scaled": scaled_m}
        panels = {
            "Keras cross-entropy\n"
            f"accuracy {keras_m['accuracy']:.2%}, gap {100 * keras_m['gap']:+.1f} pts":
            keras_logits,
            **panels,
            f"Keras CE + temperature (T = {temperature:.2f})\n"
            f"accuracy {scaled_m['accuracy']:.2%}, gap {100 * scaled_m['gap']:+.1f} pts":
            keras_logits / temperature,
        }

    print_table(rows, len(y_test))
    if args.compare_baseline:
        print("\n" + summary_sentence(keras_m, smoothed_m, scaled_m, smoothed_name, temperature))
    print()
    print_results(results)
    plot_reliability(
        y_test, panels,
        f"Fashion-MNIST test set ({len(y_test)} images): MLP 256-128 trained {args.epochs} epochs "
        f"on {len(data['train'][1])} images, seed {args.seed}",
        Path(args.plot),
    )
    print(f"Logs: {log_dir} (TensorBoard: tensorboard --logdir {log_dir})")
    # process_time: CPU seconds of this process (all threads), imports included.
    print(f"Done in {time.perf_counter() - STARTED:.0f} s wall, {time.process_time():.0f} s "
          f"CPU time, on {cpu_model()} (keras-ls {keras_ls.__version__}, Keras "
          f"{keras.__version__}, backend {keras.backend.backend()}).")
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Fashion-MNIST MLP: SmoothedCE vs plain Keras cross-entropy (keras-ls)."
    )
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--n-train", type=int, default=5_000, help="training images")
    p.add_argument("--n-heldout", type=int, default=5_000,
                   help="held-out training images (validation logs, temperature fitting)")
    p.add_argument("--n-test", type=int, default=None, help="test images (default: all 10000)")
    p.add_argument("--batch-size", type=int, default=125)
    p.add_argument("--label-smoothing", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0, help="initial weights and batch order")
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
