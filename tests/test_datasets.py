"""Tests of keras_ls.datasets (no network: on-disk files or synthetic ones only)."""

from __future__ import annotations

import gzip
import subprocess
import sys
import types

import numpy as np
import pytest

from keras_ls import datasets as data
from keras_ls.datasets import FASHION_MNIST_CLASSES, load_fashion_mnist, read_idx

ON_DISK = all(
    (data.DEBIAN_DIR / f"{stem}.gz").is_file() for stem in data._FILES.values()
)
needs_real = pytest.mark.skipif(
    not ON_DISK, reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)"
)


def write_idx(path, array, magic=None, compress=True):
    array = np.asarray(array, dtype=np.uint8)
    magic = (0x08 << 8 | array.ndim) if magic is None else magic
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    payload = header + array.tobytes()
    if compress:
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def synthetic_dir(tmp, n_train=30, n_test=20, compress=True):
    """Tiny Fashion-MNIST-shaped files: pixel (i, r, c) = (i + r + c) % 256."""
    suffix = ".gz" if compress else ""
    out = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        i, r, c = np.meshgrid(np.arange(n), np.arange(28), np.arange(28), indexing="ij")
        x = ((i + r + c) % 256).astype(np.uint8)
        y = (np.arange(n) % 10).astype(np.uint8)
        write_idx(tmp / f"{split}-images-idx3-ubyte{suffix}", x, compress=compress)
        write_idx(tmp / f"{split}-labels-idx1-ubyte{suffix}", y, compress=compress)
        out[split] = (x, y)
    return out


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv(data.ENV_VAR, raising=False)


# --------------------------------------------------------------------------
# Real files (installed by the Debian package here)
# --------------------------------------------------------------------------


@needs_real
def test_real_dataset_counts(no_env):
    (x, y), (xt, yt) = load_fashion_mnist(normalize=False)
    assert x.shape == (60000, 28, 28) and xt.shape == (10000, 28, 28)
    assert x.dtype == np.uint8 and y.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(y), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(yt), [1000] * 10)
    # Known first labels of the official files: ankle boot, T-shirt, T-shirt, dress.
    assert y[:4].tolist() == [9, 0, 0, 3] and yt[:4].tolist() == [9, 2, 1, 1]
    assert x.max() == 255 and x.min() == 0


@needs_real
def test_real_subset_normalized_and_stratified(no_env):
    (x, y), (xt, yt) = load_fashion_mnist(n_train=1000, n_test=250, seed=3)
    assert x.dtype == np.float32 and x.shape == (1000, 28, 28)
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.max() > 0.99
    np.testing.assert_array_equal(np.bincount(y), [100] * 10)
    np.testing.assert_array_equal(np.bincount(yt), [25] * 10)
    (x2, y2), _ = load_fashion_mnist(n_train=1000, n_test=250, seed=3)
    np.testing.assert_array_equal(x, x2)
    (x3, _), _ = load_fashion_mnist(n_train=1000, n_test=250, seed=4)
    assert not np.array_equal(x, x3)


def test_classes():
    assert len(FASHION_MNIST_CLASSES) == 10
    assert FASHION_MNIST_CLASSES[0] == "T-shirt/top" and FASHION_MNIST_CLASSES[9] == "Ankle boot"


# --------------------------------------------------------------------------
# Synthetic IDX files through the environment variable
# --------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [True, False])
def test_env_var_synthetic(tmp_path, monkeypatch, compress):
    ref = synthetic_dir(tmp_path, compress=compress)
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path))
    (x, y), (xt, yt) = load_fashion_mnist()
    assert x.shape == (30, 28, 28) and xt.shape == (20, 28, 28)
    np.testing.assert_allclose(x, ref["train"][0].astype(np.float64) / 255.0, rtol=1e-6)
    assert x[1, 2, 3] == np.float32(6 / 255)
    np.testing.assert_array_equal(y, np.arange(30) % 10)
    np.testing.assert_array_equal(yt, np.arange(20) % 10)
    (xr, _), _ = load_fashion_mnist(normalize=False)
    np.testing.assert_array_equal(xr, ref["train"][0])
    xr[0, 0, 0] = 7  # returned arrays are writable copies


