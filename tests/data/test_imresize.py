"""MATLAB-style bicubic imresize against the independent ``bicubic_pytorch`` package, on real photos."""
from __future__ import annotations

import math

import numpy as np
import pytest
import skimage.data
import torch
from bicubic_pytorch import core as reference

from gleansr.imaging.imresize import cubic_resize_matrix, imresize, imresize_torch

PHOTOS = ("astronaut", "chelsea", "coffee")
SCALES = (1 / 8, 1 / 16, 0.37, 1.7)  # GLEAN's x8 and x16, a non-integer shrink, an enlargement


@pytest.fixture(scope="module", params=PHOTOS)
def photo(request) -> np.ndarray:
    """A crop (to keep the reference fast) whose width is not a multiple of 8 or 16."""
    return getattr(skimage.data, request.param)()[:320, :330]


def _reference_uint8(img: np.ndarray, scale: float) -> np.ndarray:
    """bicubic_pytorch's public API on a uint8 image (it works in float32, then rounds)."""
    x = torch.from_numpy(img).permute(2, 0, 1)[None].contiguous()
    return reference.imresize(x, scale=scale)[0].permute(1, 2, 0).numpy()


def _reference_float64(img: np.ndarray, out_hw: tuple[int, int], scales: tuple[float, float]) -> np.ndarray:
    """bicubic_pytorch's per-axis resize run in float64 (its public API always drops to float32)."""
    h, w = img.shape[:2]
    x = torch.from_numpy(img.astype(np.float64)).permute(2, 0, 1).reshape(-1, 1, h, w)
    x = reference.resize_1d(x, -2, size=out_hw[0], scale=scales[0])
    x = reference.resize_1d(x, -1, size=out_hw[1], scale=scales[1])
    return x.reshape(img.shape[2], *out_hw).permute(1, 2, 0).numpy()


@pytest.mark.parametrize("scale", SCALES)
def test_uint8_matches_reference_within_one_level(photo: np.ndarray, scale: float) -> None:
    ours = imresize(photo, scale)
    ref = _reference_uint8(photo, scale)
    assert ours.dtype == np.uint8
    assert ours.shape == ref.shape == (math.ceil(photo.shape[0] * scale), math.ceil(photo.shape[1] * scale), 3)
    diff = np.abs(ours.astype(np.int16) - ref.astype(np.int16))
    assert diff.max() <= 1
    assert (diff > 0).mean() < 1e-3  # only float32 rounding ties in the reference may differ


@pytest.mark.parametrize("scale", SCALES)
def test_float_matches_reference(photo: np.ndarray, scale: float) -> None:
    img = photo / 255.0
    ours = imresize(img, scale)
    assert ours.dtype == np.float64
    expected = _reference_float64(img, ours.shape[:2], (scale, scale))
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-9)


def test_output_shape_with_different_scales_per_axis(photo: np.ndarray) -> None:
    img = photo.astype(np.float32) / 255.0
    ours = imresize(img, output_shape=(100, 300))
    assert ours.shape == (100, 300, 3) and ours.dtype == np.float32
    scales = (100 / img.shape[0], 300 / img.shape[1])
    np.testing.assert_allclose(ours, _reference_float64(img, (100, 300), scales), rtol=0, atol=1e-5)


def test_output_size_rounds_up_like_matlab() -> None:
    img = np.random.default_rng(0).random((10, 13))
    assert imresize(img, 0.25).shape == (3, 4)


def test_grey_image_equals_each_channel_of_colour() -> None:
    img = skimage.data.astronaut()[:96, :80]
    colour = imresize(img, 1 / 8)
    for c in range(3):
        np.testing.assert_array_equal(imresize(img[..., c], 1 / 8), colour[..., c])


def test_constant_image_stays_constant_at_edges() -> None:
    img = np.full((37, 41, 3), 0.3)
    for scale in (1 / 8, 0.37, 1.7):
        np.testing.assert_allclose(imresize(img, scale), 0.3, atol=1e-12)


def test_matrix_rows_sum_to_one_and_are_read_only() -> None:
    matrix = cubic_resize_matrix(64, 8, 1 / 8)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-12)
    assert matrix.shape == (8, 64)
    with pytest.raises(ValueError):
        matrix[0, 0] = 1.0


@pytest.mark.parametrize("scale", (1 / 8, 0.37, 1.7))
def test_torch_matches_numpy(scale: float) -> None:
    batch = np.stack([skimage.data.chelsea()[:150, :170], skimage.data.coffee()[:150, :170]]) / 255.0
    x = torch.from_numpy(batch).permute(0, 3, 1, 2)
    expected = np.stack([imresize(img, scale) for img in batch])
    got64 = imresize_torch(x, scale).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(got64, expected, rtol=0, atol=1e-12)
    got32 = imresize_torch(x.float(), scale).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(got32, expected, rtol=0, atol=1e-5)


def test_torch_size_argument_and_gradient() -> None:
    x = torch.rand(1, 3, 32, 24, dtype=torch.float64, requires_grad=True)
    y = imresize_torch(x, size=(4, 3))
    assert y.shape == (1, 3, 4, 3)
    y.sum().backward()
    # each output's weights sum to 1, so d(sum of outputs)/d(inputs) sums to the number of outputs
    assert x.grad is not None and math.isclose(float(x.grad.sum()), 3 * 4 * 3, rel_tol=1e-9)


def test_bad_arguments_are_rejected() -> None:
    img = np.zeros((8, 8, 3), dtype=np.uint8)
    with pytest.raises(ValueError):
        imresize(img)
    with pytest.raises(ValueError):
        imresize(img, 0.5, output_shape=(4, 4))
    with pytest.raises(ValueError):
        imresize(img, -0.5)
    with pytest.raises(TypeError):
        imresize(img.astype(np.int16), 0.5)
    with pytest.raises(ValueError):
        imresize_torch(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), 0.5)
