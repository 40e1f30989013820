"""StyleGAN2 generator (config-f layout), the latent bank inside GLEAN.

Module and parameter names follow MMEditing's ``StyleGANv2Generator`` so that release
checkpoints and MMGeneration's official StyleGAN2 weights load without renaming.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from ..arch import StyleGAN2Config
from ..ops import modulated_conv2d
from .fused import FusedStyleConv, FuseTarget, f64
from .layers import Blur, ConstantInput, EqualLinearAct, FusedBiasLeakyReLU, NoiseInjection, PixelNorm, equalized_lr_scale


class ModulatedConv2d(nn.Module):
    """Modulated conv (keys ``weight_orig`` (1, out, in, k, k), ``style_modulation.*``,
    ``blur.kernel`` when up-sampling)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        style_channels: int,
        demodulate: bool = True,
        upsample: bool = False,
        blur_kernel: Sequence[float] = (1, 3, 3, 1),
        eps: float = 1e-8,
    ):
        super().__init__()
        self.weight_orig = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size))
        self.style_modulation = EqualLinearAct(style_channels, in_channels, bias_init=1.0)
        if upsample:
            p = (len(blur_kernel) - 2) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + 1, p // 2 + 1), gain=4)
        self.scale = equalized_lr_scale(in_channels * kernel_size * kernel_size)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.demodulate, self.upsample, self.eps = demodulate, upsample, eps
        self.impl = "auto"

    @property
    def weight(self) -> torch.Tensor:
        """(out, in, k, k) equalized-lr weight."""
        return self.weight_orig[0] * self.scale

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        s = self.style_modulation(style)
        return modulated_conv2d(
            x,
            self.weight.to(x.dtype),
            s.to(x.dtype),
            demodulate=self.demodulate,
            up=self.upsample,
            blur_kernel=self.blur.kernel if self.upsample else None,
            blur_pad=self.blur.pad if self.upsample else (0, 0),
            eps=self.eps,
            impl=self.impl,
        )


class ModulatedStyleConv(nn.Module):
    """Modulated conv -> noise injection -> bias + LeakyReLU x sqrt(2)."""

    def __init__(self, in_channels, out_channels, kernel_size, style_channels, upsample=False, blur_kernel=(1, 3, 3, 1)):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, kernel_size, style_channels,
                                    upsample=upsample, blur_kernel=blur_kernel)
        self.noise_injector = NoiseInjection()
        self.activate = FusedBiasLeakyReLU(out_channels)

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        return self.activate(self.noise_injector(self.conv(x, style), noise))

    def fused(self, target: FuseTarget, noise: torch.Tensor) -> FusedStyleConv:
        """Inference form with ``noise`` (1, 1, H, W) fixed: the equalized-lr scale in the weight,
        the noise pre-multiplied by its weight, modulation on the activations."""
        conv = self.conv
        assert conv.demodulate, "the bank's style convs always demodulate"
        lin = conv.style_modulation
        blur = (conv.blur.kernel, conv.blur.pad) if conv.upsample else None
        return FusedStyleConv(
            f64(conv.weight_orig[0]) * conv.scale, f64(lin.linear.weight), f64(lin.bias) * lin.lr_mul,
            f64(noise) * f64(self.noise_injector.weight), f64(self.activate.bias), conv.eps, target, blur)


