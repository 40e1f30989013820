"""Batch super-resolution on Ray Data (``pip install 'gleansr[ray]'``): one model per actor, the
same per-item code as ``gleansr upscale`` (:func:`gleansr.pipeline.batch.run_items`), a manifest.

``from gleansr.ray import upscale_dataset``; the CLI is ``gleansr upscale ... --engine ray``.
Importing this package imports neither Ray nor torch; :func:`upscale_dataset` does.
"""
from __future__ import annotations

from typing import Any

__all__ = ["upscale_dataset"]


def __getattr__(name: str) -> Any:
    if name == "upscale_dataset":
        from .engine import upscale_dataset

        return upscale_dataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
