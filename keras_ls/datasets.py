"""Offline dataset readers for the examples, benchmarks and tests (numpy only).

Fashion-MNIST loader: the one place the project finds the data set (numpy only).

Search order:

1. the directory in the environment variable ``KERAS_LS_FASHION_MNIST_DIR``
   (if set, it must hold the files: a typo must not silently load other data);
2. ``/usr/share/datasets/fashion-mnist`` (Debian/Ubuntu package
   ``dataset-fashion-mnist``);
3. only with ``download=True``: ``keras.datasets.fashion_mnist.load_data()``
   (which reuses ``~/.keras/datasets`` or downloads).

The files are the original IDX files (``train-images-idx3-ubyte.gz`` etc.),
gzip-compressed or not.
"""

from __future__ import annotations

import gzip
import numbers
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DEBIAN_DIR",
    "ENV_VAR",
    "FASHION_MNIST_CLASSES",
    "find_fashion_mnist",
    "load_fashion_mnist",
    "read_idx",
]

ENV_VAR = "KERAS_LS_FASHION_MNIST_DIR"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")

FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
# IDX magic numbers: 0x00000801 = unsigned bytes, 1 dim; 0x00000803 = 3 dims.
_MAGIC_LABELS = 2049
_MAGIC_IMAGES = 2051

_INSTALL_HINT = (
    "Install it with `sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu), "
    f"or set {ENV_VAR} to a directory holding train-images-idx3-ubyte.gz, "
    "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and "
    "t10k-labels-idx1-ubyte.gz, or call load_fashion_mnist(download=True)."
)


def read_idx(path: str | os.PathLike, expected_magic: int | None = None) -> np.ndarray:
    """Read an unsigned-byte IDX file (gzip-compressed if its name ends in ``.gz``).

    Validates the magic number (``0x0000 08 ndim``), the header's dimensions
    against the payload size, and ``expected_magic`` when given.

    Returns:
        A ``uint8`` array of the shape stored in the header.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4:
        raise ValueError(f"{path}: not an IDX file (only {len(raw)} bytes).")
    magic = int.from_bytes(raw[:4], "big")
    if expected_magic is not None and magic != expected_magic:
        raise ValueError(
            f"{path}: bad IDX magic number {magic} (expected {expected_magic}); the file "
            "is corrupt or not the right one."
        )
    if magic >> 8 != 0x08:  # data type byte 0x08 = unsigned byte
        raise ValueError(f"{path}: bad IDX magic number {magic}; expected unsigned-byte data.")
    ndim = magic & 0xFF
    header_end = 4 + 4 * ndim
    if ndim < 1 or len(raw) < header_end:
        raise ValueError(f"{path}: truncated IDX header.")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=header_end)
    if data.size != int(np.prod(shape)):
        raise ValueError(
            f"{path}: header says shape {shape} ({int(np.prod(shape))} values) but the "
            f"file holds {data.size}."
        )
    return data.reshape(shape)


def _file_in(directory: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


def find_fashion_mnist() -> Path | None:
    """The directory the IDX files are read from, or None if not on disk.

    Raises:
        FileNotFoundError: if ``KERAS_LS_FASHION_MNIST_DIR`` is set but does not
            hold the four files.
    """
    env = os.environ.get(ENV_VAR)
    if env:
        directory = Path(env).expanduser()
        missing = [s for s in _FILES.values() if _file_in(directory, s) is None]
        if missing:
            raise FileNotFoundError(
                f"{ENV_VAR}={env!r} but that directory lacks {', '.join(missing)} "
                "(with or without .gz). " + _INSTALL_HINT
            )
        return directory
    if all(_file_in(DEBIAN_DIR, s) is not None for s in _FILES.values()):
        return DEBIAN_DIR
    return None


def _read_dir(directory: Path) -> dict[str, np.ndarray]:
    out = {}
    for key, stem in _FILES.items():
        magic = _MAGIC_IMAGES if key.startswith("x") else _MAGIC_LABELS
        out[key] = read_idx(_file_in(directory, stem), expected_magic=magic)
    for split in ("train", "test"):
        x, y = out[f"x_{split}"], out[f"y_{split}"]
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"{directory}: {x.shape[0]} {split} images but {y.shape[0]} labels.")
        if y.size and y.max() >= len(FASHION_MNIST_CLASSES):
            raise ValueError(f"{directory}: {split} label {y.max()} out of range [0, 10).")
    return out


def _check_n(n: Any, name: str, available: int) -> int | None:
    if n is None:
        return None
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (numbers.Integral, np.integer)):
        raise TypeError(f"`{name}` must be None or a positive integer; received {n!r}.")
    if not 1 <= int(n) <= available:
        raise ValueError(f"`{name}` must be in [1, {available}]; received {n}.")
    return int(n)


def stratified_subset(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted indices of ``n`` samples keeping the class proportions of ``y``.

    Per-class quotas are ``n * share`` rounded by largest remainder (ties to
    the lower class id); members of each class are drawn at random by ``seed``.
    """
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    exact = n * counts / counts.sum()
    quota = np.floor(exact).astype(np.int64)
    order = np.lexsort((classes, -(exact - quota)))  # largest remainder first
    quota[order[: n - int(quota.sum())]] += 1
    picked = [rng.permutation(np.flatnonzero(y == c))[:q] for c, q in zip(classes, quota)]
    return np.sort(np.concatenate(picked))


