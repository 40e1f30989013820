"""StyleGAN2's architecture as typed, torch-free data: the generator (GLEAN's latent bank) and the
discriminator, each validated once when built.

Every network of gleansr is built from one of these (or from a :class:`~gleansr.glean_config.GLEANConfig`,
which holds its bank's :class:`StyleGAN2Config`); files store their ``to_dict()`` and are read back
with ``from_dict()``, which takes nothing on trust: types, ranges and powers of two are checked, and
:meth:`StyleGAN2Config.state_size` (the number of values a state dict of this architecture holds,
computed without building anything) lets a loader hold a file's metadata against its tensors before
any module exists.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

# Upstream StyleGAN2 widths per resolution (config-f: 512 up to 32 px, then halving).
UPSTREAM_CHANNELS = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}
MAX_SIZE = 4096  # the largest resolution the channel table knows
RRDB_GROWTH = 32  # the dense blocks' growth width (upstream's, fixed)


class ArchError(ValueError):
    """An architecture that cannot be built (the message names the field and the value)."""


def is_power_of_two(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


def check_int(name: str, value: Any, low: int, high: int, power_of_two: bool = False) -> int:
    """``value`` as an int in [low, high] (a power of two if asked); ArchError naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArchError(f"{name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise ArchError(f"{name} must be between {low} and {high}, got {value}")
    if power_of_two and not is_power_of_two(value):
        raise ArchError(f"{name} must be a power of two, got {value}")
    return value


def check_number(name: str, value: Any, low: float, high: float) -> float | int:
    """A finite real in (low, high]; ints stay ints (2, not 2.0, in stored configs)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ArchError(f"{name} must be a finite number, got {value!r}")
    if not low < value <= high:
        raise ArchError(f"{name} must be above {low:g} and at most {high:g}, got {value}")
    return int(value) if float(value).is_integer() else float(value)


def check_taps(value: Any) -> tuple[float, ...]:
    """FIR taps: 2 to 16 finite numbers with a non-zero sum."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ArchError(f"blur_kernel must be a list of numbers, got {value!r}")
    taps = tuple(check_number("blur_kernel", v, -1e6, 1e6) for v in value)
    if not 2 <= len(taps) <= 16 or sum(taps) == 0:
        raise ArchError(f"blur_kernel must hold 2 to 16 taps with a non-zero sum, got {list(taps)}")
    return taps


def channel_table(channel_multiplier: float = 2, channel_max: int = 512) -> dict[int, int]:
    """Feature width per resolution: upstream's table, optionally capped at ``channel_max``.

    Upstream: 512 up to 32 px, then ``(256, 128, 64, 32, 16) * channel_multiplier`` for 64..1024 px.
    ``channel_max < 512`` makes small banks possible (not upstream).
    """
    table = {}
    for res, base in UPSTREAM_CHANNELS.items():
        width = base if res <= 32 else int(base * channel_multiplier)
        table[res] = min(width, channel_max)
    for res in (2048, 4096):
        table[res] = min(int(8 * channel_multiplier * 4096 // res), channel_max)
    return table


def _check_widths(table: Mapping[int, int], sizes: range | list[int]) -> None:
    thin = [res for res in sizes if table[res] < 1]
    if thin:
        raise ArchError(f"channel_multiplier leaves no channels at {thin[0]} px")


def known_fields(cls: type, data: Any, what: str) -> dict[str, Any]:
    """``data`` (from a file) as keyword arguments of dataclass ``cls``: a mapping with known keys only."""
    if not isinstance(data, Mapping):
        raise ArchError(f"{what} must be a table of fields, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(str(k) for k in set(data) - known)
    if unknown:
        raise ArchError(f"unknown {what} keys: {', '.join(unknown)}")
    return dict(data)


def conv_size(c_in: int, c_out: int, k: int, bias: bool = True) -> int:
    """Values of a ``k`` x ``k`` convolution's weight (and bias)."""
    return c_in * c_out * k * k + (c_out if bias else 0)


def _styled_conv(c_in: int, c_out: int, k: int, style: int) -> int:
    """Modulated conv (weight, style linear + bias), then noise weight and activation bias."""
    return c_out * c_in * k * k + style * c_in + c_in + 1 + c_out


def _to_rgb(c_in: int, style: int) -> int:
    return 3 * c_in + style * c_in + c_in + 3


@dataclass(frozen=True, kw_only=True)
class StyleGAN2Config:
    """A StyleGAN2 generator (config-f defaults): GLEAN's latent bank, or a bank on its own."""

    out_size: int
    style_channels: int = 512
    num_mlps: int = 8
    channel_multiplier: float = 2
    blur_kernel: tuple[float, ...] = (1, 3, 3, 1)
    lr_mlp: float = 0.01
    channel_max: int = 512

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        check_int("out_size", self.out_size, 8, MAX_SIZE, power_of_two=True)
        check_int("style_channels", self.style_channels, 1, 4096)
        check_int("num_mlps", self.num_mlps, 0, 64)
        set_(self, "channel_multiplier", check_number("channel_multiplier", self.channel_multiplier, 0, 64))
        set_(self, "blur_kernel", check_taps(self.blur_kernel))
        set_(self, "lr_mlp", check_number("lr_mlp", self.lr_mlp, 0, 1e3))
        check_int("channel_max", self.channel_max, 1, 4096)
        _check_widths(self.channels, [2**i for i in range(2, self.log_size + 1)])

    @property
    def log_size(self) -> int:
        return self.out_size.bit_length() - 1

    @property
    def channels(self) -> dict[int, int]:
        return channel_table(self.channel_multiplier, self.channel_max)

    @property
    def num_latents(self) -> int:
        """Per-layer latents the synthesis network reads."""
        return 2 * self.log_size - 2

    def parameter_count(self) -> int:
        """Trainable values of the generator (mapping, constant input, styled convs, RGB branch)."""
        ch, s = self.channels, self.style_channels
        total = self.num_mlps * (s * s + s) + ch[4] * 16 + _styled_conv(ch[4], ch[4], 3, s) + _to_rgb(ch[4], s)
        c_in = ch[4]
        for i in range(3, self.log_size + 1):
            c = ch[2**i]
            total += _styled_conv(c_in, c, 3, s) + _styled_conv(c, c, 3, s) + _to_rgb(c, s)
            c_in = c
        return total

    def state_size(self) -> int:
        """Values of a state dict: parameters, the fixed noise maps and the up-sampling FIR kernels."""
        noises = sum(4 ** ((i + 5) // 2) for i in range(self.num_latents - 1))
        kernels = 2 * (self.log_size - 2) * len(self.blur_kernel) ** 2
        return self.parameter_count() + noises + kernels

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "blur_kernel": list(self.blur_kernel)}

    @classmethod
    def from_dict(cls, data: Any) -> "StyleGAN2Config":
        return cls(**known_fields(cls, data, "StyleGAN2 generator config"))

    @classmethod
    def from_run_config(cls, config: Mapping[str, Any]) -> "StyleGAN2Config":
        """The generator of a bank training run's config: its ``size`` and the StyleGAN2 fields it sets."""
        if "size" not in config:
            raise ArchError("a bank run's config must give its image size ('size')")
        names = {f.name for f in dataclasses.fields(cls)} - {"out_size"}
        return cls(out_size=config["size"], **{k: config[k] for k in names if k in config})

    def describe(self) -> str:
        return (f"{self.out_size} px, style {self.style_channels}, {self.num_mlps} mapping layers, "
                f"channel multiplier {self.channel_multiplier}, channel max {self.channel_max}")


@dataclass(frozen=True, kw_only=True)
class DiscriminatorConfig:
    """A StyleGAN2 discriminator (residual, minibatch standard deviation over groups of
    ``mbstd_group_size`` images, ``mbstd_channel_groups`` extra channels).

    Stored as upstream spells it: ``mbstd_cfg: {group_size, channel_groups}``.
    """

    in_size: int
    channel_multiplier: float = 2
    blur_kernel: tuple[float, ...] = (1, 3, 3, 1)
    mbstd_group_size: int = 4
    mbstd_channel_groups: int = 1
    channel_max: int = 512

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        check_int("in_size", self.in_size, 8, MAX_SIZE, power_of_two=True)
        set_(self, "channel_multiplier", check_number("channel_multiplier", self.channel_multiplier, 0, 64))
        set_(self, "blur_kernel", check_taps(self.blur_kernel))
        check_int("mbstd group_size", self.mbstd_group_size, 1, 1024)
        check_int("mbstd channel_groups", self.mbstd_channel_groups, 1, 4096)
        check_int("channel_max", self.channel_max, 1, 4096)
        sizes = [2**i for i in range(2, self.in_size.bit_length())]
        _check_widths(self.channels, sizes)
        if self.channels[4] % self.mbstd_channel_groups:
            raise ArchError(f"mbstd channel_groups {self.mbstd_channel_groups} must divide the 4 px width "
                            f"{self.channels[4]}")

    @property
    def channels(self) -> dict[int, int]:
        return channel_table(self.channel_multiplier, self.channel_max)

    @property
    def mbstd_cfg(self) -> dict[str, int]:
        return {"group_size": self.mbstd_group_size, "channel_groups": self.mbstd_channel_groups}

    def parameter_count(self) -> int:
        ch, log_size = self.channels, self.in_size.bit_length() - 1
        total = conv_size(3, ch[self.in_size], 1)
        for i in range(log_size, 2, -1):
            c_in, c_out = ch[2**i], ch[2 ** (i - 1)]
            total += conv_size(c_in, c_in, 3) + conv_size(c_in, c_out, 3) + conv_size(c_in, c_out, 1, bias=False)
        total += conv_size(ch[4] + self.mbstd_channel_groups, ch[4], 3)
        return total + 16 * ch[4] * ch[4] + ch[4] + ch[4] + 1

    def state_size(self) -> int:
        """Values of a state dict: parameters and two down-sampling FIR kernels per block."""
        blocks = self.in_size.bit_length() - 3
        return self.parameter_count() + 2 * blocks * len(self.blur_kernel) ** 2

    def to_dict(self) -> dict[str, Any]:
        return {"in_size": self.in_size, "channel_multiplier": self.channel_multiplier,
                "blur_kernel": list(self.blur_kernel), "mbstd_cfg": self.mbstd_cfg, "channel_max": self.channel_max}

    @classmethod
    def from_dict(cls, data: Any) -> "DiscriminatorConfig":
        """From ``to_dict()`` (or upstream's ``mbstd_cfg`` with some keys left out)."""
        fields = dict(data) if isinstance(data, Mapping) else data
        if isinstance(fields, dict) and "mbstd_cfg" in fields:
            mbstd = fields.pop("mbstd_cfg")
            if not isinstance(mbstd, Mapping) or set(mbstd) - {"group_size", "channel_groups"}:
                raise ArchError(f"mbstd_cfg must be a table of group_size and channel_groups, got {mbstd!r}")
            fields.update({f"mbstd_{k}": v for k, v in mbstd.items()})
        return cls(**known_fields(cls, fields, "StyleGAN2 discriminator config"))

    @classmethod
    def matching(cls, generator: StyleGAN2Config, mbstd_group_size: int = 4) -> "DiscriminatorConfig":
        """The discriminator for ``generator``'s images: same size, widths and blur (upstream's pairing)."""
        return cls(in_size=generator.out_size, channel_multiplier=generator.channel_multiplier,
                   blur_kernel=generator.blur_kernel, mbstd_group_size=mbstd_group_size,
                   channel_max=generator.channel_max)
