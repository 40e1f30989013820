"""PSNR / SSIM / MAE with MMEditing's definitions, stroke F1 / IoU, and the tensor <-> uint8 mappings."""
from __future__ import annotations

import math

import numpy as np
import pytest
import skimage.data
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from gleansr.imaging.convert import tensor_to_uint8, uint8_to_tensor
from gleansr.errors import GleanError
from gleansr.metrics import mae, psnr, ssim, stroke_f1, stroke_iou


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    """A real photo and a noisy, slightly shifted copy of it."""
    clean = skimage.data.chelsea()[:120, :160]
    rng = np.random.default_rng(0)
    noisy = np.clip(np.roll(clean, 1, axis=1) + rng.normal(0, 12, clean.shape), 0, 255).astype(np.uint8)
    return clean, noisy


def test_psnr_matches_skimage_and_formula(pair) -> None:
    a, b = pair
    assert psnr(a, b) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=255), abs=1e-10)
    zeros, ones = np.zeros((8, 8, 3), np.uint8), np.ones((8, 8, 3), np.uint8)
    assert psnr(zeros, ones) == pytest.approx(20 * math.log10(255))  # MSE = 1
    assert psnr(a, a) == math.inf


def test_ssim_matches_skimage_gaussian_setting(pair) -> None:
    a, b = pair
    expected = structural_similarity(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=2
    )
    assert 0.2 < expected < 0.95
    assert ssim(a, b) == pytest.approx(expected, abs=1e-4)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)


def test_ssim_averages_channels() -> None:
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
    b = a.copy()
    b[..., 0] = rng.integers(0, 256, (24, 24), dtype=np.uint8)  # only red differs
    per_channel = [
        structural_similarity(
            a[..., c], b[..., c], gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
        )
        for c in range(3)
    ]
    assert ssim(a, b) == pytest.approx(np.mean(per_channel), abs=1e-4)
    assert per_channel[1] == pytest.approx(1.0)


def test_mae_is_on_the_unit_scale(pair) -> None:
    a, b = pair
    assert mae(np.zeros((4, 4, 3), np.uint8), np.full((4, 4, 3), 255, np.uint8)) == pytest.approx(1.0)
    assert mae(a, b) == pytest.approx(np.abs(a.astype(float) - b.astype(float)).mean() / 255)
    assert mae(a, a) == 0.0


def test_crop_border_ignores_the_edges(pair) -> None:
    a, b = pair
    c = 4
    crop = (slice(c, -c), slice(c, -c))
    assert psnr(a, b, crop_border=c) == pytest.approx(psnr(a[crop], b[crop]))
    assert ssim(a, b, crop_border=c) == pytest.approx(ssim(a[crop], b[crop]))
    assert mae(a, b, crop_border=c) == pytest.approx(mae(a[crop], b[crop]))
    framed = a.copy()
    framed[:c] = 0  # a difference only inside the cropped border
    assert psnr(a, framed, crop_border=c) == math.inf


@pytest.mark.parametrize(
    "first, second",
    [
        (np.zeros((16, 16, 3), np.uint8), np.zeros((16, 17, 3), np.uint8)),  # size mismatch
        (np.zeros((16, 16, 3), np.float32), np.zeros((16, 16, 3), np.float32)),  # not uint8
        (np.zeros((16, 16), np.uint8), np.zeros((16, 16), np.uint8)),  # not H x W x 3
        (np.zeros((16, 16, 4), np.uint8), np.zeros((16, 16, 4), np.uint8)),
    ],
)
def test_invalid_inputs_raise_glean_error(first, second) -> None:
    for metric in (psnr, ssim, mae):
        with pytest.raises(GleanError):
            metric(first, second)


def test_crop_and_size_limits() -> None:
    img = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(GleanError, match="crop_border"):
        psnr(img, img, crop_border=8)
    with pytest.raises(GleanError, match="SSIM"):
        ssim(img, img, crop_border=3)  # 10 x 10 left: smaller than the 11 x 11 window