def load_fashion_mnist(
    n_train: int | None = None,
    n_test: int | None = None,
    seed: int = 0,
    normalize: bool = True,
    *,
    download: bool = True,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Load Fashion-MNIST as numpy arrays, from disk when possible.

    See the module docstring for where it looks. Subsets are stratified
    (class proportions kept, by largest remainder) and drawn with ``seed``:
    the same arguments always give the same samples, in their original order.

    Args:
        n_train: Number of training samples (None: all 60000).
        n_test: Number of test samples (None: all 10000).
        seed: Seed of the subset draws.
        normalize: If True, images are float32 in [0, 1]; otherwise the raw
            uint8 values in [0, 255].
        download: Whether to fall back on ``keras.datasets.fashion_mnist``
            (which may download) when the files are not on disk.

    Returns:
        ``((x_train, y_train), (x_test, y_test))``: images ``(N, 28, 28)`` and
        int64 labels ``(N,)`` in [0, 10) (names in ``FASHION_MNIST_CLASSES``).

    Raises:
        FileNotFoundError: if the data is not on disk and ``download=False``.

    Example:

    >>> (x, y), (xt, yt) = load_fashion_mnist(n_train=1000, n_test=500)  # doctest: +SKIP
    >>> x.shape, x.dtype, FASHION_MNIST_CLASSES[y[0]]                    # doctest: +SKIP
    ((1000, 28, 28), dtype('float32'), 'Ankle boot')
    """
    directory = find_fashion_mnist()
    if directory is not None:
        arrays = _read_dir(directory)
        (x_train, y_train), (x_test, y_test) = (
            (arrays["x_train"], arrays["y_train"]),
            (arrays["x_test"], arrays["y_test"]),
        )
    elif download:
        import keras  # only here: the on-disk paths never load Keras/TensorFlow

        (x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
    else:
        raise FileNotFoundError(
            f"Fashion-MNIST not found ({ENV_VAR} unset, nothing in {DEBIAN_DIR}) and "
            "download=False. " + _INSTALL_HINT
        )

    n_train = _check_n(n_train, "n_train", len(y_train))
    n_test = _check_n(n_test, "n_test", len(y_test))
    if n_train is not None:
        idx = stratified_subset(y_train, n_train, seed)
        x_train, y_train = x_train[idx], y_train[idx]
    if n_test is not None:
        # A different stream than the train draw, still fixed by `seed`.
        idx = stratified_subset(y_test, n_test, seed + 1)
        x_test, y_test = x_test[idx], y_test[idx]

    def images(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if normalize:
            return x.astype(np.float32) / np.float32(255.0)
        return np.array(x, dtype=np.uint8)  # a writable copy, not the file buffer

    return (
        (images(x_train), np.asarray(y_train, dtype=np.int64)),
        (images(x_test), np.asarray(y_test, dtype=np.int64)),
    )
