"""Perceptual evaluation metrics: LPIPS v0.1 (Zhang et al. 2018) and FID.

LPIPS follows the ``lpips`` package: inputs in [-1, 1] go through a fixed scaling layer, a frozen
torchvision AlexNet or VGG16 trunk gives five ReLU feature maps, each is unit-normalised over
channels, the squared difference is weighted per channel by a learned 1x1 conv ("lin" layer),
averaged over space, and the five layers are summed. Weight files: the torchvision backbone
(``alexnet-owt-7be5be79.pth`` / ``vgg16-397923af.pth``) and the lpips package's
``weights/v0.1/{alex,vgg}.pth`` (keys ``lin{i}.model.1.weight``, shape (1, C, 1, 1)).

FID: features from ``gleansr.models.inception.InceptionV3FID`` (pytorch-fid's weights), then the
Frechet distance between the two Gaussians fitted to them.

:class:`LPIPSMetric` and :class:`FIDFeatures` wrap both for :func:`gleansr.evaluate.evaluate`:
uint8 RGB images in, each network's input range and its weight file taken care of.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from .errors import GleanError
from .loading.backbones import (load_alexnet_weights, load_fid_inception_weights, load_lpips_lin_weights,
                                load_vgg16_weights)
from .models.alexnet import AlexNetFeatures
from .models.inception import InceptionV3FID
from .models.vgg import VGG16Features, collect_outputs

# Per backbone: the trunk's ReLU indices LPIPS compares, and their channel counts.
LPIPS_TAPS = {"alex": (1, 4, 7, 9, 11), "vgg": (3, 8, 15, 22, 29)}
LPIPS_CHANNELS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}
# The lpips v0.1 input scaling (shift and scale per RGB channel, for inputs in [-1, 1]).
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
# lpips' channel normalisation: x / (||x||_2 over channels + eps).
LPIPS_NORM_EPS = 1e-10


class _LinLayer(nn.Module):
    """lpips' ``NetLinLayer``: dropout (index 0, inactive in eval) then a 1x1 conv to one channel,
    so the lin file's keys ``model.1.weight`` load as they are."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, kernel_size=1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class _LinLayers(nn.Module):
    """``lin0`` ... ``lin4``: the layout of the lpips package's ``weights/v0.1/<net>.pth``."""

    def __init__(self, channels: tuple[int, ...]) -> None:
        super().__init__()
        for i, c in enumerate(channels):
            self.add_module(f"lin{i}", _LinLayer(c))


class LPIPS(nn.Module):
    """LPIPS v0.1 distance, frozen.

    Args:
        net: "alex" (the paper's and GLEAN's setting) or "vgg".
        backbone_weights: torchvision-layout AlexNet / VGG16 file.
        lin_weights: the lpips package's v0.1 lin-layer file for the same ``net``.

    ``forward(x, y, normalize=False)``: two (N, 3, H, W) images in [-1, 1] (in [0, 1] with
    ``normalize=True``) -> (N,) distances. Gradients flow to the inputs, not to the weights.
    """

    def __init__(self, net: Literal["alex", "vgg"], backbone_weights: str | Path, lin_weights: str | Path) -> None:
        super().__init__()
        if net not in LPIPS_TAPS:
            raise ValueError(f"net must be 'alex' or 'vgg', got {net!r}")
        self.taps = LPIPS_TAPS[net]
        if net == "alex":
            self.backbone: nn.Module = AlexNetFeatures(last_layer=self.taps[-1])
            load_alexnet_weights(self.backbone, backbone_weights)
        else:
            self.backbone = VGG16Features(last_layer=self.taps[-1])
            load_vgg16_weights(self.backbone, backbone_weights)
        self.lins = _LinLayers(LPIPS_CHANNELS[net])
        load_lpips_lin_weights(self.lins, lin_weights, net)
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor, y: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected two (N, 3, H, W) images of one shape, got {tuple(x.shape)}, {tuple(y.shape)}")
        if normalize:
            x, y = 2 * x - 1, 2 * y - 1
        features_x = collect_outputs(self.backbone.features, (x - self.shift) / self.scale, self.taps)
        features_y = collect_outputs(self.backbone.features, (y - self.shift) / self.scale, self.taps)
        distance = x.new_zeros(x.shape[0])
        for lin, fx, fy in zip(self.lins.children(), features_x, features_y):
            fx = fx / (fx.pow(2).sum(1, keepdim=True).sqrt() + LPIPS_NORM_EPS)
            fy = fy / (fy.pow(2).sum(1, keepdim=True).sqrt() + LPIPS_NORM_EPS)
            distance = distance + lin((fx - fy).pow(2)).mean(dim=(1, 2, 3))
        return distance