def test_tensor_to_uint8_maps_clamps_and_rounds() -> None:
    x = torch.tensor([-1.5, -1.0, 0.0, 1.0, 2.0, 1 / 255 - 1]).view(1, 1, 1, 6).expand(1, 3, 1, 6)
    out = tensor_to_uint8(x)
    assert out.shape == (1, 1, 6, 3) and out.dtype == np.uint8
    # 0.0 -> 127.5 rounds half to even -> 128; 1/255 - 1 -> 0.5 -> 0
    np.testing.assert_array_equal(out[0, 0, :, 0], [0, 0, 128, 255, 255, 0])


def test_uint8_round_trip_is_exact() -> None:
    levels = np.arange(256, dtype=np.uint8)
    img = np.stack([levels, levels[::-1], levels], axis=-1).reshape(16, 16, 3)
    x = uint8_to_tensor(img)
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32
    assert float(x.min()) == -1.0 and float(x.max()) == 1.0
    np.testing.assert_array_equal(tensor_to_uint8(x[None])[0], img)
    batch = uint8_to_tensor(np.stack([img, img[::-1]]))
    assert batch.shape == (2, 3, 16, 16)
    torch.testing.assert_close(batch[1], x.flip(1))


def _page(ink: np.ndarray) -> np.ndarray:
    """A boolean ink mask as a uint8 RGB page: black ink on white."""
    return np.repeat(np.where(ink, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def _letter_h(shift: int = 0) -> np.ndarray:
    """A 48 x 48 'H' of 2-pixel strokes, moved ``shift`` pixels right."""
    ink = np.zeros((48, 48), bool)
    ink[8:40, 12:14] = ink[8:40, 32:34] = ink[23:25, 12:34] = True
    return _page(np.roll(ink, shift, axis=1))


def test_stroke_f1_tolerates_one_pixel_and_no_more() -> None:
    h = _letter_h()
    assert stroke_f1(h, h) == 1.0 and stroke_iou(h, h) == 1.0
    assert stroke_f1(_letter_h(1), h) == 1.0  # every outline pixel moved by one: within the tolerance
    assert stroke_f1(_letter_h(1), h, tolerance=0) < 0.6
    assert stroke_iou(_letter_h(1), h) < 0.6  # area overlap has no tolerance
    far = stroke_f1(_letter_h(3), h)
    assert 0.0 < far < 0.5  # only the crossbar's outline still lines up
    assert stroke_f1(h, _letter_h(3)) == pytest.approx(far)  # symmetric


def test_stroke_f1_counts_each_outline_pixel_once() -> None:
    """A 4 x 4 square has 12 outline pixels; one 3-pixel-wide rectangle inside it shares 8 of them."""
    square = np.zeros((10, 10), bool)
    square[3:7, 3:7] = True
    bar = np.zeros((10, 10), bool)
    bar[3:7, 3:6] = True
    # bar outline: its 10 pixels other than (4, 4), (5, 4); all lie on or next to the square's outline
    assert stroke_f1(_page(bar), _page(square)) == 1.0
    assert stroke_f1(_page(bar), _page(square), tolerance=0) == pytest.approx(2 * (8 / 10) * (8 / 12) / (8 / 10 + 8 / 12))
    assert stroke_iou(_page(bar), _page(square)) == pytest.approx(12 / 16)


def test_blur_loses_strokes_psnr_does_not_see_it() -> None:
    """A blurred glyph scores a fair PSNR but a clearly lower stroke F1 than a sharp one-pixel shift."""
    from scipy.ndimage import gaussian_filter

    h = _letter_h()
    blurred = np.clip(np.round(gaussian_filter(h.astype(np.float64), (1.5, 1.5, 0))), 0, 255).astype(np.uint8)
    shifted = _letter_h(1)
    assert psnr(blurred, h) > psnr(shifted, h)
    assert stroke_f1(blurred, h) < 0.5 < stroke_f1(shifted, h)


def test_stroke_metrics_empty_cases() -> None:
    blank, h = _page(np.zeros((48, 48), bool)), _letter_h()
    assert stroke_f1(blank, blank) == 1.0 and stroke_iou(blank, blank) == 1.0
    assert stroke_f1(blank, h) == 0.0 and stroke_f1(h, blank) == 0.0 and stroke_iou(blank, h) == 0.0
    full = _page(np.ones((48, 48), bool))
    assert stroke_iou(full, full) == 1.0
    assert stroke_f1(full, full) == 1.0  # all ink, no outline (the image edge is not one): as blank
    with pytest.raises(GleanError):
        stroke_f1(h, h[:40])
