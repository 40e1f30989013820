"""Super-resolution evaluation as MMEditing reports it, once, for every caller.

``gleansr eval``, ``gleansr demo``, training validation and ``scripts/eval_ablation.py`` all run
:func:`evaluate`: LR made from each HR with MATLAB-style bicubic (rounded to uint8, as the
``BIx*_down`` files) unless given, SR from the caller's ``sr_fn`` on batches of uint8 LR, and a
bicubic upscaling of the same LR as the baseline. PSNR / SSIM / MAE are taken on RGB uint8 with
``crop_border`` (:mod:`gleansr.metrics`); LPIPS and FID come from optional callables
(:class:`gleansr.perceptual_metrics.LPIPSMetric`, :class:`~gleansr.perceptual_metrics.FIDFeatures`).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from .imaging.imresize import imresize
from .errors import GleanError
from .metrics import mae, psnr, ssim

__all__ = ["EvalReport", "ImageResult", "evaluate", "evaluate_dataset", "module_sr_fn"]

# uint8 LR (N, h, w, 3) -> uint8 SR (N, H, W, 3)
SRFn = Callable[[np.ndarray], np.ndarray]
METHODS = ("sr", "bicubic")
_PIXEL_METRICS = {"psnr": psnr, "ssim": ssim, "mae": mae}


@dataclass(frozen=True)
class ImageResult:
    """One evaluated image, handed to ``evaluate``'s ``each`` callback (uint8 (H, W, 3) pixels)."""

    index: int
    name: str
    lr: np.ndarray
    hr: np.ndarray
    sr: np.ndarray
    bicubic: np.ndarray
    scores: dict[str, float]  # "sr_psnr", "bicubic_psnr", ... per metric and method


@dataclass(frozen=True)
class EvalReport:
    """Per-image and mean figures; keys are ``<method>_<metric>``, method ``sr`` or ``bicubic``.

    ``mean`` averages the finite values only (an SR identical to its HR has PSNR ``inf``; it is
    reported per image, and the mean is ``inf`` only when every image is). ``fid`` holds the FID
    of each method's outputs against the HR images (empty without ``fid``).
    """

    scale: int
    crop_border: int
    names: list[str]
    scores: list[dict[str, float]]
    mean: dict[str, float]
    fid: dict[str, float] = field(default_factory=dict)

    @property
    def metrics(self) -> list[str]:
        """The per-image metrics present, in reporting order (psnr, ssim, mae[, lpips])."""
        return [m for m in (*_PIXEL_METRICS, "lpips") if f"sr_{m}" in self.mean]

    def rows(self) -> list[dict[str, Any]]:
        """One dict per image (``image`` = its name) then the ``MEAN`` row: a CSV's rows."""
        return [{"image": n, **s} for n, s in zip(self.names, self.scores)] + [{"image": "MEAN", **self.mean}]


def _lr_for(hr: np.ndarray, lr: np.ndarray | None, scale: int, name: str) -> np.ndarray:
    """The given LR checked against its HR, or the reference bicubic downscale of the HR."""
    h, w = hr.shape[:2]
    if lr is None:
        if h % scale or w % scale:
            raise GleanError(f"{name}: size {w}x{h} is not divisible by the scale {scale}")
        return imresize(hr, scale=1 / scale)
    if lr.shape[0] * scale != h or lr.shape[1] * scale != w:
        raise GleanError(f"{name}: LR is {lr.shape[1]}x{lr.shape[0]}, expected {w // scale}x{h // scale} (HR / {scale})")
    return lr


