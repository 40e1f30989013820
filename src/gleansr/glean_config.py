"""The architecture of a GLEAN generator as plain data: torch-free, so that the zoo, the command
line's argument parsing and ONNX deployments can read a model's facts without PyTorch."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping


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

    def bank_kwargs(self) -> dict[str, Any]:
        """The latent bank's ``StyleGAN2Generator`` arguments: the fields GLEAN shares with its bank."""
        return {"out_size": self.out_size, "style_channels": self.style_channels, "num_mlps": self.num_mlps,
                "channel_multiplier": self.channel_multiplier, "blur_kernel": list(self.blur_kernel),
                "lr_mlp": self.lr_mlp, "channel_max": self.channel_max}

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
