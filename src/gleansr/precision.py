"""The one table of compute precisions (torch-free, so command-line parsers can import it)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import GleanError

if TYPE_CHECKING:
    import torch

PRECISIONS = ("fp32", "bf16", "fp16")
AUTO = "auto"
CHOICES = (AUTO, *PRECISIONS)  # what a user may ask for: "auto" resolves to one of PRECISIONS
BF16_MIN_PSNR = 50.0  # dB against fp32: below it, or unmeasured, "auto" keeps fp32
_TORCH_NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


class PrecisionError(GleanError, ValueError):
    """An unknown precision name (a ValueError too, for callers that validate arguments)."""


def check_precision(name: str) -> str:
    """``name`` if it is a known precision, else a one-line :class:`PrecisionError`."""
    if name not in PRECISIONS:
        raise PrecisionError(f"precision must be one of {', '.join(PRECISIONS)}, got {name!r}")
    return name


def resolve_precision(name: str, device_type: str, bf16_psnr: float | None,
                      cuda_capability: tuple[int, int] | None = None) -> tuple[str, str | None]:
    """``(precision, reason)``: ``name`` itself (reason None), or for ``"auto"`` the fastest
    precision that is known to hold up for this model on this hardware, and why, in one line."""
    if name != AUTO:
        return check_precision(name), None
    from .hardware import choose_precision

    chosen, reason = choose_precision(device_type, cuda_capability=cuda_capability)
    if chosen == "bf16" and (bf16_psnr is None or bf16_psnr < BF16_MIN_PSNR):
        known = "has not been measured" if bf16_psnr is None else f"is {bf16_psnr:g} dB"
        return "fp32", (f"fp32: {reason.split(': ', 1)[1].split(' (')[0]}, but this model's bf16 output against "
                        f"fp32 {known} (bf16 needs >= {BF16_MIN_PSNR:g} dB; --precision bf16 to use it anyway)")
    return chosen, reason


def torch_dtype(name: str) -> "torch.dtype":
    """The torch dtype of a precision name ("fp32" -> torch.float32); imports torch on first use."""
    import torch

    return getattr(torch, _TORCH_NAMES[check_precision(name)])
