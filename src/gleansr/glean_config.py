"""The architecture of a GLEAN generator as plain data: torch-free, so that the zoo, the command
line's argument parsing and ONNX deployments can read a model's facts without PyTorch.

A :class:`GLEANConfig` validates itself when built (sizes powers of two with ``4 <= in_size <
out_size``, widths and depths in range) and holds its latent bank's architecture as a typed
:class:`~gleansr.arch.StyleGAN2Config` (:attr:`GLEANConfig.bank`). Files store the flat
``to_dict()`` (MMEditing's constructor arguments plus gleansr's extensions).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .arch import (RRDB_GROWTH, DiscriminatorConfig, StyleGAN2Config, check_int, check_number, check_taps,
                   conv_size, known_fields)


@dataclass(frozen=True, kw_only=True)
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
    blur_kernel: tuple[float, ...] = (1, 3, 3, 1)
    lr_mlp: float = 0.01
    channel_max: int = 512
    latent_bank: bool = True

    def __post_init__(self) -> None:
        check_int("in_size", self.in_size, 4, 2048, power_of_two=True)
        check_int("out_size", self.out_size, 8, 4096, power_of_two=True)
        if self.out_size <= self.in_size:
            raise ValueError(f"out_size must be larger than in_size, got {self.in_size} -> {self.out_size}")
        check_int("img_channels", self.img_channels, 1, 4)
        check_int("rrdb_channels", self.rrdb_channels, 1, 1024)
        check_int("num_rrdbs", self.num_rrdbs, 1, 256)
        if not isinstance(self.latent_bank, bool):
            raise ValueError(f"latent_bank must be true or false, got {self.latent_bank!r}")
        object.__setattr__(self, "blur_kernel", check_taps(self.blur_kernel))
        object.__setattr__(self, "channel_multiplier",
                           check_number("channel_multiplier", self.channel_multiplier, 0, 64))
        _ = self.bank  # building the bank's config validates its fields

    @property
    def scale(self) -> int:
        return self.out_size // self.in_size

    @property
    def bank(self) -> StyleGAN2Config:
        """The latent bank's architecture: the fields GLEAN shares with its StyleGAN2."""
        return StyleGAN2Config(out_size=self.out_size, style_channels=self.style_channels, num_mlps=self.num_mlps,
                               channel_multiplier=self.channel_multiplier, blur_kernel=self.blur_kernel,
                               lr_mlp=self.lr_mlp, channel_max=self.channel_max)

    def discriminator(self, mbstd_group_size: int = 4) -> DiscriminatorConfig:
        """The discriminator GLEAN trains against: its bank's (upstream starts it from the StyleGAN2 one)."""
        return DiscriminatorConfig.matching(self.bank, mbstd_group_size)

    def parameter_count(self) -> int:
        """Trainable and frozen parameters of the generator, computed without building it."""
        ch, bank, r = self.bank.channels, self.bank, self.rrdb_channels
        dense = sum(conv_size(r + i * RRDB_GROWTH, r if i == 4 else RRDB_GROWTH, 3) for i in range(5))
        total = conv_size(self.img_channels, r, 3) + 3 * dense * self.num_rrdbs + conv_size(r, r, 3)
        total += conv_size(r, ch[self.in_size], 3)
        encoder_res = [2**i for i in range(self.in_size.bit_length() - 1, 1, -1)]
        for res in encoder_res:
            c = ch[res]
            if res > 4:
                total += conv_size(c, ch[res // 2], 3) + conv_size(ch[res // 2], ch[res // 2], 3)
            else:
                total += conv_size(c, c, 3) + 16 * c * bank.num_latents * bank.style_channels
                total += bank.num_latents * bank.style_channels
            total += conv_size(2 * c, c, 3) + conv_size(c + 3, 3, 3)  # fusion_out, fusion_skip
        res = self.in_size
        while res < self.out_size:
            total += conv_size(ch[res] if res == self.in_size else 2 * ch[res], 4 * ch[res * 2], 3)
            res *= 2
        total += conv_size(2 * ch[self.out_size], 64, 3) + conv_size(64, self.img_channels, 3)
        return total + bank.parameter_count()

    def state_size(self) -> int:
        """Values of a state dict of this generator (its bank's buffers included)."""
        return self.parameter_count() + self.bank.state_size() - self.bank.parameter_count()

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "blur_kernel": list(self.blur_kernel)}

    @classmethod
    def from_dict(cls, d: Any) -> "GLEANConfig":
        """From ``to_dict()``; unknown keys, wrong types and impossible sizes are ValueErrors."""
        return cls(**known_fields(cls, d, "GLEAN config"))
