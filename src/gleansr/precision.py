"""The one table of compute precisions (torch-free, so command-line parsers can import it)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import GleanError

if TYPE_CHECKING:
    import torch

PRECISIONS = ("fp32", "bf16", "fp16")
_TORCH_NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


class PrecisionError(GleanError, ValueError):
    """An unknown precision name (a ValueError too, for callers that validate arguments)."""


def check_precision(name: str) -> str:
    """``name`` if it is a known precision, else a one-line :class:`PrecisionError`."""
    if name not in PRECISIONS:
        raise PrecisionError(f"precision must be one of {', '.join(PRECISIONS)}, got {name!r}")
    return name


def torch_dtype(name: str) -> "torch.dtype":
    """The torch dtype of a precision name ("fp32" -> torch.float32); imports torch on first use."""
    import torch

    return getattr(torch, _TORCH_NAMES[check_precision(name)])
