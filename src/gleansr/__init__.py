"""gleansr: GLEAN (Generative Latent Bank) large-factor super-resolution.

Public API::

    from gleansr import GLEANStyleGANv2, StyleGAN2Discriminator, load_checkpoint, create_model

The names are imported on first use, so that ``import gleansr.<torch-free module>`` (the ONNX
Runtime path: images, resizing, the ONNX runner) works where PyTorch is not installed.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> the module that defines it
_LAZY = {
    "load_checkpoint": ".checkpoints",
    "GLEANConfig": ".models",
    "GLEANStyleGANv2": ".models",
    "StyleGAN2Discriminator": ".models",
    "StyleGAN2Generator": ".models",
    "PRESETS": ".presets",
    "create_model": ".presets",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'gleansr' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