def test_subset_is_stratified_sorted_and_from_the_data(tmp_path, monkeypatch):
    ref = synthetic_dir(tmp_path, n_train=53, n_test=20)
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path))
    (x, y), (xt, yt) = load_fashion_mnist(n_train=21, n_test=10, seed=0, normalize=False)
    # 53 samples: classes 0-2 have 6, classes 3-9 have 5; 21 * 6/53 = 2.38, 21 * 5/53 = 1.98.
    counts = np.bincount(y, minlength=10)
    assert counts.sum() == 21 and counts.max() - counts.min() <= 1
    np.testing.assert_array_equal(np.bincount(yt, minlength=10), [1] * 10)
    # Each picked image is the original row i, identifiable by pixel (0, 0) = i.
    idx = x[:, 0, 0].astype(int)
    assert np.all(np.diff(idx) > 0)  # original order kept
    np.testing.assert_array_equal(x, ref["train"][0][idx])
    np.testing.assert_array_equal(y, ref["train"][1][idx])


def test_stratified_subset_quotas():
    y = np.repeat(np.arange(3), [50, 30, 20])
    idx = data.stratified_subset(y, 10, seed=0)
    np.testing.assert_array_equal(np.bincount(y[idx]), [5, 3, 2])
    idx = data.stratified_subset(y, 7, seed=0)  # 3.5, 2.1, 1.4 -> 4, 2, 1
    np.testing.assert_array_equal(np.bincount(y[idx]), [4, 2, 1])
    np.testing.assert_array_equal(idx, data.stratified_subset(y, 7, seed=0))


def test_subset_size_errors(tmp_path, monkeypatch):
    synthetic_dir(tmp_path)
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path))
    with pytest.raises(ValueError, match=r"`n_train` must be in \[1, 30\]; received 31"):
        load_fashion_mnist(n_train=31)
    with pytest.raises(TypeError, match="`n_test`"):
        load_fashion_mnist(n_test=2.5)


def test_env_var_missing_files(tmp_path, monkeypatch):
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"KERAS_LS_FASHION_MNIST_DIR.*lacks.*train"):
        load_fashion_mnist(download=False)


def test_not_found_without_download(tmp_path, monkeypatch, no_env):
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match=r"apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(download=False)


def test_download_fallback_uses_keras(tmp_path, monkeypatch, no_env):
    """Not on disk + download=True -> keras.datasets (faked here: no network in tests)."""
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "absent")
    calls = []
    x = np.full((20, 28, 28), 255, np.uint8)
    y = np.arange(20, dtype=np.uint8) % 10

    def load_data():
        calls.append(1)
        return (x, y), (x[:10], y[:10])

    fake = types.SimpleNamespace(
        datasets=types.SimpleNamespace(fashion_mnist=types.SimpleNamespace(load_data=load_data))
    )
    monkeypatch.setitem(sys.modules, "keras", fake)
    (xa, ya), (xb, yb) = load_fashion_mnist(n_train=10)
    assert calls == [1]
    assert xa.shape == (10, 28, 28) and xa.dtype == np.float32 and np.all(xa == 1.0)
    np.testing.assert_array_equal(np.bincount(ya), [1] * 10)
    assert xb.shape == (10, 28, 28) and yb.dtype == np.int64


# --------------------------------------------------------------------------
# IDX parsing
# --------------------------------------------------------------------------


def test_read_idx_round_trip(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", arr)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz", expected_magic=2051), arr)


def test_read_idx_bad_magic(tmp_path):
    write_idx(tmp_path / "labels.gz", np.zeros(5), magic=2051 - 2)  # 1-D file labelled 0x0801
    with pytest.raises(ValueError, match="bad IDX magic number 2049 \\(expected 2051\\)"):
        read_idx(tmp_path / "labels.gz", expected_magic=2051)
    write_idx(tmp_path / "float.gz", np.zeros(5), magic=0x0D01)  # float32 type byte
    with pytest.raises(ValueError, match="unsigned-byte"):
        read_idx(tmp_path / "float.gz")


def test_read_idx_truncated(tmp_path):
    arr = np.zeros((3, 28, 28), np.uint8)
    write_idx(tmp_path / "x.gz", arr)
    raw = gzip.open(tmp_path / "x.gz").read()
    with gzip.open(tmp_path / "cut.gz", "wb") as f:
        f.write(raw[:-10])
    with pytest.raises(ValueError, match=r"header says shape \(3, 28, 28\)"):
        read_idx(tmp_path / "cut.gz")


def test_swapped_files_detected(tmp_path, monkeypatch):
    synthetic_dir(tmp_path)
    # Put a labels file where the images should be.
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(
        (tmp_path / "train-labels-idx1-ubyte.gz").read_bytes()
    )
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path))
    with pytest.raises(ValueError, match="bad IDX magic"):
        load_fashion_mnist()


def test_import_does_not_load_keras():
    code = "import sys, keras_ls.datasets\nassert 'keras' not in sys.modules\n"
    subprocess.run([sys.executable, "-c", code], check=True)
