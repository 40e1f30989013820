"""What GLEAN and StyleGAN2-bank training share at run time: seeding, mixed precision, stop
signals, and the error a diverged run ends with."""
from __future__ import annotations

import contextlib
import random
import signal
import sys
from typing import Any

import numpy as np
import torch

from ..errors import GleanError


class TrainingDiverged(GleanError):
    """A loss became NaN or infinite; nothing was saved after the last good checkpoint."""


def check_finite(names, values, iteration: int, last_checkpoint, last_saved: int) -> None:
    """Raise TrainingDiverged naming the first loss in ``values`` that is NaN or infinite."""
    for name, value in zip(names, values):
        if not np.isfinite(value):
            kept = f"{last_checkpoint} (iteration {last_saved})" if last_saved else "none"
            raise TrainingDiverged(f"iteration {iteration}: {name} is {value}; stopped without saving "
                                   f"(last good checkpoint: {kept})")


class StopRequest:
    """SIGINT/SIGTERM set a flag checked once per iteration; a second Ctrl-C interrupts at once."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        print(f"\ngleansr: {signal.Signals(signum).name}: saving after this iteration "
              "(Ctrl-C again to abort without saving)", file=sys.stderr)

    def __enter__(self) -> "StopRequest":
        with contextlib.suppress(ValueError):  # not the main thread: signals stay as they are
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def autocast(precision: str, device: torch.device) -> Any:
    """Autocast for ``bf16``/``fp16``; a no-op context for ``fp32``."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def grad_scaler(precision: str, device: torch.device) -> Any:
    """A GradScaler, active only for fp16 (bf16 has float32's range)."""
    enabled = precision == "fp16"
    if hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler(device.type, enabled=enabled)
    return torch.cuda.amp.GradScaler(enabled=enabled)  # torch < 2.3


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
