"""LR images from HR images as GLEAN's data scripts make them (``gleansr make-lr``).

MATLAB-style bicubic by ``1 / scale`` (:func:`gleansr.data.imresize.imresize`), rounded to uint8,
written as PNG. Inputs are files and folders (searched recursively); a folder's images keep their
relative paths under the output folder, a file is written under its own name. An image whose
sides are not multiples of the scale is refused, or centre-cropped to the largest such size when
asked (``crop=True``). Sizes are said as width x height, as every gleansr message does.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import GleanError, ImageError


@dataclass(frozen=True)
class LRJob:
    """One HR image and the LR file it becomes."""

    source: Path
    target: Path


def plan_lr(inputs: Sequence[str | Path], out: str | Path) -> list[LRJob]:
    """One job per HR image under ``inputs`` (files and folders), leaving out anything inside
    ``out``; GleanError for a missing input, no images, or two sources with one target."""
    from ..pipeline.images import FORMATS
    from .datasets import list_images

    out = Path(out)
    out_abs = out.resolve()
    jobs: list[LRJob] = []
    for given in map(Path, inputs):
        if given.is_dir():
            if given.resolve() == out_abs:
                raise GleanError(f"the output folder must differ from the HR folder: {given}")
            jobs += [LRJob(given / rel, out / rel.with_suffix(".png")) for rel in list_images(given)
                     if not (given.resolve() / rel).is_relative_to(out_abs)]
        elif given.is_file():
            if given.suffix.lower() not in FORMATS:
                raise GleanError(f"{given} is not an image file ({', '.join(sorted(FORMATS))})")
            jobs.append(LRJob(given, out / given.with_suffix(".png").name))
        else:
            raise GleanError(f"HR input not found: {given} (give image files or folders)")
    if not jobs:
        raise GleanError(f"no images found in {', '.join(map(str, inputs))}")
    seen: dict[Path, Path] = {}
    for job in jobs:
        if job.target in seen:
            raise GleanError(f"{seen[job.target]} and {job.source} would both be written to {job.target}; rename one")
        seen[job.target] = job.source
    return jobs


def crop_to_multiple(hr: np.ndarray, scale: int) -> np.ndarray:
    """The centre crop of ``hr`` whose width and height are the largest multiples of ``scale``."""
    h, w = hr.shape[:2]
    nh, nw = h - h % scale, w - w % scale
    top, left = (h - nh) // 2, (w - nw) // 2
    return hr[top:top + nh, left:left + nw]


def make_lr_image(hr: np.ndarray, scale: int, crop: bool = False, name: str = "image") -> np.ndarray:
    """``hr`` (uint8 ``H x W x C``) downscaled by ``scale``; ImageError naming the size (WxH) when
    it is not a multiple of the scale and ``crop`` is off."""
    from ..imaging.imresize import imresize

    h, w = hr.shape[:2]
    if h % scale or w % scale:
        if not crop:
            cropped = crop_to_multiple(hr, scale)
            raise ImageError(f"{name} is {w}x{h}, not a multiple of the scale {scale}; pass --crop to centre-crop "
                             f"it to {cropped.shape[1]}x{cropped.shape[0]}")
        hr = crop_to_multiple(hr, scale)
        if hr.size == 0:
            raise ImageError(f"{name} is {w}x{h}, smaller than the scale {scale}")
    return imresize(hr, 1.0 / scale)


def write_lr(job: LRJob, scale: int, crop: bool = False, overwrite: bool = False) -> Path:
    """Read ``job.source``, write its LR image to ``job.target`` (atomically; never over an
    existing file unless ``overwrite``)."""
    from ..pipeline.images import read_rgb_uint8, save_image

    lr = make_lr_image(read_rgb_uint8(job.source), scale, crop, str(job.source))
    try:
        return save_image(job.target, lr, overwrite=overwrite)
    except OSError as exc:
        raise ImageError(f"cannot write {job.target}: {exc}") from exc
