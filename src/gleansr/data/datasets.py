"""Training / evaluation datasets: HR folders with LR made on the fly, or paired HR / LR folders.

Items are ``{'lr': 3 x h x w, 'hr': 3 x H x W, 'name': str}``, float32 RGB in [-1, 1] (MMEditing's
``RescaleToZeroOne`` + ``Normalize(0.5, 0.5)``), ``name`` being the path relative to the root,
without extension, with '/' separators. GLEAN works at one fixed size, so sizes are checked and a
wrong one is an :class:`~gleansr.errors.ImageError` naming the file.

Randomness (flip, degradation) comes from a numpy generator seeded per item from torch's global
RNG: it differs between DataLoader workers and epochs (torch reseeds workers each epoch) and is
reproducible under ``torch.manual_seed``.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import GleanError, ImageError
from ..pipeline.images import FORMATS, read_rgb_uint8
from ..imaging.convert import uint8_to_tensor
from .degradations import Degradation
from ..imaging.imresize import imresize

__all__ = ["list_images", "HRFolderDataset", "PairedFolderDataset"]


def list_images(root: str | os.PathLike[str]) -> list[Path]:
    """Image files under ``root`` (recursive, extensions of ``FORMATS``, any case), as sorted relative paths."""
    root = Path(root)
    if not root.is_dir():
        raise GleanError(f"not a folder: {root}")
    found = [
        Path(dirpath, name).relative_to(root)
        for dirpath, _, names in os.walk(root)
        for name in names
        if Path(name).suffix.lower() in FORMATS
    ]
    return sorted(found, key=lambda p: p.as_posix())


def _item_rng() -> np.random.Generator:
    """A generator seeded from torch's global RNG (per worker, per epoch, per item)."""
    return np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))


def _float01_to_tensor(img: np.ndarray) -> torch.Tensor:
    """float ``H x W x 3`` in [0, 1] -> float32 ``3 x H x W`` in [-1, 1] (same arithmetic as uint8 input)."""
    x = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))
    return ((x - 0.5) * 2.0).permute(2, 0, 1).contiguous()


