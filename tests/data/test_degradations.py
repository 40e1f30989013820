"""The in128 degradation pipeline: each stage against an independent definition, and the whole."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import skimage.data
import torch
import torch.nn.functional as F
from scipy import ndimage

from gleansr.data.degradations import (
    Degradation,
    DegradationParams,
    add_gaussian_noise,
    blur,
    gaussian_blur_kernel,
    jpeg_compress,
    quantize,
    random_blur_kernel,
    resize,
)

SMALL = DegradationParams(hr_size=64, lr_size=8)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return skimage.data.astronaut()[100:164, 180:244]  # 64 x 64 uint8, a face


def test_defaults_are_the_in128_config() -> None:
    p = DegradationParams()
    assert (p.hr_size, p.lr_size, p.blur_kernel_size) == (1024, 128, 41)
    assert p.blur_kernel_types == ("iso", "aniso") and p.blur_kernel_probs == (0.5, 0.5)
    assert p.blur_sigma_range == (0.2, 10.0) and p.blur_angle_range == (-3.1416, 3.1416)
    assert p.downscale_range == (0.03125, 1.0)
    assert p.resize_modes == ("bilinear", "area", "bicubic")
    assert p.noise_sigma_range == (0.0, 50.0) and p.jpeg_quality_range == (5.0, 50.0)
    with pytest.raises(ValueError):
        dataclasses.replace(p, blur_kernel_size=40)


def test_pipeline_is_deterministic_and_well_formed(photo) -> None:
    degrade = Degradation(SMALL)
    first = degrade(photo, np.random.default_rng(7))
    again = degrade(photo, np.random.default_rng(7))
    other = degrade(photo, np.random.default_rng(8))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert first.shape == (8, 8, 3) and first.dtype == np.float32
    assert first.min() >= 0.0 and first.max() <= 1.0
    # quantised to 1/255 steps at 64 px, then 8 x 8 area averages: multiples of 1 / (255 * 64)
    steps = first.astype(np.float64) * 255 * 64
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-3)
    float_input = degrade(photo.astype(np.float32) / 255, np.random.default_rng(7))
    np.testing.assert_allclose(float_input, first, atol=1e-6)


def test_lr_still_resembles_the_image(photo) -> None:
    lr = Degradation(SMALL)(photo, np.random.default_rng(3))
    area = photo.astype(np.float64).reshape(8, 8, 8, 8, 3).mean(axis=(1, 3)) / 255
    assert np.corrcoef(lr.ravel(), area.ravel())[0, 1] > 0.5


def test_gaussian_kernel_moments_follow_sigmas_and_rotation() -> None:
    kernel = gaussian_blur_kernel(41, 3.0, 1.5, 0.0)
    assert kernel.shape == (41, 41) and kernel.sum() == pytest.approx(1.0)
    offsets = np.arange(41) - 20
    var_x = (kernel.sum(axis=0) * offsets**2).sum()  # columns are x
    var_y = (kernel.sum(axis=1) * offsets**2).sum()
    assert var_x == pytest.approx(9.0, rel=1e-3) and var_y == pytest.approx(2.25, rel=1e-3)
    np.testing.assert_allclose(gaussian_blur_kernel(41, 3.0, 1.5, np.pi / 2), kernel.T, atol=1e-12)
    iso = gaussian_blur_kernel(41, 2.0, 2.0, 0.7)
    np.testing.assert_allclose(iso, iso.T, atol=1e-12)
    np.testing.assert_allclose(iso, iso[::-1], atol=1e-12)


def test_random_kernel_draws_both_types() -> None:
    rng = np.random.default_rng(0)
    kernels = [random_blur_kernel(rng, DegradationParams()) for _ in range(40)]
    isotropic = [np.allclose(k, k.T, atol=1e-9) and np.allclose(k, k[::-1], atol=1e-9) for k in kernels]
    assert 5 < sum(isotropic) < 35  # about half are 'iso'
    assert all(k.shape == (41, 41) and k.sum() == pytest.approx(1.0) for k in kernels)


def test_blur_is_opencv_filter2d(photo) -> None:
    img = photo.astype(np.float32) / 255
    kernel = gaussian_blur_kernel(41, 4.0, 1.0, 0.5)
    kernel[0, 3] += 0.01  # asymmetric: tells correlation from convolution
    ours = blur(img, kernel)
    # scipy's 'mirror' is OpenCV's BORDER_REFLECT_101; correlate = filter2D
    expected = np.stack([ndimage.correlate(img[..., c].astype(np.float64), kernel, mode="mirror") for c in range(3)], -1)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, expected, atol=1e-5)


def test_blur_removes_high_frequencies() -> None:
    checker = (np.indices((64, 64)).sum(axis=0) % 2).astype(np.float32)[..., None].repeat(3, axis=2)
    blurred = blur(checker, gaussian_blur_kernel(41, 2.0, 2.0, 0.0))
    assert checker.std() == pytest.approx(0.5)
    assert blurred.std() < 1e-3
    assert blurred.mean() == pytest.approx(0.5, abs=1e-3)
    flat = np.full((20, 30, 3), 0.25, np.float32)
    np.testing.assert_allclose(blur(flat, gaussian_blur_kernel(41, 8.0, 3.0, 1.0)), 0.25, atol=1e-6)


@pytest.mark.parametrize("size", [(20, 30), (50, 101), (37, 53)])
@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
def test_resize_matches_torch_interpolate(size, mode) -> None:
    # torch's half-pixel bilinear / bicubic (a = -0.75, edges clamped) is OpenCV's definition
    img = np.random.default_rng(1).random((37, 53, 3)).astype(np.float32)
    expected = F.interpolate(torch.from_numpy(img).permute(2, 0, 1)[None].double(), size=size, mode=mode)
    np.testing.assert_allclose(resize(img, size, mode), expected[0].permute(1, 2, 0).numpy(), atol=1e-6)


def test_area_resize() -> None:
    img = np.random.default_rng(2).random((36, 52, 3)).astype(np.float32)
    pooled = F.adaptive_avg_pool2d(torch.from_numpy(img).permute(2, 0, 1)[None].double(), (12, 13))
    np.testing.assert_allclose(resize(img, (12, 13), "area"), pooled[0].permute(1, 2, 0).numpy(), atol=1e-6)
    row = np.array([3.0, 6.0, 9.0], np.float32).reshape(1, 3, 1).repeat(3, axis=2)
    # 3 -> 2: each output covers 1.5 input cells
    np.testing.assert_allclose(resize(row, (1, 2), "area")[0, :, 0], [(3 + 3) / 1.5, (3 + 9) / 1.5], atol=1e-6)
    # enlarging by an integer factor replicates pixels
    np.testing.assert_array_equal(resize(img, (72, 104), "area"), img.repeat(2, axis=0).repeat(2, axis=1))


def test_noise_has_the_requested_sigma() -> None:
    zeros = np.zeros((200, 200, 3), np.float32)
    noisy = add_gaussian_noise(zeros, 25.0, np.random.default_rng(0))
    assert noisy.dtype == np.float32
    assert noisy.std() * 255 == pytest.approx(25.0, rel=0.02)
    assert abs(noisy.mean()) * 255 < 0.5
    assert noisy.min() < 0  # not clipped, as upstream
    np.testing.assert_array_equal(add_gaussian_noise(zeros, 0.0, np.random.default_rng(0)), zeros)


def test_jpeg_changes_the_image_more_at_low_quality(photo) -> None:
    img = photo.astype(np.float32) / 255
    high, low = jpeg_compress(img, 50), jpeg_compress(img, 5)
    assert high.dtype == np.float32 and high.shape == img.shape
    np.testing.assert_allclose(high * 255, np.round(high * 255), atol=1e-4)
    error_high, error_low = np.abs(high - img).mean(), np.abs(low - img).mean()
    assert 0 < error_high < error_low
    assert error_high < 0.05
    np.testing.assert_array_equal(jpeg_compress(img + 5.0, 50), np.ones_like(img))  # saturates first


def test_jpeg_treats_rgb_as_bgr_like_opencv() -> None:
    # Fine detail in the channel the encoder takes for blue (luma weight 0.114) mostly lands in
    # subsampled chroma and is lost; in the one it takes for red (0.299) more survives.
    # OpenCV takes our red channel for blue.
    detail = (np.indices((32, 32)).sum(axis=0) % 2).astype(np.float32)
    in_red, in_blue = np.full((32, 32, 3), 0.5, np.float32), np.full((32, 32, 3), 0.5, np.float32)
    in_red[..., 0] = detail
    in_blue[..., 2] = detail
    red_error = np.abs(jpeg_compress(in_red, 50)[..., 0] - detail).mean()
    blue_error = np.abs(jpeg_compress(in_blue, 50)[..., 2] - detail).mean()
    assert red_error > 1.25 * blue_error


def test_quantize_snaps_and_clips() -> None:
    values = np.array([-0.2, 0.0, 0.31, 0.50196, 1.0, 1.7], np.float32)
    out = quantize(values)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0.0, 0.0, 79 / 255, 128 / 255, 1.0, 1.0], atol=1e-7)
