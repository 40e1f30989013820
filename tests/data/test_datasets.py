"""Folder datasets: discovery, on-the-fly LR, pairing, size checks, flips and worker-safe randomness."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from gleansr.imaging.convert import uint8_to_tensor
from gleansr.data.datasets import HRFolderDataset, PairedFolderDataset, list_images
from gleansr.pipeline.images import read_rgb_uint8 as read_rgb
from gleansr.data.degradations import Degradation, DegradationParams
from gleansr.imaging.imresize import imresize
from gleansr.errors import GleanError, ImageError


def _image(seed: int, size: tuple[int, int] = (32, 32)) -> np.ndarray:
    """A smooth random RGB image (so bicubic has real structure to work on)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (size[0] // 8, size[1] // 8, 3)).astype(np.uint8)
    return np.asarray(Image.fromarray(coarse).resize(size[::-1], Image.BILINEAR))


def _save(path: Path, img: np.ndarray) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)
    return img


@pytest.fixture
def hr_folder(tmp_path: Path) -> Path:
    root = tmp_path / "hr"
    _save(root / "b.png", _image(1))
    _save(root / "a.bmp", _image(2))
    _save(root / "sub" / "c.PNG", _image(3))
    (root / "notes.txt").write_text("not an image")
    return root


def test_list_images_is_recursive_sorted_and_filtered(hr_folder: Path) -> None:
    assert [p.as_posix() for p in list_images(hr_folder)] == ["a.bmp", "b.png", "sub/c.PNG"]


def test_bicubic_lr_is_imresize_of_hr(hr_folder: Path) -> None:
    dataset = HRFolderDataset(hr_folder, scale=4, hr_size=32, flip=False)
    assert len(dataset) == 3
    item = dataset[2]
    assert item["name"] == "sub/c"
    hr = read_rgb(hr_folder / "sub" / "c.PNG")
    torch.testing.assert_close(item["hr"], uint8_to_tensor(hr), rtol=0, atol=0)
    torch.testing.assert_close(item["lr"], uint8_to_tensor(imresize(hr, 1 / 4)), rtol=0, atol=0)
    assert item["lr"].shape == (3, 8, 8) and item["lr"].dtype == torch.float32
    assert -1.0 <= float(item["hr"].min()) and float(item["hr"].max()) <= 1.0


def test_flip_is_shared_random_and_reproducible(hr_folder: Path) -> None:
    plain = HRFolderDataset(hr_folder, scale=4, flip=False)[0]
    flipping = HRFolderDataset(hr_folder, scale=4, flip=True)
    torch.manual_seed(0)
    flips = []
    for _ in range(16):
        item = flipping[0]
        flipped = torch.equal(item["hr"], plain["hr"].flip(-1))
        assert torch.equal(item["lr"], plain["lr"].flip(-1) if flipped else plain["lr"])
        assert flipped or torch.equal(item["hr"], plain["hr"])
        flips.append(flipped)
    assert 0 < sum(flips) < 16
    torch.manual_seed(0)
    assert [torch.equal(flipping[0]["hr"], plain["hr"].flip(-1)) for _ in range(16)] == flips


def test_wrong_sizes_name_the_file(tmp_path: Path) -> None:
    _save(tmp_path / "odd.png", _image(4, (36, 30)))
    with pytest.raises(ImageError, match="odd.png.*expected 32x32"):
        HRFolderDataset(tmp_path, scale=4, hr_size=32)[0]
    with pytest.raises(ImageError, match="odd.png.*not divisible by the scale 8"):
        HRFolderDataset(tmp_path, scale=8)[0]


def test_empty_or_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(GleanError, match="no images"):
        HRFolderDataset(tmp_path, scale=4)
    with pytest.raises(GleanError, match="not a folder"):
        HRFolderDataset(tmp_path / "missing", scale=4)
    with pytest.raises(ValueError):
        HRFolderDataset(tmp_path, scale=0)