def _uint8_batch(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float32 (N, 3, H, W) in [0, 1]."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected uint8 (N, H, W, 3) images, got {images.dtype} {images.shape}")
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255


class LPIPSMetric:
    """LPIPS on uint8 images, as :func:`gleansr.evaluate.evaluate` takes it.

    ``LPIPSMetric(net, backbone_weights, lin_weights, device)(a, b)``: two uint8 (N, H, W, 3)
    batches -> float64 (N,) distances; pixels go in as [-1, 1] (``(x / 255 - 0.5) * 2``, as lpips'
    ``im2tensor``). Weight files as :class:`LPIPS` reads them.
    """

    def __init__(self, net: Literal["alex", "vgg"], backbone_weights: str | Path, lin_weights: str | Path,
                 device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.net = LPIPS(net, backbone_weights, lin_weights).to(self.device)

    @torch.no_grad()
    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        x, y = (_uint8_batch(images).to(self.device) for images in (a, b))
        return self.net(x, y, normalize=True).double().cpu().numpy()


class FIDFeatures:
    """Inception pool features for FID from uint8 images, as :func:`gleansr.evaluate.evaluate` takes them.

    ``FIDFeatures(weights, device)(images)``: uint8 (N, H, W, 3) -> float64 (N, 2048). The network
    is :class:`~gleansr.models.inception.InceptionV3FID` with pytorch-fid's ``pt_inception``
    weights loaded strictly; pixels go in as [0, 1] (``x / 255``, as pytorch-fid's ``ToTensor``).
    """

    def __init__(self, weights: str | Path, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        net = InceptionV3FID()
        load_fid_inception_weights(net, weights)
        self.net = net.eval().requires_grad_(False).to(self.device)

    @torch.no_grad()
    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.net(_uint8_batch(images).to(self.device)).double().cpu().numpy()


def feature_statistics(features: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) features -> (mean (D,), covariance (D, D)) in float64, unbiased as pytorch-fid."""
    array = _as_features(features)
    return array.mean(axis=0), np.cov(array, rowvar=False)


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2):
    ``|mu1 - mu2|^2 + tr(sigma1) + tr(sigma2) - 2 tr(sqrtm(sigma1 @ sigma2))``.

    As pytorch-fid: if the square root is not finite (singular product), ``eps`` is added to
    both diagonals; a tiny imaginary part from rounding is dropped, a large one is an error.
    """
    try:
        from scipy import linalg
    except ImportError as exc:
        raise GleanError("FID needs scipy: pip install scipy") from exc
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(f"mismatched statistics: {mu1.shape}, {sigma1.shape}, {mu2.shape}, {sigma2.shape}")
    with warnings.catch_warnings():
        # Fewer samples than dimensions make the covariances singular, as in most SR test sets
        # (100 images, 2048-d): scipy warns, the finiteness check below decides.
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"imaginary component {np.abs(covmean.imag).max():.3g} in the covariance square root")
        covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def _as_features(features: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().double().numpy()
    array = np.asarray(features, np.float64)
    if array.ndim != 2 or array.shape[0] < 2:
        raise ValueError(f"need (N, D) features with N >= 2, got shape {array.shape}")
    return array


def fid_from_features(features_a: np.ndarray | torch.Tensor, features_b: np.ndarray | torch.Tensor) -> float:
    """FID between two sets of (N, 2048) Inception pool features (any N >= 2, any D).

    With more samples than dimensions this is :func:`frechet_distance` of the fitted Gaussians.
    With fewer (an SR test set: 100 images, 2048-d), the same distance comes from the features
    without any D x D matrix: for centred features ``A`` and ``B`` scaled by ``1 / sqrt(N - 1)``,
    ``tr sqrtm(S_a S_b)`` is the sum of the singular values of ``A B^T`` (the non-zero
    eigenvalues of ``A^T A B^T B`` are those of ``(A B^T)^T (A B^T)``), exact and in milliseconds
    where ``scipy.linalg.sqrtm`` of a singular 2048 x 2048 product takes a minute.
    """
    a, b = _as_features(features_a), _as_features(features_b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sizes differ: {a.shape[1]} vs {b.shape[1]}")
    if min(len(a), len(b)) > a.shape[1]:
        return frechet_distance(*feature_statistics(a), *feature_statistics(b))
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    a_c, b_c = (a - mu_a) / np.sqrt(len(a) - 1), (b - mu_b) / np.sqrt(len(b) - 1)
    cross = np.linalg.svd(a_c @ b_c.T, compute_uv=False).sum()
    diff = mu_a - mu_b
    return float(diff @ diff + (a_c**2).sum() + (b_c**2).sum() - 2 * cross)
