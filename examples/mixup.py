"""
Title: MixUp and label smoothing together
Author: keras-ls contributors
Date created: 2026/11/22
Last modified: 2026/11/22
Description: Feed MixUp's soft labels to `SmoothedCE` on Fashion-MNIST and
    check that the target it trains on is exactly the smoothed mixture.
Accelerator: None (CPU, about a minute)

## Introduction

MixUp (Zhang et al., 2018) trains on convex combinations of two examples,
`x = lam * x1 + (1 - lam) * x2`, with the matching *soft* label
`lam * y1 + (1 - lam) * y2`, `lam ~ Beta(alpha, alpha)`. Label smoothing
can be applied on top: `keras_ls.SmoothedCE` accepts one-hot or soft labels
of the same shape as the logits and smooths them with the same formula it
uses everywhere,

`target = (1 - a) * (lam * y1 + (1 - lam) * y2) + a / K`,

which is `keras_ls.smoothing.smooth_labels(mixed, a)`. This example builds
MixUp batches with a `keras.utils.PyDataset` (backend-agnostic), verifies that
composition numerically on a batch, trains a small model, and reports test
accuracy and calibration.

Run it with:

```
python examples/mixup.py
```
"""

import argparse
import math
import time

import keras
import numpy as np

from keras_ls import ExpectedCalibrationError, SmoothedCE
from keras_ls.calibration import expected_calibration_error, nll
from keras_ls.datasets import load_fashion_mnist
from keras_ls.smoothing import smooth_labels

NUM_CLASSES = 10

"""
## MixUp batches

`mixup_batch` is a pure function of the batch, the mixing weights and the
partner permutation, so the check below can rebuild exactly what the model
was given.
"""


def mixup_batch(
    x: np.ndarray, y_onehot: np.ndarray, lam: np.ndarray, perm: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Mix each sample with ``perm``'s partner: weights ``lam`` of shape ``(B,)``."""
    lam_x = lam.reshape((-1,) + (1,) * (x.ndim - 1))
    x_mixed = lam_x * x + (1.0 - lam_x) * x[perm]
    y_mixed = lam[:, None] * y_onehot + (1.0 - lam[:, None]) * y_onehot[perm]
    return x_mixed.astype(np.float32), y_mixed.astype(np.float32)


class MixUpDataset(keras.utils.PyDataset):
    """Shuffled MixUp batches of ``(images, soft labels)``; reshuffled every epoch."""

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, alpha: float,
                 seed: int, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y_onehot = x, np.eye(NUM_CLASSES, dtype=np.float32)[y]
        self.batch_size, self.alpha = batch_size, alpha
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(x))

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def draw(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Mixing weights and partner permutation for a batch of ``n``."""
        return self.rng.beta(self.alpha, self.alpha, size=n), self.rng.permutation(n)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        idx = self.order[i * self.batch_size : (i + 1) * self.batch_size]
        lam, perm = self.draw(len(idx))
        return mixup_batch(self.x[idx], self.y_onehot[idx], lam, perm)

    def on_epoch_end(self) -> None:
        self.order = self.rng.permutation(len(self.x))


"""
## Checking the composed target

Cross-entropy is linear in its target, so if `SmoothedCE` trains on
`t = (1 - a) * mixed + a / K`, its value on any logits `z` must equal the
numpy `mean(-sum_k t_k log softmax(z)_k)`. We check that, and that
`smooth_labels(mixed, a)` is that `t`, and (for good measure) that Keras'
own `CategoricalCrossentropy(label_smoothing=a)` agrees.
"""


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def check_composition(
    model: keras.Model, x: np.ndarray, y: np.ndarray, a: float, alpha: float, seed: int
) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    y1 = np.eye(NUM_CLASSES)[y]
    lam, perm = rng.beta(alpha, alpha, size=len(x)), rng.permutation(len(x))
    x_mixed, y_mixed = mixup_batch(x, y1, lam, perm)

    expected = (1 - a) * (lam[:, None] * y1 + (1 - lam[:, None]) * y1[perm]) + a / NUM_CLASSES
    target_diff = float(np.abs(smooth_labels(y_mixed.astype(np.float64), a) - expected).max())

    logits = model.predict(x_mixed, verbose=0)
    ours = float(SmoothedCE(a, from_logits=True)(y_mixed, logits))
    numpy_ce = float(np.mean(-np.sum(expected * log_softmax(logits), axis=-1)))
    keras_cce = float(keras.losses.CategoricalCrossentropy(
        from_logits=True, label_smoothing=a)(y_mixed, logits))
    print(f"Composition check on {len(x)} MixUp samples: max |smooth_labels - expected| = "
          f"{target_diff:.2e}; SmoothedCE={ours:.6f}, numpy CE={numpy_ce:.6f}, "
          f"Keras CategoricalCrossentropy(label_smoothing={a:g})={keras_cce:.6f}")
    # float32 labels and logits: agreement to float32 rounding.
    assert target_diff < 1e-6, target_diff
    np.testing.assert_allclose(ours, numpy_ce, rtol=1e-5)
    np.testing.assert_allclose(ours, keras_cce, rtol=1e-5)
    print(f"RESULT composition target_diff={target_diff:.3e} loss={ours:.6f} "
          f"numpy={numpy_ce:.6f} keras_cce={keras_cce:.6f}")
    return {"target_diff": target_diff, "loss": ours, "numpy": numpy_ce}


"""
## Model, training and evaluation
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
            keras.layers.Dense(NUM_CLASSES),
        ],
        name="fashion_cnn",
    )


def main(args: argparse.Namespace) -> dict[str, float]:
    t0 = time.perf_counter()
    keras.utils.set_random_seed(args.seed)
    (x_train, y_train), (x_test, y_test) = load_fashion_mnist(
        n_train=args.n_train, n_test=args.n_test, seed=args.seed, download=args.download
    )
    a = args.label_smoothing
    model = build_model()
    # Soft labels in, so the dense path of SmoothedCE is used; the ECE metric
    # takes the argmax of the soft label as the class.
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=SmoothedCE(a, from_logits=True),
        metrics=[ExpectedCalibrationError(from_logits=True)],
    )
    check_composition(model, x_test[:256], y_test[:256], a, args.alpha, args.seed)

    train = MixUpDataset(x_train, y_train, args.batch_size, args.alpha, args.seed)
    model.fit(train, epochs=args.epochs, verbose=2)

    check_composition(model, x_test[:256], y_test[:256], a, args.alpha, args.seed + 1)
    logits = model.predict(x_test, batch_size=1024, verbose=0)
    acc = float(np.mean(logits.argmax(-1) == y_test))
    ece = expected_calibration_error(y_test, logits, num_bins=15, from_logits=True)
    test_nll = nll(y_test, logits, from_logits=True)
    print(f"RESULT accuracy={acc:.4f} nll={test_nll:.4f} ece={ece:.4f}")
    print(f"Done in {time.perf_counter() - t0:.0f}s.")
    return {"accuracy": acc, "nll": test_nll, "ece": ece}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="MixUp + SmoothedCE on Fashion-MNIST.")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--n-train", type=int, default=10_000)
    p.add_argument("--n-test", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--alpha", type=float, default=0.2, help="Beta(alpha, alpha) for lam")
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--download", action="store_true",
                   help="allow keras.datasets to download Fashion-MNIST if not on disk")
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
