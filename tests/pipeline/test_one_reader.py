"""One image reader: training's datasets and `gleansr eval` see the same uint8 pixels for every kind of file."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from gleansr.commands.eval import _read_hr, _read_lr
from gleansr.data.datasets import HRFolderDataset, PairedFolderDataset
from gleansr.imaging.convert import tensor_to_uint8
from gleansr.pipeline.policy import ModelFacts
from gleansr.pipeline.images import center_square, encode_image, read_rgb_uint8, save_image, to_uint8

RNG = np.random.default_rng(12)
SIZE = 8


def _round_16_to_8(values: np.ndarray) -> np.ndarray:
    """round(v * 255 / 65535) in exact integer arithmetic (never a tie: 65535 / 255 = 257 is odd)."""
    return ((values.astype(np.int64) * 255 + 32767) // 65535).astype(np.uint8)


def _samples16(channels: int, size: int) -> np.ndarray:
    values = RNG.integers(0, 65536, (size, size, channels)).astype(np.uint16)
    values[0, 0] = 0x01FF  # 1.99 on the 8-bit scale: 2, not the high byte's 1
    values[0, 1] = 0x0180  # 1.49: 1
    return values


def _write(kind: str, path: Path, size: int = SIZE) -> np.ndarray:
    """Write one kind of image file; return the uint8 RGB every reader must give."""
    if kind.endswith("16"):
        channels = 1 if kind.startswith("gray") else 3
        values = _samples16(channels, size)
        alpha = RNG.random((size, size)) if kind.startswith("rgba") else None
        if channels == 1:
            Image.fromarray(values[..., 0]).save(path)  # Pillow's own 16-bit gray writer
        else:
            save_image(path, values / 65535, alpha, bit_depth=16)
        expected = _round_16_to_8(values)
        return np.repeat(expected, 3, axis=2) if channels == 1 else expected
    pixels = RNG.integers(0, 256, (size, size, 4), dtype=np.uint8)
    if kind == "gray8":
        Image.fromarray(pixels[..., 0], "L").save(path)
        return np.repeat(pixels[..., :1], 3, axis=2)
    if kind == "palette":
        image = Image.fromarray(pixels[..., :3]).quantize(16)
        image.save(path)
        return np.asarray(image.convert("RGB"))
    if kind == "rgba8":
        Image.fromarray(pixels, "RGBA").save(path)
        return pixels[..., :3]  # alpha dropped, colour kept as stored
    Image.fromarray(pixels[..., :3]).save(path)
    return pixels[..., :3]


KINDS = [(kind, suffix) for kind in ("rgb8", "gray8", "rgba8", "palette", "rgb16", "gray16", "rgba16")
         for suffix in (".png", ".tif")]


@pytest.mark.parametrize(("kind", "suffix"), KINDS, ids=[f"{k}{s}" for k, s in KINDS])
def test_dataset_and_eval_read_identical_pixels(tmp_path, kind, suffix):
    hr_dir, lr_dir = tmp_path / "hr", tmp_path / "lr"
    hr_dir.mkdir()
    lr_dir.mkdir()
    expected = _write(kind, hr_dir / f"a{suffix}")
    expected_lr = _write(kind, lr_dir / f"a{suffix}", SIZE // 2)
    training = tensor_to_uint8(HRFolderDataset(hr_dir, scale=2, flip=False)[0]["hr"][None])[0]
    paired = PairedFolderDataset(hr_dir, lr_dir, scale=2, flip=False)[0]
    model = SimpleNamespace(facts=ModelFacts("m", SIZE // 2), in_size=SIZE // 2, out_size=SIZE)  # what eval asks
    evaluation = _read_hr(hr_dir / f"a{suffix}", model)
    np.testing.assert_array_equal(evaluation, expected)
    np.testing.assert_array_equal(training, expected)
    np.testing.assert_array_equal(tensor_to_uint8(paired["hr"][None])[0], expected)
    np.testing.assert_array_equal(_read_lr(hr_dir / f"a{suffix}", lr_dir, model), expected_lr)
    np.testing.assert_array_equal(tensor_to_uint8(paired["lr"][None])[0], expected_lr)
    if kind.endswith("16"):
        assert (evaluation[0, 0] == 2).all() and (training[0, 0] == 2).all()
        assert (evaluation[0, 1] == 1).all()


def test_every_16_bit_level_rounds_to_the_nearest_8_bit_level(tmp_path):
    levels = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    Image.fromarray(levels).save(tmp_path / "all.png")
    rgb = np.stack([levels, levels[::-1], levels.T], axis=2)
    save_image(tmp_path / "all_rgb.png", rgb / 65535, bit_depth=16)
    np.testing.assert_array_equal(read_rgb_uint8(tmp_path / "all.png")[..., 0], _round_16_to_8(levels))
    np.testing.assert_array_equal(read_rgb_uint8(tmp_path / "all_rgb.png"), _round_16_to_8(rgb))


def test_to_uint8_is_the_restorers_rounding():
    values = np.array([0.0, 0.5 / 255, 1.5 / 255, 2.5 / 255, 254.6 / 255, 1.0, 1.2, -0.1, np.nan], np.float32)
    assert to_uint8(values).tolist() == [0, 0, 2, 2, 255, 255, 255, 0, 0]  # half to even, clipped, NaN -> 0


def test_writer_takes_uint8_as_it_is_and_gray_2d(tmp_path):
    pixels = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    save_image(tmp_path / "u8.png", pixels)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "u8.png")), pixels)
    gray = pixels[..., 0]
    data = encode_image(gray, ".png")
    (tmp_path / "g.png").write_bytes(data)
    with Image.open(tmp_path / "g.png") as im:
        assert im.mode == "L"
        np.testing.assert_array_equal(np.asarray(im), gray)
    assert encode_image(pixels, ".png") == (tmp_path / "u8.png").read_bytes()
    with pytest.raises(ValueError, match="uint8 or float"):
        encode_image(pixels.astype(np.uint16), ".png")


def test_center_square_keeps_the_middle():
    wide = np.arange(3 * 8).reshape(3, 8)
    np.testing.assert_array_equal(center_square(wide), wide[:, 2:5])
    tall = np.arange(7 * 4 * 2).reshape(7, 4, 2)
    np.testing.assert_array_equal(center_square(tall), tall[1:5])
    assert center_square(tall).base is not None  # a view, no copy
