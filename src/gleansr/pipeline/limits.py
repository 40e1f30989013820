"""How much work one image may cost, judged before the work starts (torch-free).

A compressed image can expand a thousandfold: a 200 KB PNG of 16x5,000,000 pixels decodes to
gigabytes. :class:`Limits` bounds what is decoded (pixels per side and in total, read from the
file's header before any pixel is) and how many decodes run at once (:func:`decode_slot`, one
pool per process that the server and the batch pipeline share). GLEAN's inputs are tiny
(16-64 pixels), so the defaults leave room for whole photos (the face path) and refuse the rest.
How large an area the pipeline may *resize* from is the input policy's rule
(:mod:`gleansr.pipeline.policy`), not this module's.
"""
from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass
from typing import Iterator

from ..errors import ImageError, OutOfMemory

DEFAULT_MAX_PIXELS = 50_000_000  # a 50-megapixel photo: float32 RGB of it is 600 MB
DEFAULT_MAX_SIDE = 16_384  # WebP's own maximum; a longer strip is an attack, not a photo
# large decodes (and resizes) in flight per process: each may take ~1 GB and a whole core, so half
# the cores at most, leaving the rest to the model and to small images
DEFAULT_MAX_DECODES = max(1, min(4, len(os.sched_getaffinity(0)) // 2 if hasattr(os, "sched_getaffinity")
                                 else (os.cpu_count() or 2) // 2))
SMALL_PIXELS = 1 << 20  # a megapixel or less: ~12 MB as float pixels, decoded without waiting for a slot


@dataclass(frozen=True)
class Limits:
    """Bounds on one image's decode. ``max_decodes``: images over ``small_pixels`` decoded (or
    resized) at once in this process; ``hint`` ends the refusal (how to raise the limit, if one can)."""

    max_pixels: int = DEFAULT_MAX_PIXELS
    max_side: int = DEFAULT_MAX_SIDE
    max_decodes: int = DEFAULT_MAX_DECODES
    small_pixels: int = SMALL_PIXELS
    hint: str = ""

    def __post_init__(self) -> None:
        for name in ("max_pixels", "max_side", "max_decodes", "small_pixels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Limits.{name} must be a positive integer, got {value!r}")

    def refusal(self, name: str, width: int, height: int) -> str | None:
        """The one-line refusal of a ``width`` x ``height`` image called ``name``, or None when it fits."""
        pixels = width * height
        if pixels > self.max_pixels:
            why = f"more than the {self.max_pixels:,} pixels"
        elif max(width, height) > self.max_side:
            why = f"longer than the {self.max_side:,} pixels per side"
        else:
            return None
        hint = f"; {self.hint}" if self.hint else ""
        return f"{name} is {width}x{height} ({pixels:,} pixels), {why} allowed{hint}"

    def check(self, name: str, width: int, height: int) -> None:
        """ImageError with :meth:`refusal`'s sentence when the image is over a limit."""
        sentence = self.refusal(name, width, height)
        if sentence:
            raise TooManyPixels(sentence)


class TooManyPixels(ImageError):
    """An image's header says it is larger than the :class:`Limits` allow (nothing was decoded)."""


DEFAULT_LIMITS = Limits()

class _DecodePool:
    """Large decodes in flight in this process, shared by every caller (the server, the batch
    pipeline); each caller waits until fewer than its own ``max_decodes`` are running."""

    def __init__(self) -> None:
        self.running = 0
        self._cond = threading.Condition()

    @contextlib.contextmanager
    def slot(self, ceiling: int) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: self.running < ceiling)
            self.running += 1
        try:
            yield
        finally:
            with self._cond:
                self.running -= 1
                self._cond.notify_all()


_POOL = _DecodePool()


@contextlib.contextmanager
def decode_slot(limits: Limits, pixels: int) -> Iterator[None]:
    """Hold one of ``limits.max_decodes`` process-wide slots while decoding or resizing an image of
    ``pixels`` pixels, so concurrent requests or batch items queue here instead of each allocating
    its own gigabyte; a small image (``limits.small_pixels`` or less) goes at once, never queued
    behind large ones."""
    if pixels <= limits.small_pixels:
        yield
        return
    with _POOL.slot(limits.max_decodes):
        yield


@contextlib.contextmanager
def memory_guard(what: str) -> Iterator[None]:
    """Turn a failed allocation (``MemoryError``, numpy's ``_ArrayMemoryError``) while doing
    ``what`` into :class:`~gleansr.errors.OutOfMemory` with one sentence."""
    try:
        yield
    except MemoryError:
        raise OutOfMemory(f"not enough memory to {what}; retry when less is running, or send a smaller image") \
            from None

