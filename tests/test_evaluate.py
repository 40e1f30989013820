"""gleansr.evaluate: the one SR-vs-bicubic loop, checked against a direct computation."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from gleansr.imaging.convert import tensor_to_uint8, uint8_to_tensor
from gleansr.data.datasets import HRFolderDataset
from gleansr.imaging.imresize import imresize
from gleansr.errors import GleanError
from gleansr.evaluate import evaluate, evaluate_dataset, module_sr_fn
from gleansr.metrics import mae, psnr, ssim

SCALE = 4


def nearest_sr(lrs: np.ndarray) -> np.ndarray:
    """A real (if poor) super-resolver: pixel repetition."""
    return lrs.repeat(SCALE, axis=1).repeat(SCALE, axis=2)


@pytest.fixture(scope="module")
def hrs() -> list[np.ndarray]:
    photo = data.astronaut()
    return [np.ascontiguousarray(photo[y:y + 32, x:x + 32]) for y, x in
            ((100, 200), (0, 0), (300, 150), (200, 400), (50, 60))]


def test_figures_match_a_direct_computation_across_batches(hrs):
    seen = []
    report = evaluate(nearest_sr, iter(hrs), scale=SCALE, crop_border=2, batch_size=2,
                      names=[f"im{i}" for i in range(5)], each=seen.append)
    assert report.names == [f"im{i}" for i in range(5)] and [r.index for r in seen] == list(range(5))
    for hr, row, result in zip(hrs, report.scores, seen):
        lr = imresize(hr, scale=1 / SCALE)
        sr, bicubic = nearest_sr(lr[None])[0], imresize(lr, output_shape=(32, 32))
        np.testing.assert_array_equal(result.lr, lr)
        np.testing.assert_array_equal(result.sr, sr)
        np.testing.assert_array_equal(result.bicubic, bicubic)
        for metric in (psnr, ssim, mae):
            assert row[f"sr_{metric.__name__}"] == metric(sr, hr, 2)
            assert row[f"bicubic_{metric.__name__}"] == metric(bicubic, hr, 2)
        assert result.scores == row
    for key in ("sr_psnr", "bicubic_ssim", "sr_mae"):
        assert report.mean[key] == pytest.approx(np.mean([row[key] for row in report.scores]))
    assert report.metrics == ["psnr", "ssim", "mae"] and report.fid == {}
    assert report.rows()[-1] == {"image": "MEAN", **report.mean}


def test_given_lr_images_are_used_and_checked(hrs):
    lrs = [np.zeros((8, 8, 3), np.uint8) for _ in hrs[:2]]
    report = evaluate(nearest_sr, hrs[:2], lr_images=lrs, scale=SCALE)
    assert report.scores[0]["bicubic_psnr"] == psnr(np.zeros((32, 32, 3), np.uint8), hrs[0])
    with pytest.raises(GleanError, match="image 1: LR is 9x8, expected 8x8"):
        evaluate(nearest_sr, hrs[:2], lr_images=[lrs[0], np.zeros((8, 9, 3), np.uint8)], scale=SCALE)
    with pytest.raises(ValueError):  # one LR short
        evaluate(nearest_sr, hrs[:2], lr_images=lrs[:1], scale=SCALE)


def test_identical_images_keep_the_mean_finite(hrs):
    flat = [np.full((32, 32, 3), 90, np.uint8), hrs[0]]
    report = evaluate(nearest_sr, flat, scale=SCALE)  # a flat image is reproduced exactly
    assert math.isinf(report.scores[0]["sr_psnr"]) and math.isfinite(report.scores[1]["sr_psnr"])
    assert report.mean["sr_psnr"] == report.scores[1]["sr_psnr"]


def test_user_errors_are_one_line(hrs):
    with pytest.raises(GleanError, match="not divisible by the scale 4"):
        evaluate(nearest_sr, [hrs[0][:30]], scale=SCALE)
    with pytest.raises(GleanError, match="no HR images"):
        evaluate(nearest_sr, [], scale=SCALE)
    with pytest.raises(ValueError, match="sr_fn returned"):
        evaluate(lambda lrs: lrs, hrs[:1], scale=SCALE)
    with pytest.raises(GleanError, match="FID needs at least 2 images"):
        evaluate(nearest_sr, hrs[:1], scale=SCALE, fid=lambda images: images.reshape(len(images), -1)[:, :4])


def test_lpips_and_fid_callables_are_fed_uint8_batches(hrs):
    def lpips(a, b):
        assert a.dtype == b.dtype == np.uint8 and a.shape == b.shape
        return np.abs(a.astype(float) - b).mean(axis=(1, 2, 3))

    def fid(images):
        assert images.dtype == np.uint8
        return images.reshape(len(images), -1)[:, :3].astype(float)

    report = evaluate(nearest_sr, hrs, scale=SCALE, lpips=lpips, fid=fid, batch_size=3)
    for row in report.scores:
        assert row["sr_lpips"] == pytest.approx(row["sr_mae"] * 255)
    assert report.metrics == ["psnr", "ssim", "mae", "lpips"]
    from gleansr.perceptual_metrics import fid_from_features

    hr_features = np.stack([fid(h[None])[0] for h in hrs])
    srs = [nearest_sr(imresize(h, scale=1 / SCALE)[None])[0] for h in hrs]
    assert report.fid["sr"] == pytest.approx(fid_from_features(np.stack([fid(s[None])[0] for s in srs]), hr_features))


def test_training_validation_matches_the_generator_and_leaves_the_rng(tmp_path, tiny_glean):
    """evaluate_dataset + module_sr_fn: what train/loop.validate computes, without moving torch's RNG
    (every dataset item draws from it)."""
    photo = data.chelsea()
    for i in range(3):
        Image.fromarray(photo[i * 40:i * 40 + 32, 100:132]).save(tmp_path / f"{i}.png")
    dataset = HRFolderDataset(tmp_path, scale=4, flip=False)
    torch.manual_seed(5)
    state = torch.get_rng_state()
    seen = []
    report = evaluate_dataset(module_sr_fn(tiny_glean.train()), dataset, batch_size=2, each=seen.append)
    assert torch.equal(torch.get_rng_state(), state)
    assert tiny_glean.training  # run in eval mode, its mode given back
    tiny_glean.eval()
    assert report.names == ["0", "1", "2"] and [r.name for r in seen] == report.names
    for name, row in zip(report.names, report.scores):
        hr = np.asarray(Image.open(tmp_path / f"{name}.png"))
        lr = imresize(hr, scale=1 / 4)
        with torch.no_grad():
            sr = tensor_to_uint8(tiny_glean(uint8_to_tensor(lr)[None]))[0]
        np.testing.assert_array_equal(seen[int(name)].sr, sr)
        assert row["sr_psnr"] == psnr(sr, hr) and row["sr_ssim"] == pytest.approx(ssim(sr, hr), abs=1e-12)
        assert row["bicubic_psnr"] == psnr(imresize(lr, output_shape=(32, 32)), hr)
