"""Training losses: GLEAN's recipe (MMEditing) and the StyleGAN2 regularisers for bank training.

GLEAN's generator loss, as configured for all four released presets:
``pixel_loss`` (MSE, weight 1) + ``PerceptualLoss`` (VGG16 layer 21, MSE, weight 1e-2) +
``gan_loss(..., for_discriminator=False)`` (vanilla BCE-with-logits, weight 1e-2). The
discriminator step uses ``gan_loss`` on real (label 1) and fake (label 0) logits with weight 1.

StyleGAN2 (bank training): ``logistic_d_loss`` / ``logistic_g_loss`` (non-saturating logistic),
``r1_penalty`` and ``path_length_penalty``; the caller applies gamma / 2, the lazy-regularisation
interval and the path-length weight.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import GleanError
from ..loading.backbones import load_vgg16_weights
from ..models.vgg import VGG16Features

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

VggInputRange = Literal["[-1,1]", "[0,1]"]


def pixel_loss(output: torch.Tensor, target: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
    """MMEditing ``MSELoss`` (mean reduction) times ``weight``: any matching shapes -> scalar."""
    return weight * F.mse_loss(output, target)


class PerceptualLoss(nn.Module):
    """MMEditing's ``PerceptualLoss`` as GLEAN configures it (VGG16, one layer, no style term).

    Args:
        vgg_weights: torchvision-layout VGG16 file (``vgg16-397923af.pth`` or a safetensors copy).
        layer: index into ``vgg16().features`` whose output is compared; 21 = conv4_3 before ReLU.
        weight: ``perceptual_weight`` (1e-2 in GLEAN).
        vgg_input_range: "[-1,1]" feeds the [-1, 1] images to the ImageNet mean/std normalisation
            unchanged (MMEditing ``norm_img=False``: cat_8x, cat_16x, ffhq_16x); "[0,1]" maps
            them to [0, 1] first (``norm_img=True``: in128). Each preset's value is in its recipe.
        criterion: "mse" (GLEAN) or "l1", mean over all feature elements.
        allow_random: with ``vgg_weights=None``, keep a randomly initialised VGG (tests only).

    ``forward(output, target)``: two (N, 3, H, W) images in [-1, 1] -> scalar loss. The VGG is
    frozen (no parameter gradients, eval mode); gradients flow to ``output`` only.
    """

    def __init__(
        self,
        vgg_weights: str | Path | None,
        *,
        layer: int | str = 21,
        weight: float = 1e-2,
        vgg_input_range: VggInputRange = "[-1,1]",
        criterion: Literal["mse", "l1"] = "mse",
        allow_random: bool = False,
    ) -> None:
        super().__init__()
        if vgg_input_range not in ("[-1,1]", "[0,1]"):
            raise ValueError(f"vgg_input_range must be '[-1,1]' or '[0,1]', got {vgg_input_range!r}")
        if criterion not in ("mse", "l1"):
            raise ValueError(f"criterion must be 'mse' or 'l1', got {criterion!r}")
        if vgg_weights is None and not allow_random:
            raise GleanError(
                "the perceptual loss needs VGG16 weights (torchvision vgg16-397923af.pth); "
                "none were given and a random VGG would train against noise"
            )
        self.weight = weight
        self.vgg_input_range = vgg_input_range
        self.criterion = F.mse_loss if criterion == "mse" else F.l1_loss
        self.vgg = VGG16Features(last_layer=int(layer))
        if vgg_weights is not None:
            load_vgg16_weights(self.vgg, vgg_weights)
        self.vgg.requires_grad_(False)
        self.vgg.eval()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [-1, 1] -> VGG features at ``layer`` (N, C, H', W')."""
        if self.vgg_input_range == "[0,1]":
            images = (images + 1) * 0.5
        return self.vgg((images - self.mean) / self.std)

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target_features = self.features(target)
        return self.weight * self.criterion(self.features(output), target_features)


def gan_loss(
    logits: torch.Tensor, target_is_real: bool, for_discriminator: bool, generator_weight: float = 1e-2
) -> torch.Tensor:
    """MMEditing ``GANLoss('vanilla')``: BCE-with-logits against all-1 (real) or all-0 (fake), mean.

    The weight applies to the generator side only (``generator_weight``, 1e-2 in GLEAN); the
    discriminator side always has weight 1. logits: any shape -> scalar.
    """
    target = torch.full_like(logits, 1.0 if target_is_real else 0.0)
    loss = F.binary_cross_entropy_with_logits(logits, target)
    return loss if for_discriminator else generator_weight * loss


def logistic_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """StyleGAN2 discriminator loss: mean softplus(-D(real)) + mean softplus(D(fake)). (N, 1) -> scalar."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def logistic_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """StyleGAN2 non-saturating generator loss: mean softplus(-D(fake)). (N, 1) -> scalar."""
    return F.softplus(-fake_logits).mean()


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """R1: squared gradient norm of D on real images, summed per sample, averaged over the batch.

    ``real_images`` (N, C, H, W) must have ``requires_grad=True`` and ``real_logits`` (N, ...)
    must come from them. The graph is kept so the penalty can be back-propagated; the StyleGAN2
    loss term is ``gamma / 2 * r1_penalty(...)`` (times the lazy-regularisation interval).
    """
    (grad,) = torch.autograd.grad(real_logits.sum(), real_images, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


def path_length_penalty(
    fake_images: torch.Tensor,
    latents: torch.Tensor,
    mean_path_length: torch.Tensor | float,
    decay: float = 0.01,
    noise: torch.Tensor | None = None,
    batch_mean: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """StyleGAN2 path-length regulariser.

    Args:
        fake_images: (N, C, H, W) generated from ``latents`` (the graph must connect them).
        latents: (N, L, D) W+ codes with ``requires_grad=True``.
        mean_path_length: running mean a of the path lengths (0 at the start).
        decay: exponential-moving-average rate of a.
        noise: (N, C, H, W) projection y; default standard normal / sqrt(H * W).
        batch_mean: maps this batch's mean path length to the one a_new moves towards; under DDP
            the mean over processes, so every process centres its penalty on the global batch's
            mean (a per-process centre gives other gradients than one process on the whole batch).

    Returns:
        (penalty, new_mean_path_length, path_lengths): penalty = mean((|J^T y| - a_new)^2) with
        |J^T y| = sqrt(mean over L of the squared norm over D), a_new = a + decay * (mean - a)
        (detached), path_lengths (N,) detached. The caller multiplies the penalty by its weight.
    """
    if latents.ndim != 3:
        raise ValueError(f"latents must be (N, L, D), got shape {tuple(latents.shape)}")
    if noise is None:
        height, width = fake_images.shape[2:]
        noise = torch.randn_like(fake_images) / math.sqrt(height * width)
    (grad,) = torch.autograd.grad((fake_images * noise).sum(), latents, create_graph=True)
    path_lengths = grad.pow(2).sum(2).mean(1).sqrt()
    batch = path_lengths.detach().mean()
    new_mean = mean_path_length + decay * ((batch_mean(batch) if batch_mean else batch) - mean_path_length)
    penalty = (path_lengths - new_mean).pow(2).mean()
    return penalty, new_mean, path_lengths.detach()
