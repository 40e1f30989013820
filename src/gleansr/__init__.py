"""gleansr: GLEAN (Generative Latent Bank) large-factor super-resolution.

Public API::

    from gleansr import Upscaler, create_model, load_model
    up = Upscaler("glean_glyphs_8x")          # a zoo name, a weights file or a module
    model = load_model("glean_glyphs_8x")     # a ready GLEANStyleGANv2 (zoo name or any file)

The names are loaded on first use, so ``import gleansr`` (and the command line's ``--help``)
does not import PyTorch.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it (imported when the name is first used)
_LAZY = {
    "GleanError": "gleansr.errors",
    "Upscaler": "gleansr.pipeline.upscaler",
    "create_model": "gleansr.zoo",
    "load_model": "gleansr.zoo",
    "GLEANConfig": "gleansr.models",
    "GLEANStyleGANv2": "gleansr.models",
    "StyleGAN2Discriminator": "gleansr.models",
    "StyleGAN2Generator": "gleansr.models",
    "load_checkpoint": "gleansr.loading",
    "ZOO": "gleansr.zoo",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'gleansr' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
