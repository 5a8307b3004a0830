import math

import numpy as np
import pytest
import torch
from ls_reference import run_python

from keras_ls.smoothing import mix, smooth_labels, validate_factor, validate_prior


def test_mix_is_the_formula():
    assert mix(1.0, 0.25, 0.2) == pytest.approx(0.8 * 1.0 + 0.2 * 0.25)
    assert mix(0.0, 0.5, 0.0) == 0.0
    assert mix(1.0, 0.5, 1.0) == 0.5


def test_smooth_labels_uniform_matches_reference():
    y = np.eye(4)[[0, 3, 1]]
    out = smooth_labels(y, 0.1)
    np.testing.assert_allclose(out, y * 0.9 + 0.1 / 4)
    np.testing.assert_allclose(out.sum(-1), 1.0)


def test_smooth_labels_prior_and_axis():
    y = np.zeros((2, 3, 5))
    y[0, 1, :] = 1.0  # class axis is 1
    prior = np.array([0.5, 0.3, 0.2])
    out = smooth_labels(y, 0.4, prior=prior, axis=1)
    expected = 0.6 * y + 0.4 * prior[None, :, None]
    np.testing.assert_allclose(out, expected)


def test_smooth_labels_soft_labels_keep_mass():
    y = np.array([[0.3, 0.7, 0.0]])
    np.testing.assert_allclose(smooth_labels(y, 0.3), [[0.31, 0.59, 0.1]])


def test_smooth_labels_on_torch_tensor_keeps_dtype():
    y = torch.eye(3, dtype=torch.float32)[[2]]
    out = smooth_labels(y, 0.3, prior=[0.2, 0.3, 0.5])
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), [[0.06, 0.09, 0.85]], rtol=1e-6)


@pytest.mark.parametrize("bad", [-0.1, 1.5, math.nan, math.inf])
def test_validate_factor_rejects_out_of_range(bad):
    with pytest.raises(ValueError, match="label_smoothing.*\\[0, 1\\]"):
        validate_factor(bad)


@pytest.mark.parametrize("bad", ["0.1", None, True, [0.1]])
def test_validate_factor_rejects_non_numbers(bad):
    with pytest.raises(TypeError, match="label_smoothing"):
        validate_factor(bad)


def test_validate_factor_accepts_0d_arrays():
    assert validate_factor(np.float32(0.25)) == 0.25
    assert validate_factor(np.array(0.5)) == 0.5


@pytest.mark.parametrize(
    "prior, match",
    [
        ([0.5, 0.5, 0.5], "sum to 1"),
        ([1.2, -0.2], "non-negative"),
        ([[0.5, 0.5]], "1-D"),
        ([0.5, 0.5], "one entry per class \\(3\\)"),
        ([math.nan, 1.0], "finite"),
    ],
)
def test_validate_prior_errors(prior, match):
    with pytest.raises(ValueError, match=match):
        validate_prior(prior, num_classes=3 if match.startswith("one") else None)


def test_smooth_labels_rejects_bad_factor_and_scalar():
    with pytest.raises(ValueError, match="label_smoothing"):
        smooth_labels(np.eye(3), 2.0)
    with pytest.raises(ValueError, match="class axis"):
        smooth_labels(np.float64(1.0), 0.1)


def test_formula_modules_do_not_import_tensorflow_or_keras():
    out = run_python(
        "import sys, numpy as np\n"
        "import keras_ls, keras_ls.smoothing as s, keras_ls.schedules as sc\n"
        "s.smooth_labels(np.eye(3), 0.1); sc.from_name('cosine', 0.1, 0.0, 5)(2)\n"
        "print(sorted(m for m in ('tensorflow', 'keras', 'torch', 'jax') if m in sys.modules))"
    )
    assert out.strip() == "[]"
