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

import functools
import math
from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from ..glean_config import GLEANConfig
from .fused import FusedConv, FusedPixelShuffle, FuseTarget, fuse
from .rrdb import RRDBFeatureExtractor
from .stylegan2 import StyleGAN2Generator


class PixelShufflePack(nn.Module):
    """3x3 conv to ``out_channels * 4`` then pixel shuffle (x2); no activation (key ``upsample_conv``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3):
        super().__init__()
        self.upsample_conv = nn.Conv2d(in_channels, out_channels * 4, kernel_size, padding=(kernel_size - 1) // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(self.upsample_conv(x), 2)

    def fused(self, target: FuseTarget) -> FusedPixelShuffle:
        return FusedPixelShuffle(FusedConv.of(self.upsample_conv, target), target.channels_last)


def _lrelu() -> nn.Module:
    return nn.LeakyReLU(0.2, inplace=True)


class GLEANFlow(nn.Module):
    """The GLEAN forward order, written once for the model and its fused inference form.

    Subclasses hold ``config``, ``in_size``, ``style_channels``, ``encoder`` (RRDB stage first,
    then the blocks down to 4x4 and the latent head), ``fusion_out``, ``decoder``, and say how the
    bank starts (``_bank_constant``) and which styled layers it runs (``_bank_layers``, each
    called as ``layer(x, w)``: conv1, then up-sampling and plain convs in turn).
    """

    config: GLEANConfig
    in_size: int
    style_channels: int

    def check_input(self, x: torch.Tensor) -> None:
        if torch.jit.is_tracing():  # the trace fixes the shape
            return
        c, s = self.config.img_channels, self.in_size
        if x.ndim != 4 or x.shape[1] != c or x.shape[-2:] != (s, s):
            raise ValueError(f"GLEAN expects input of shape (N, {c}, {s}, {s}), got {tuple(x.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, C, in, in) [-1, 1] -> (N, C, out, out), raw (not clamped), as upstream."""
        self.check_input(x)
        if not self.config.latent_bank:
            return self._decode(self.encoder[0](x), None)
        feats = [x]
        for block in self.encoder:
            feats.append(block(feats[-1]))
        latent = feats[-1].view(x.shape[0], -1, self.style_channels)
        enc = feats[-2:0:-1]  # 4x4 first, in_size last
        outs = self._bank_features(latent, enc, x.dtype)
        return self._decode(enc[-1], outs[len(self.fusion_out):])  # the bank's features above in_size

    def _bank_features(self, latent: torch.Tensor, enc: list[torch.Tensor], dtype: torch.dtype) -> list[torch.Tensor]:
        """The bank driven by ``latent``, fused with ``enc`` at every resolution <= in_size, its
        constant input in ``dtype`` (the input's). Returns the output of conv1 and of every
        (up-sampling, plain) pair, 4x4 first."""
        conv1, *convs = self._bank_layers()
        out = conv1(self._bank_constant(latent.shape[0], dtype), latent[:, 0])
        outs = [out]
        for j, (up_conv, conv) in enumerate(zip(convs[::2], convs[1::2])):
            if j < len(self.fusion_out):
                out = self.fusion_out[j](torch.cat([out, enc[j]], dim=1))
            out = up_conv(out, latent[:, 2 * j + 1])
            out = conv(out, latent[:, 2 * j + 2])
            outs.append(out)
        return outs

    def _decode(self, hr: torch.Tensor, bank_feats: list[torch.Tensor] | None) -> torch.Tensor:
        """From ``in_size`` up, concatenating each bank feature (zeros for the no-bank ablation)."""
        for i, block in enumerate(self.decoder):
            if i > 0:
                hr = torch.cat([hr, torch.zeros_like(hr) if bank_feats is None else bank_feats[i - 1]], dim=1)
            hr = block(hr)
        return hr

    def _bank_constant(self, batch: int, dtype: torch.dtype) -> torch.Tensor:
        raise NotImplementedError

    def _bank_layers(self) -> Sequence[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
        raise NotImplementedError


class GLEANStyleGANv2(GLEANFlow):
    """GLEAN generator with MMEditing's constructor arguments and state-dict layout.

    ``forward(x)``: x (N, img_channels, in_size, in_size), RGB in [-1, 1] ->
    (N, img_channels, out_size, out_size), raw (not clamped), as upstream.
    ``channel_max`` is a gleansr extension for small models (512 = upstream); so is
    ``latent_bank`` (False: the encoder-decoder ablation, see the module docstring).
    :meth:`from_config` builds it from a :class:`GLEANConfig`.
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
        self.config = GLEANConfig(in_size=in_size, out_size=out_size, img_channels=img_channels,
                                  rrdb_channels=rrdb_channels, num_rrdbs=num_rrdbs, style_channels=style_channels,
                                  num_mlps=num_mlps, channel_multiplier=channel_multiplier,
                                  blur_kernel=tuple(blur_kernel), lr_mlp=lr_mlp, channel_max=channel_max,
                                  latent_bank=bool(latent_bank))  # validates
        self.generator = StyleGAN2Generator.from_config(self.config.bank)
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

    @classmethod
    def from_config(cls, config: GLEANConfig) -> "GLEANStyleGANv2":
        return cls(**config.to_dict())

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

    def _bank_constant(self, batch: int, dtype: torch.dtype) -> torch.Tensor:
        return self.generator.constant_input(batch).to(dtype)

    def _bank_layers(self) -> list[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
        g = self.generator
        return [functools.partial(layer, noise=noise) for layer, noise in zip([g.conv1, *g.convs], g.injected_noises())]

    def _bank_features(self, latent: torch.Tensor, enc: list[torch.Tensor], dtype: torch.dtype) -> list[torch.Tensor]:
        outs = super()._bank_features(latent, enc, dtype)
        if self.impl == "ref":  # upstream computes the RGB branch too (it never reaches the output)
            self._rgb_branch(outs, latent, enc)
        return outs

    def _rgb_branch(self, outs: list[torch.Tensor], latent: torch.Tensor, enc: list[torch.Tensor]) -> torch.Tensor:
        """Upstream's RGB image of the bank (``to_rgb*``, ``fusion_skip*``), from the bank's features."""
        g = self.generator
        skip = g.to_rgb1(outs[0], latent[:, 1])
        for j, (out, to_rgb) in enumerate(zip(outs[1:], g.to_rgbs)):
            if j < len(self.fusion_skip):
                skip = self.fusion_skip[j](torch.cat([skip, enc[j]], dim=1))
            skip = to_rgb(out, latent[:, 2 * j + 3], skip)
        return skip

    def fused(self, target: FuseTarget) -> "FusedGLEAN":
        """The frozen inference form (same function as ``set_impl("ref")``, RGB branch skipped)."""
        return FusedGLEAN(self, target)


class _NoInitOnMeta(TorchFunctionMode):
    """Skips in-place initialisers (``uniform_``, ``normal_``, ``mul_``, ...) on meta tensors:
    run on "meta" they go through PyTorch's Python decompositions, which cost seconds to import."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name.endswith("_") and not name.endswith("__") and args and isinstance(args[0], torch.Tensor) \
                and args[0].is_meta:
            return args[0]
        return func(*args, **(kwargs or {}))


def build_uninitialised(config: GLEANConfig, device: str | torch.device = "cpu") -> GLEANStyleGANv2:
    """A :class:`GLEANStyleGANv2` whose weights are about to be loaded, built without random init.

    Random initialisation of the full-size models costs seconds (tens on a busy machine); here the
    model is built on the ``meta`` device and its storage allocated on ``device`` afterwards.
    Parameters and buffers hold whatever memory held: load a complete state dict into it,
    strictly (``load_state_dict(..., strict=True)``; the loaders do), before anything else.
    """
    with torch.device("meta"), _NoInitOnMeta():
        model = GLEANStyleGANv2.from_config(config)
    return model.to_empty(device=device)


class FusedGLEAN(GLEANFlow):
    """A :class:`GLEANStyleGANv2`'s fused inference form, built by walking the model with
    :func:`~gleansr.models.fused.fuse`; it runs the same :class:`GLEANFlow` forward.

    x (N, C, in, in) [-1, 1], any float dtype -> (N, C, out, out) float32 (float64 for a float64
    target). Later changes to the source model are not seen: fuse it again.
    """

    def __init__(self, model: GLEANStyleGANv2, target: FuseTarget):
        super().__init__()
        self.config, self.target = model.config, target
        self.in_size, self.out_size, self.style_channels = model.in_size, model.out_size, model.style_channels
        self.decoder = fuse(model.decoder, target)
        if model.config.latent_bank:
            self.encoder = fuse(model.encoder, target)
            self.fusion_out = fuse(model.fusion_out, target)
            self.bank = model.generator.fused_synthesis(target)
        else:  # the ablation reads only the RRDB trunk and the decoder
            self.encoder = nn.ModuleList([fuse(model.encoder[0], target)])
        self.requires_grad_(False)

    def _bank_constant(self, batch: int, dtype: torch.dtype) -> torch.Tensor:
        return self.bank.constant(batch)

    def _bank_layers(self) -> nn.ModuleList:
        return self.bank.layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(self.target.activation(x))
        return y.to(self.target.style_dtype).contiguous()
