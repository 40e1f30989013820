"""GLEAN: an RRDB encoder, a frozen StyleGAN2 latent bank, and a pixel-shuffle decoder.

Data flow (MMEditing ``GLEANStyleGANv2``):
- encoder: RRDB features at ``in_size``, then stride-2 conv blocks down to 4x4, and a
  linear head giving the latent (N, 2*log2(out_size) - 2, style_channels);
- bank: the StyleGAN2 synthesis network driven by that latent, with the encoder features
  fused in (``fusion_out``) at every resolution <= ``in_size``;
- decoder: from ``in_size`` up to ``out_size``, concatenating ``[hr, bank_feature]``.
The bank's RGB branch (``to_rgb*``, ``fusion_skip*``) never reaches the output; it is
kept for checkpoint compatibility and computed only by ``impl="ref"``.

``latent_bank=False`` (a gleansr extension) is the paper's ablation, the same encoder-decoder
without the bank: the decoder sees zeros where the bank features were, so only the RRDB trunk
and the decoder compute and train; the state dict keeps every key.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from .rrdb import RRDBFeatureExtractor
from .stylegan2 import StyleGAN2Generator


@dataclass(frozen=True)
class GLEANConfig:
    """Everything needed to rebuild a GLEAN generator (stored in every gleansr checkpoint)."""

    in_size: int
    out_size: int
    img_channels: int = 3
    rrdb_channels: int = 64
    num_rrdbs: int = 23
    style_channels: int = 512
    num_mlps: int = 8
    channel_multiplier: float = 2
    blur_kernel: tuple[int, ...] = (1, 3, 3, 1)
    lr_mlp: float = 0.01
    channel_max: int = 512
    latent_bank: bool = True

    @property
    def scale(self) -> int:
        return self.out_size // self.in_size

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["blur_kernel"] = list(self.blur_kernel)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "GLEANConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown GLEAN config keys: {', '.join(unknown)}")
        d = dict(d)
        if "blur_kernel" in d:
            d["blur_kernel"] = tuple(d["blur_kernel"])
        return cls(**d)


class PixelShufflePack(nn.Module):
    """3x3 conv to ``out_channels * 4`` then pixel shuffle (x2); no activation (key ``upsample_conv``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3):
        super().__init__()
        self.upsample_conv = nn.Conv2d(in_channels, out_channels * 4, kernel_size, padding=(kernel_size - 1) // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(self.upsample_conv(x), 2)


def _lrelu() -> nn.Module:
    return nn.LeakyReLU(0.2, inplace=True)


class GLEANStyleGANv2(nn.Module):
    """GLEAN generator with MMEditing's constructor arguments and state-dict layout.

    ``forward(x)``: x (N, img_channels, in_size, in_size), RGB in [-1, 1] ->
    (N, img_channels, out_size, out_size), raw (not clamped), as upstream.
    ``channel_max`` is a gleansr extension for small models (512 = upstream); so is
    ``latent_bank`` (False: the encoder-decoder ablation, see the module docstring).
    """

    def __init__(
        self,
        in_size: int,
        out_size: int,
        img_channels: int = 3,
        rrdb_channels: int = 64,
        num_rrdbs: int = 23,
        style_channels: int = 512,
        num_mlps: int = 8,
        channel_multiplier: float = 2,
        blur_kernel=(1, 3, 3, 1),
        lr_mlp: float = 0.01,
        channel_max: int = 512,
        latent_bank: bool = True,
    ):
        super().__init__()
        if in_size < 4 or 2 ** int(math.log2(in_size)) != in_size:
            raise ValueError(f"in_size must be a power of two >= 4, got {in_size}")
        if in_size >= out_size:
            raise ValueError(f"in_size must be smaller than out_size, got {in_size} and {out_size}")
        self.config = GLEANConfig(in_size, out_size, img_channels, rrdb_channels, num_rrdbs, style_channels,
                                  num_mlps, channel_multiplier, tuple(blur_kernel), lr_mlp, channel_max,
                                  bool(latent_bank))
        self.generator = StyleGAN2Generator(out_size, style_channels, num_mlps, channel_multiplier,
                                            blur_kernel, lr_mlp, channel_max)
        self.generator.requires_grad_(False)
        self.in_size, self.out_size, self.style_channels = in_size, out_size, style_channels
        ch = self.generator.channels
        num_styles = self.generator.num_latents

        encoder_res = [2**i for i in range(int(math.log2(in_size)), 1, -1)]
        self.encoder = nn.ModuleList([nn.Sequential(
            RRDBFeatureExtractor(img_channels, rrdb_channels, num_blocks=num_rrdbs),
            nn.Conv2d(rrdb_channels, ch[in_size], 3, 1, 1),
            _lrelu(),
        )])
        for res in encoder_res:
            c = ch[res]
            if res > 4:
                c2 = ch[res // 2]
                block = nn.Sequential(nn.Conv2d(c, c2, 3, 2, 1), _lrelu(), nn.Conv2d(c2, c2, 3, 1, 1), _lrelu())
            else:
                block = nn.Sequential(nn.Conv2d(c, c, 3, 1, 1), _lrelu(), nn.Flatten(),
                                      nn.Linear(16 * c, num_styles * style_channels))
            self.encoder.append(block)

        self.fusion_out = nn.ModuleList()
        self.fusion_skip = nn.ModuleList()
        for res in encoder_res[::-1]:
            self.fusion_out.append(nn.Conv2d(2 * ch[res], ch[res], 3, 1, 1))
            self.fusion_skip.append(nn.Conv2d(ch[res] + 3, 3, 3, 1, 1))

        self.decoder = nn.ModuleList()
        for res in [2**i for i in range(int(math.log2(in_size)), int(math.log2(out_size)) + 1)]:
            c_in = ch[res] if res == in_size else 2 * ch[res]
            if res < out_size:
                self.decoder.append(PixelShufflePack(c_in, ch[res * 2]))
            else:
                self.decoder.append(nn.Sequential(nn.Conv2d(c_in, 64, 3, 1, 1), _lrelu(), nn.Conv2d(64, img_channels, 3, 1, 1)))
        if not latent_bank:  # unused without the bank: frozen, so optimisers and DDP skip them
            for unused in (self.encoder[1:], self.fusion_out, self.fusion_skip):
                unused.requires_grad_(False)
        self.impl = "auto"

    def set_impl(self, impl: str) -> "GLEANStyleGANv2":
        """Select ``ref`` (upstream's computation, RGB branch included) or ``fast``/``auto`` everywhere."""
        from ..ops._impl import use_fast

        use_fast(impl)  # validates
        for m in self.modules():
            if hasattr(m, "impl"):
                m.impl = impl
        return self

    def train(self, mode: bool = True) -> "GLEANStyleGANv2":
        super().train(mode)
        self.generator.eval()  # the bank is frozen: it has no train-time behaviour to switch on
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[-2:] != (self.in_size, self.in_size) or x.shape[1] != self.config.img_channels:
            raise ValueError(
                f"GLEAN expects input of shape (N, {self.config.img_channels}, {self.in_size}, {self.in_size}), "
                f"got {tuple(x.shape)}"
            )
        if not self.config.latent_bank:
            return self._decode(self.encoder[0](x), None)
        compute_rgb = self.impl == "ref"
        feats = []
        feat = x
        for block in self.encoder:
            feat = block(feat)
            feats.append(feat)
        feats = feats[::-1]
        latent = feats[0].view(x.shape[0], -1, self.style_channels)
        enc = feats[1:]  # 4x4 first, in_size last

        g = self.generator
        noise = g.injected_noises()
        out = g.conv1(g.constant_input(x.shape[0]).to(x.dtype), latent[:, 0], noise=noise[0])
        skip = g.to_rgb1(out, latent[:, 1]) if compute_rgb else None
        bank_feats = []
        idx = 1
        for up_conv, conv, n1, n2, to_rgb in zip(g.convs[::2], g.convs[1::2], noise[1::2], noise[2::2], g.to_rgbs):
            if out.shape[2] <= self.in_size:
                j = (idx - 1) // 2
                out = self.fusion_out[j](torch.cat([out, enc[j]], dim=1))
                if compute_rgb:
                    skip = self.fusion_skip[j](torch.cat([skip, enc[j]], dim=1))
            out = up_conv(out, latent[:, idx], noise=n1)
            out = conv(out, latent[:, idx + 1], noise=n2)
            if compute_rgb:
                skip = to_rgb(out, latent[:, idx + 2], skip)
            if out.shape[2] > self.in_size:
                bank_feats.append(out)
            idx += 2

        return self._decode(enc[-1], bank_feats)

    def _decode(self, hr: torch.Tensor, bank_feats: list[torch.Tensor] | None) -> torch.Tensor:
        """From ``in_size`` up, concatenating each bank feature (zeros for the no-bank ablation)."""
        for i, block in enumerate(self.decoder):
            if i > 0:
                hr = torch.cat([hr, torch.zeros_like(hr) if bank_feats is None else bank_feats[i - 1]], dim=1)
            hr = block(hr)
        return hr