def _as_size(hr_size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if hr_size is None:
        return None
    return (hr_size, hr_size) if isinstance(hr_size, int) else (int(hr_size[0]), int(hr_size[1]))


def _check_hr(path: Path, hr: np.ndarray, scale: int, hr_size: tuple[int, int] | None) -> None:
    """GLEAN is fixed-size: the HR must be the expected size and divisible by the scale."""
    h, w = hr.shape[:2]
    if hr_size is not None and (h, w) != hr_size:
        raise ImageError(f"{path}: image is {h}x{w} (HxW), expected {hr_size[0]}x{hr_size[1]}")
    if h % scale or w % scale:
        raise ImageError(f"{path}: size {h}x{w} is not divisible by the scale {scale}")


def _check_scale(scale: int) -> int:
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    return scale


def _finish(lr: torch.Tensor, hr: torch.Tensor, name: str, flip: bool, rng: np.random.Generator) -> dict:
    """Apply the shared horizontal flip (p = 0.5) after the LR exists, as upstream does."""
    if flip and rng.random() < 0.5:
        lr, hr = lr.flip(-1), hr.flip(-1)
    return {"lr": lr, "hr": hr, "name": name}


class HRFolderDataset(Dataset):
    """HR images from a folder; the LR is made on the fly.

    Without ``degradation`` the LR is MATLAB bicubic ``imresize(hr, 1 / scale)`` rounded to uint8,
    identical to MMEditing's pre-made ``BIx{scale}_down`` PNGs. With a :class:`Degradation` (the
    in128 preset) the LR is its float output; the HR must then be ``params.hr_size`` square and
    ``params.lr_size * scale == params.hr_size``.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        scale: int,
        hr_size: int | tuple[int, int] | None = None,
        flip: bool = True,
        degradation: Degradation | None = None,
    ) -> None:
        self.root = Path(root)
        self.scale = _check_scale(scale)
        self.hr_size = _as_size(hr_size)
        self.flip = flip
        self.degradation = degradation
        if degradation is not None:
            p = degradation.params
            if p.lr_size * scale != p.hr_size:
                raise ValueError(f"degradation makes {p.lr_size}px LR from {p.hr_size}px HR, not x{scale}")
            if self.hr_size not in (None, (p.hr_size, p.hr_size)):
                raise ValueError(f"hr_size {self.hr_size} differs from the degradation's {p.hr_size}")
            self.hr_size = (p.hr_size, p.hr_size)
        self.files = list_images(self.root)
        if not self.files:
            raise GleanError(f"no images found in {self.root}")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        relative = self.files[index]
        path = self.root / relative
        hr = read_rgb_uint8(path)
        _check_hr(path, hr, self.scale, self.hr_size)
        rng = _item_rng()
        if self.degradation is None:
            lr = uint8_to_tensor(imresize(hr, 1.0 / self.scale))
        else:
            lr = _float01_to_tensor(self.degradation(hr, rng))
        return _finish(lr, uint8_to_tensor(hr), relative.with_suffix("").as_posix(), self.flip, rng)


def _index_by_stem(root: Path) -> dict[str, Path]:
    """``{'sub/name': Path('sub/name.ext')}``; two files differing only by extension are an error."""
    index: dict[str, Path] = {}
    for relative in list_images(root):
        key = relative.with_suffix("").as_posix()
        if key in index:
            raise GleanError(f"two images in {root} share the name {key!r}: {index[key]} and {relative}")
        index[key] = relative
    if not index:
        raise GleanError(f"no images found in {root}")
    return index


def _unmatched(keys: set[str], other_root: Path, kind: str) -> GleanError:
    first = sorted(keys)[0]
    return GleanError(f"{len(keys)} {kind} image(s) have no partner in {other_root}, e.g. {first!r}")


class PairedFolderDataset(Dataset):
    """Pre-made pairs: ``hr_root/x/y.png`` goes with ``lr_root/x/y.*`` (matched by path without extension).

    Every image must have its partner; the LR must be exactly HR / ``scale`` in both sides.
    """

    def __init__(
        self,
        hr_root: str | os.PathLike[str],
        lr_root: str | os.PathLike[str],
        scale: int,
        hr_size: int | tuple[int, int] | None = None,
        flip: bool = True,
    ) -> None:
        self.hr_root, self.lr_root = Path(hr_root), Path(lr_root)
        self.scale = _check_scale(scale)
        self.hr_size = _as_size(hr_size)
        self.flip = flip
        hr_index, lr_index = _index_by_stem(self.hr_root), _index_by_stem(self.lr_root)
        if missing := hr_index.keys() - lr_index.keys():
            raise _unmatched(missing, self.lr_root, "HR")
        if missing := lr_index.keys() - hr_index.keys():
            raise _unmatched(missing, self.hr_root, "LR")
        self.names = sorted(hr_index)
        self.pairs = [(hr_index[n], lr_index[n]) for n in self.names]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        hr_rel, lr_rel = self.pairs[index]
        hr_path, lr_path = self.hr_root / hr_rel, self.lr_root / lr_rel
        hr, lr = read_rgb_uint8(hr_path), read_rgb_uint8(lr_path)
        _check_hr(hr_path, hr, self.scale, self.hr_size)
        expected = (hr.shape[0] // self.scale, hr.shape[1] // self.scale)
        if lr.shape[:2] != expected:
            raise ImageError(
                f"{lr_path}: LR is {lr.shape[0]}x{lr.shape[1]}, expected {expected[0]}x{expected[1]} "
                f"(HR {hr_path.name} / {self.scale})"
            )
        return _finish(uint8_to_tensor(lr), uint8_to_tensor(hr), self.names[index], self.flip, _item_rng())