def test_degradation_path(hr_folder: Path) -> None:
    degradation = Degradation(DegradationParams(hr_size=32, lr_size=8))
    dataset = HRFolderDataset(hr_folder, scale=4, degradation=degradation)
    torch.manual_seed(1)
    item = dataset[1]
    assert item["lr"].shape == (3, 8, 8) and item["hr"].shape == (3, 32, 32)
    assert -1.0 <= float(item["lr"].min()) and float(item["lr"].max()) <= 1.0
    torch.manual_seed(1)
    assert torch.equal(dataset[1]["lr"], item["lr"])
    assert not torch.equal(dataset[1]["lr"], item["lr"])  # the next draw differs
    with pytest.raises(ValueError, match="not x8"):
        HRFolderDataset(hr_folder, scale=8, degradation=degradation)
    with pytest.raises(ValueError, match="hr_size"):
        HRFolderDataset(hr_folder, scale=4, hr_size=64, degradation=degradation)


def test_dataloader_workers_draw_independently(hr_folder: Path) -> None:
    degradation = Degradation(DegradationParams(hr_size=32, lr_size=8))
    dataset = HRFolderDataset(hr_folder, scale=4, degradation=degradation, flip=False)
    dataset.files = [dataset.files[0]] * 4  # the same image four times
    torch.manual_seed(0)
    batch = next(iter(DataLoader(dataset, batch_size=4, num_workers=2)))
    assert batch["lr"].shape == (4, 3, 8, 8)
    lrs = batch["lr"]
    assert all(not torch.equal(lrs[i], lrs[j]) for i in range(4) for j in range(i + 1, 4))


@pytest.fixture
def paired(tmp_path: Path) -> tuple[Path, Path]:
    hr_root, lr_root = tmp_path / "GT", tmp_path / "BIx4"
    for name, seed in (("x/one", 5), ("two", 6)):
        hr = _save(hr_root / f"{name}.png", _image(seed))
        _save(lr_root / f"{name}.bmp", imresize(hr, 1 / 4))
    return hr_root, lr_root


def test_paired_matches_by_path_without_extension(paired) -> None:
    hr_root, lr_root = paired
    dataset = PairedFolderDataset(hr_root, lr_root, scale=4, hr_size=(32, 32), flip=False)
    assert len(dataset) == 2
    item = dataset[1]
    assert item["name"] == "x/one"
    torch.testing.assert_close(item["lr"], uint8_to_tensor(read_rgb(lr_root / "x" / "one.bmp")), rtol=0, atol=0)
    torch.testing.assert_close(item["hr"], uint8_to_tensor(read_rgb(hr_root / "x" / "one.png")), rtol=0, atol=0)


def test_paired_missing_partner(paired) -> None:
    hr_root, lr_root = paired
    (lr_root / "two.bmp").unlink()
    with pytest.raises(GleanError, match="1 HR image.*'two'"):
        PairedFolderDataset(hr_root, lr_root, scale=4)
    _save(lr_root / "two.bmp", _image(6, (8, 8)))
    _save(lr_root / "extra.png", _image(7, (8, 8)))
    with pytest.raises(GleanError, match="1 LR image.*'extra'"):
        PairedFolderDataset(hr_root, lr_root, scale=4)


def test_paired_wrong_lr_size_and_duplicate_names(paired) -> None:
    hr_root, lr_root = paired
    _save(lr_root / "two.bmp", _image(6, (16, 16)))
    dataset = PairedFolderDataset(hr_root, lr_root, scale=4)
    with pytest.raises(ImageError, match="two.bmp: LR is 16x16, expected 8x8"):
        dataset[0]
    _save(hr_root / "two.jpg", _image(6))
    with pytest.raises(GleanError, match="share the name 'two'"):
        PairedFolderDataset(hr_root, lr_root, scale=4)


def test_read_rgb_modes_and_errors(tmp_path: Path) -> None:
    grey = (np.arange(64, dtype=np.uint8) * 4).reshape(8, 8)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    np.testing.assert_array_equal(read_rgb(tmp_path / "grey.png"), np.repeat(grey[..., None], 3, axis=2))
    rgba = np.dstack([_image(8, (8, 8)), np.zeros((8, 8), np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    np.testing.assert_array_equal(read_rgb(tmp_path / "alpha.png"), rgba[..., :3])
    deep = (grey.astype(np.uint16) * 257)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    np.testing.assert_array_equal(read_rgb(tmp_path / "deep.png")[..., 0], grey)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ImageError, match="broken.png"):
        read_rgb(tmp_path / "broken.png")