class ModulatedToRGB(nn.Module):
    """1x1 modulated conv to RGB (no demodulation) + bias, plus the up-sampled previous RGB."""

    def __init__(self, in_channels: int, style_channels: int, upsample: bool = True, blur_kernel=(1, 3, 3, 1)):
        super().__init__()
        if upsample:
            p = len(blur_kernel) - 2
            self.upsample = Blur(blur_kernel, pad=((p + 1) // 2 + 1, p // 2), up=2, gain=4)
        self.conv = ModulatedConv2d(in_channels, 3, 1, style_channels, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, style) + self.bias.to(x.dtype)
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class StyleGAN2Generator(nn.Module):
    """StyleGAN2 synthesis + mapping network.

    Args:
        out_size: output resolution (power of two, >= 8).
        style_channels: width of z and w.
        num_mlps: mapping-network depth.
        channel_multiplier: widths above 32 px (config-f: 2).
        blur_kernel: FIR taps for up-sampling.
        lr_mlp: learning-rate multiplier of the mapping network.
        channel_max: cap on all widths (512 upstream; smaller for small banks).

    The arguments are validated as a :class:`~gleansr.arch.StyleGAN2Config` (``self.config``);
    :meth:`from_config` builds from one.
    """

    def __init__(
        self,
        out_size: int,
        style_channels: int = 512,
        num_mlps: int = 8,
        channel_multiplier: float = 2,
        blur_kernel: Sequence[float] = (1, 3, 3, 1),
        lr_mlp: float = 0.01,
        channel_max: int = 512,
    ):
        super().__init__()
        self.config = StyleGAN2Config(out_size=out_size, style_channels=style_channels, num_mlps=num_mlps,
                                      channel_multiplier=channel_multiplier, blur_kernel=tuple(blur_kernel),
                                      lr_mlp=lr_mlp, channel_max=channel_max)
        log_size = self.config.log_size
        self.out_size, self.style_channels, self.log_size = out_size, style_channels, log_size
        self.channels = self.config.channels
        self.num_latents = self.config.num_latents
        self.num_injected_noises = self.num_latents - 1
        for i in range(self.num_injected_noises):
            res = 2 ** ((i + 5) // 2)
            self.register_buffer(f"injected_noise_{i}", torch.randn(1, 1, res, res))

        self.style_mapping = nn.Sequential(
            PixelNorm(),
            *[EqualLinearAct(style_channels, style_channels, lr_mul=lr_mlp, activate=True) for _ in range(num_mlps)],
        )
        ch = self.channels
        self.constant_input = ConstantInput(ch[4])
        self.conv1 = ModulatedStyleConv(ch[4], ch[4], 3, style_channels, blur_kernel=blur_kernel)
        self.to_rgb1 = ModulatedToRGB(ch[4], style_channels, upsample=False)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        in_ch = ch[4]
        for i in range(3, log_size + 1):
            out_ch = ch[2**i]
            self.convs.append(ModulatedStyleConv(in_ch, out_ch, 3, style_channels, upsample=True, blur_kernel=blur_kernel))
            self.convs.append(ModulatedStyleConv(out_ch, out_ch, 3, style_channels, blur_kernel=blur_kernel))
            self.to_rgbs.append(ModulatedToRGB(out_ch, style_channels, upsample=True, blur_kernel=blur_kernel))
            in_ch = out_ch

    @classmethod
    def from_config(cls, config: StyleGAN2Config) -> "StyleGAN2Generator":
        return cls(**config.to_dict())

    def fused_synthesis(self, target: FuseTarget) -> "FusedSynthesis":
        """The synthesis layers' inference form without the RGB branch (what GLEAN reads)."""
        noises = self.injected_noises()
        layers = [layer.fused(target, noise) for layer, noise in zip([self.conv1, *self.convs], noises)]
        return FusedSynthesis(target.weight(self.constant_input.input), layers)

    def injected_noises(self) -> list[torch.Tensor]:
        return [getattr(self, f"injected_noise_{i}") for i in range(self.num_injected_noises)]

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """z (N, style_channels) -> w (N, style_channels)."""
        return self.style_mapping(z)

    def mixed_latents(self, w1: torch.Tensor, w2: torch.Tensor, k: int) -> torch.Tensor:
        """Style mixing: per-layer latents (N, num_latents, style) taking w1 for layers [0, k), w2 after."""
        return torch.cat([w1.unsqueeze(1).expand(-1, k, -1), w2.unsqueeze(1).expand(-1, self.num_latents - k, -1)],
                         dim=1)

    def synthesis(self, latent: torch.Tensor, noise: Sequence[torch.Tensor | None] | None = None) -> torch.Tensor:
        """Image from per-layer latents (N, num_latents, style_channels); ``noise=None``
        uses the registered noise buffers (deterministic); pass a list of ``None`` for random."""
        noise = self.injected_noises() if noise is None else list(noise)
        out = self.constant_input(latent.shape[0]).to(latent.dtype)
        out = self.conv1(out, latent[:, 0], noise=noise[0])
        skip = self.to_rgb1(out, latent[:, 1])
        idx = 1
        for up_conv, conv, n1, n2, to_rgb in zip(self.convs[::2], self.convs[1::2], noise[1::2], noise[2::2], self.to_rgbs):
            out = up_conv(out, latent[:, idx], noise=n1)
            out = conv(out, latent[:, idx + 1], noise=n2)
            skip = to_rgb(out, latent[:, idx + 2], skip)
            idx += 2
        return skip

    def forward(
        self,
        z: torch.Tensor | Sequence[torch.Tensor],
        truncation: float = 1.0,
        truncation_latent: torch.Tensor | None = None,
        inject_index: int | None = None,
        input_is_latent: bool = False,
        randomize_noise: bool = False,
    ) -> torch.Tensor:
        """Images (N, 3, out, out) from z (N, style_channels), or two z's for style mixing.

        Style mixing uses w1 for latents [0, inject_index) and w2 for the rest.
        """
        styles = [z] if isinstance(z, torch.Tensor) else list(z)
        ws = styles if input_is_latent else [self.mapping(s) for s in styles]
        if truncation < 1.0:
            if truncation_latent is None:
                raise ValueError("truncation < 1 needs truncation_latent "
                                 "(see gleansr.train.bank_samples.truncation_centre)")
            ws = [truncation_latent + truncation * (w - truncation_latent) for w in ws]
        if len(ws) == 1:
            latent = ws[0].unsqueeze(1).expand(-1, self.num_latents, -1) if ws[0].ndim == 2 else ws[0]
        else:
            k = inject_index if inject_index is not None else int(torch.randint(1, self.num_latents, ()).item())
            latent = self.mixed_latents(ws[0], ws[1], k)
        noise = [None] * self.num_injected_noises if randomize_noise else None
        return self.synthesis(latent, noise)


class FusedSynthesis(nn.Module):
    """The bank's feature path, frozen: a constant input and the styled convs (conv1, then
    up-sampling and plain convs in turn), each called as ``layer(x, w)`` with its noise fixed."""

    def __init__(self, constant_input: torch.Tensor, layers: list[FusedStyleConv]):
        super().__init__()
        self.register_buffer("constant_input", constant_input, persistent=False)
        self.layers = nn.ModuleList(layers)

    def constant(self, batch: int) -> torch.Tensor:
        return self.constant_input.expand(batch, -1, -1, -1)
