"""Helpers shared by the server tests (imported by name: pytest puts this folder on sys.path)."""
from __future__ import annotations

import threading

MODEL = "glean_glyphs_8x"


class Gate:
    """Wraps the real Upscaler; every model run waits until the test opens the gate."""

    def __init__(self, upscaler):
        self.upscaler = upscaler
        self.open = threading.Event()
        self.entered = threading.Event()
        self.batches: list[int] = []

    def upscale_batch(self, images, batch_size):
        self.batches.append(len(images))
        self.entered.set()
        if not self.open.wait(30):
            raise RuntimeError("the test never opened the gate")
        return self.upscaler.upscale_batch(images, batch_size=batch_size)

    def load(self, name, precision):
        return self
