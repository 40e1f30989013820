"""StyleGAN2 discriminator (residual, minibatch-stddev), MMEditing key layout."""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
import torch.nn as nn

from .layers import Blur, EqualConv2d, EqualLinearAct, FusedBiasLeakyReLU
from ..arch import DiscriminatorConfig


class ConvDownLayer(nn.Sequential):
    """[Blur] -> equalized conv (stride 2 after the blur) -> [bias + LeakyReLU x sqrt(2)]."""

    def __init__(self, in_channels, out_channels, kernel_size, downsample=False, blur_kernel=(1, 3, 3, 1), activate=True):
        layers: list[nn.Module] = []
        if downsample:
            p = (len(blur_kernel) - 2) + (kernel_size - 1)
            layers.append(Blur(blur_kernel, pad=((p + 1) // 2, p // 2)))
            layers.append(EqualConv2d(in_channels, out_channels, kernel_size, stride=2, padding=0))
        else:
            layers.append(EqualConv2d(in_channels, out_channels, kernel_size, stride=1, padding=kernel_size // 2))
        if activate:
            layers.append(FusedBiasLeakyReLU(out_channels))
        super().__init__(*layers)


class ResBlock(nn.Module):
    """Two convs (the second halving the size) plus a 1x1 down-sampling skip, scaled by 1/sqrt(2)."""

    def __init__(self, in_channels: int, out_channels: int, blur_kernel=(1, 3, 3, 1)):
        super().__init__()
        self.conv1 = ConvDownLayer(in_channels, in_channels, 3, blur_kernel=blur_kernel)
        self.conv2 = ConvDownLayer(in_channels, out_channels, 3, downsample=True, blur_kernel=blur_kernel)
        self.skip = ConvDownLayer(in_channels, out_channels, 1, downsample=True, blur_kernel=blur_kernel, activate=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2)


def minibatch_stddev(x: torch.Tensor, group_size: int = 4, channel_groups: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Append the per-group feature standard deviation as extra channels.

    Groups of G = min(N, group_size) samples are formed as ``x.view(G, N // G, ...)``:
    sample i is grouped with i + k * N / G (upstream's layout, not neighbours).
    x: (N, C, H, W) -> (N, C + channel_groups, H, W).
    """
    n, c, h, w = x.shape
    g = min(n, group_size)
    if n % g != 0:
        raise ValueError(f"batch size {n} must be <= {group_size} or divisible by it (minibatch stddev)")
    y = x.reshape(g, -1, channel_groups, c // channel_groups, h, w)
    y = torch.sqrt(torch.var(y, dim=0, unbiased=False) + eps)
    y = y.mean(dim=(2, 3, 4), keepdim=True).squeeze(2)  # (N/G, channel_groups, 1, 1)
    return torch.cat([x, y.repeat(g, 1, h, w)], dim=1)


class StyleGAN2Discriminator(nn.Module):
    """StyleGAN2 discriminator: image (N, 3, in_size, in_size) -> logit (N, 1).

    Args:
        in_size: input resolution (power of two).
        channel_multiplier: widths above 32 px, as in the generator.
        blur_kernel: FIR taps of the down-sampling blurs.
        mbstd_cfg: ``{'group_size': 4, 'channel_groups': 1}`` (upstream's argument and defaults).
        channel_max: cap on widths (512 upstream).

    The arguments are validated as a :class:`~gleansr.arch.DiscriminatorConfig` (``self.config``);
    :meth:`from_config` builds from one.
    """

    def __init__(
        self,
        in_size: int,
        channel_multiplier: float = 2,
        blur_kernel: Sequence[float] = (1, 3, 3, 1),
        mbstd_cfg: Mapping[str, int] | None = None,
        channel_max: int = 512,
    ):
        super().__init__()
        self.config = DiscriminatorConfig.from_dict(dict(in_size=in_size, channel_multiplier=channel_multiplier,
                                                         blur_kernel=tuple(blur_kernel), mbstd_cfg=mbstd_cfg or {},
                                                         channel_max=channel_max))
        log_size = in_size.bit_length() - 1
        ch = self.config.channels
        self.mbstd_cfg = self.config.mbstd_cfg
        convs: list[nn.Module] = [ConvDownLayer(3, ch[in_size], 1)]
        in_ch = ch[in_size]
        for i in range(log_size, 2, -1):
            out_ch = ch[2 ** (i - 1)]
            convs.append(ResBlock(in_ch, out_ch, blur_kernel))
            in_ch = out_ch
        self.convs = nn.Sequential(*convs)
        self.final_conv = ConvDownLayer(in_ch + self.mbstd_cfg["channel_groups"], ch[4], 3)
        self.final_linear = nn.Sequential(
            EqualLinearAct(ch[4] * 16, ch[4], activate=True),
            EqualLinearAct(ch[4], 1),
        )
        self.in_size = in_size

    @classmethod
    def from_config(cls, config: DiscriminatorConfig) -> "StyleGAN2Discriminator":
        return cls(**config.to_dict())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.convs(x)
        x = minibatch_stddev(x, **self.mbstd_cfg)
        x = self.final_conv(x)
        return self.final_linear(x.reshape(x.shape[0], -1))
