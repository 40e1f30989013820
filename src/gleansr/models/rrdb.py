"""RRDB feature extractor (ESRGAN's trunk without its up-sampler): GLEAN's first encoder stage."""
from __future__ import annotations

import torch
import torch.nn as nn

from .fused import FusedConv, FusedDenseBlock, FuseTarget, LongSkip, ScaledResidual

RESIDUAL_SCALE = 0.2


def _scaled_kaiming_(conv: nn.Conv2d, scale: float) -> None:
    # ESRGAN's init: Kaiming-normal weights shrunk by `scale` keep the deep residual trunk stable
    if conv.weight.is_meta:  # built to be loaded (build_uninitialised): nothing to draw
        return
    nn.init.kaiming_normal_(conv.weight, a=0, mode="fan_in")
    conv.weight.data.mul_(scale)
    nn.init.zeros_(conv.bias)


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convs; output ``x + 0.2 * conv5(...)``."""

    def __init__(self, mid_channels: int = 64, growth_channels: int = 32):
        super().__init__()
        for i in range(5):
            out_channels = mid_channels if i == 4 else growth_channels
            conv = nn.Conv2d(mid_channels + i * growth_channels, out_channels, 3, 1, 1)
            _scaled_kaiming_(conv, 0.1)
            self.add_module(f"conv{i + 1}", conv)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for i in range(1, 5):
            feats.append(self.lrelu(getattr(self, f"conv{i}")(torch.cat(feats, 1))))
        return self.conv5(torch.cat(feats, 1)) * RESIDUAL_SCALE + x

    def fused(self, target: FuseTarget) -> FusedDenseBlock:
        """Inference form: LeakyReLUs in the convs, the residual scale in conv5's weights."""
        convs = [FusedConv.of(getattr(self, f"conv{i}"), target, lrelu=True) for i in range(1, 5)]
        return FusedDenseBlock(convs, FusedConv.of(self.conv5, target, scale=RESIDUAL_SCALE))


class RRDB(nn.Module):
    """Residual-in-residual dense block: three RDBs, output ``x + 0.2 * rdb3(rdb2(rdb1(x)))``."""

    def __init__(self, mid_channels: int, growth_channels: int = 32):
        super().__init__()
        self.rdb1 = ResidualDenseBlock(mid_channels, growth_channels)
        self.rdb2 = ResidualDenseBlock(mid_channels, growth_channels)
        self.rdb3 = ResidualDenseBlock(mid_channels, growth_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * RESIDUAL_SCALE + x

    def fused(self, target: FuseTarget) -> ScaledResidual:
        """Inference form: ``x + 0.2 * rdb3(rdb2(rdb1(x)))`` in one ``add``."""
        return ScaledResidual(nn.Sequential(*(rdb.fused(target) for rdb in (self.rdb1, self.rdb2, self.rdb3))),
                              RESIDUAL_SCALE)


class RRDBFeatureExtractor(nn.Module):
    """conv_first -> ``num_blocks`` RRDBs -> conv_body, with a long skip connection.

    x: (N, in_channels, H, W) -> (N, mid_channels, H, W).
    """

    def __init__(self, in_channels: int = 3, mid_channels: int = 64, num_blocks: int = 23, growth_channels: int = 32):
        super().__init__()
        self.conv_first = nn.Conv2d(in_channels, mid_channels, 3, 1, 1)
        self.body = nn.Sequential(*[RRDB(mid_channels, growth_channels) for _ in range(num_blocks)])
        self.conv_body = nn.Conv2d(mid_channels, mid_channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv_first(x)
        return feat + self.conv_body(self.body(feat))

    def fused(self, target: FuseTarget) -> LongSkip:
        """Inference form: the same trunk with fused blocks, the long skip added in place."""
        body = nn.Sequential(*(block.fused(target) for block in self.body))
        return LongSkip(FusedConv.of(self.conv_first, target), body, FusedConv.of(self.conv_body, target))