def _triples(hr_images: Iterable[np.ndarray], lr_images: Iterable[np.ndarray] | None,
             names: Iterable[str] | None, scale: int) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(name, hr, lr) per image, read lazily; lengths must agree (a ValueError otherwise)."""
    lrs: Iterable[np.ndarray | None] = itertools.repeat(None) if lr_images is None else lr_images
    pairs = zip(hr_images, lrs, strict=lr_images is not None)
    if names is None:
        named = ((f"image {i}", hr, lr) for i, (hr, lr) in enumerate(pairs))
    else:
        named = ((name, hr, lr) for (hr, lr), name in zip(pairs, names, strict=True))
    for name, hr, lr in named:
        for what, img in (("HR", hr), ("LR", lr)):
            if img is not None and (img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3):
                raise ValueError(f"{name}: {what} must be uint8 (H, W, 3), got {img.dtype} {img.shape}")
        yield name, hr, _lr_for(hr, lr, scale, name)


def _super_resolve(sr_fn: SRFn, lrs: list[np.ndarray], hrs: list[np.ndarray], names: list[str]) -> np.ndarray:
    if len({lr.shape for lr in lrs}) > 1:
        raise GleanError(f"LR images differ in size within a batch ({names[0]}: {lrs[0].shape[:2]}, ...); "
                         "the model takes one size")
    srs = np.asarray(sr_fn(np.stack(lrs)))
    expected = (len(hrs), *hrs[0].shape)
    if srs.dtype != np.uint8 or srs.shape != expected:
        raise ValueError(f"sr_fn returned {srs.dtype} {srs.shape}, expected uint8 {expected}")
    return srs


def _score_batch(batch: list[tuple[str, np.ndarray, np.ndarray]], start: int, sr_fn: SRFn, crop_border: int,
                 lpips: Callable | None, features: dict[str, list] | None, fid: Callable | None) -> list[ImageResult]:
    """Super-resolve one batch and score it; images are numbered from ``start``."""
    names, hrs, lrs = (list(column) for column in zip(*batch))
    outputs = {"sr": _super_resolve(sr_fn, lrs, hrs, names),
               "bicubic": np.stack([imresize(lr, output_shape=hr.shape[:2]) for lr, hr in zip(lrs, hrs)])}
    hr_stack = np.stack(hrs)
    scores: list[dict[str, float]] = [{} for _ in batch]
    for method in METHODS:
        for metric, fn in _PIXEL_METRICS.items():
            for row, out, hr in zip(scores, outputs[method], hrs):
                row[f"{method}_{metric}"] = fn(out, hr, crop_border)
        if lpips is not None:
            for row, value in zip(scores, np.asarray(lpips(outputs[method], hr_stack), dtype=np.float64)):
                row[f"{method}_lpips"] = float(value)
    if features is not None and fid is not None:
        for tag, images in (("hr", hr_stack), *outputs.items()):
            features[tag].append(np.asarray(fid(images), dtype=np.float64))
    return [ImageResult(start + i, *fields)
            for i, fields in enumerate(zip(names, lrs, hrs, outputs["sr"], outputs["bicubic"], scores))]


def _finite_mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.inf


def evaluate(sr_fn: SRFn, hr_images: Iterable[np.ndarray], *, lr_images: Iterable[np.ndarray] | None = None,
             scale: int, crop_border: int = 0, lpips: Callable | None = None, fid: Callable | None = None,
             names: Iterable[str] | None = None, batch_size: int = 8,
             each: Callable[[ImageResult], None] | None = None) -> EvalReport:
    """SR against bicubic on uint8 RGB HR images (any iterable, read lazily, ``batch_size`` at a time).

    Args:
        sr_fn: uint8 LR (N, h, w, 3) -> uint8 SR (N, h*scale, w*scale, 3), e.g. ``Upscaler.sr_uint8``.
        lr_images: the LR of each HR (pre-made files); None: MATLAB bicubic of the HR by 1/``scale``.
        lpips: (a, b) uint8 (N, H, W, 3) -> (N,) distances; adds ``*_lpips`` per image.
        fid: uint8 (N, H, W, 3) -> (N, D) features; fills ``EvalReport.fid`` (needs 2+ images).
        names: one per image (default "image <i>"); each: called with every :class:`ImageResult`.
    """
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    if batch_size < 1:
        raise GleanError(f"batch size must be at least 1, got {batch_size}")
    triples = _triples(hr_images, lr_images, names, scale)
    features: dict[str, list] | None = {"hr": [], "sr": [], "bicubic": []} if fid is not None else None
    results_names, scores = [], []
    while batch := list(itertools.islice(triples, batch_size)):
        for result in _score_batch(batch, len(scores), sr_fn, crop_border, lpips, features, fid):
            results_names.append(result.name)
            scores.append(result.scores)
            if each is not None:
                each(result)
    if not scores:
        raise GleanError("nothing to evaluate: no HR images")
    mean = {key: _finite_mean([row[key] for row in scores]) for key in scores[0]}
    return EvalReport(scale, crop_border, results_names, scores, mean, _fid(features) if features else {})


def _fid(features: dict[str, list]) -> dict[str, float]:
    from .perceptual_metrics import fid_from_features

    hr = np.concatenate(features["hr"])
    if len(hr) < 2:
        raise GleanError(f"FID needs at least 2 images, got {len(hr)}")
    return {method: fid_from_features(np.concatenate(features[method]), hr) for method in METHODS}


# -- sr_fn adapters -------------------------------------------------------------------------
def module_sr_fn(module: Any, device: Any = "cpu", autocast: Callable[[], Any] | None = None) -> SRFn:
    """A torch module mapping (N, 3, h, w) in [-1, 1] to raw GLEAN output as an ``sr_fn`` (training
    validation's generator): run in eval mode (its mode restored after), without gradients,
    inside ``autocast()`` when given."""
    import contextlib

    import torch

    from .imaging.convert import tensor_to_uint8, uint8_to_tensor

    def sr_fn(lrs: np.ndarray) -> np.ndarray:
        was_training = module.training
        module.eval()
        try:
            with torch.no_grad(), (autocast() if autocast is not None else contextlib.nullcontext()):
                return tensor_to_uint8(module(uint8_to_tensor(lrs).to(device)).float())
        finally:
            module.train(was_training)

    return sr_fn


def evaluate_dataset(sr_fn: SRFn, dataset: Any, *, crop_border: int = 0, batch_size: int = 8,
                     each: Callable[[ImageResult], None] | None = None) -> EvalReport:
    """:func:`evaluate` over a training dataset (items ``{'lr', 'hr', 'name'}``, tensors in [-1, 1],
    see :mod:`gleansr.data.datasets`) with its own LR: training validation.

    Items go back to uint8 exactly (``tensor_to_uint8`` inverts ``uint8_to_tensor``). Loading
    draws from torch's CPU RNG (flip, degradations); the caller's RNG state is left as it was.
    """
    import torch

    from .imaging.convert import tensor_to_uint8

    def items() -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        for index in range(len(dataset)):
            item = dataset[index]
            hr, lr = (np.ascontiguousarray(tensor_to_uint8(item[key][None])[0]) for key in ("hr", "lr"))
            yield item["name"], hr, lr

    with torch.random.fork_rng(devices=[]):
        names, hrs, lrs = itertools.tee(items(), 3)
        return evaluate(sr_fn, (hr for _, hr, _ in hrs), lr_images=(lr for _, _, lr in lrs),
                        names=(name for name, _, _ in names), scale=int(dataset.scale), crop_border=crop_border,
                        batch_size=batch_size, each=each)
