"""gleansr: GLEAN (Generative Latent Bank) large-factor super-resolution.

Public API::

    from gleansr import GLEANStyleGANv2, StyleGAN2Discriminator, load_checkpoint, create_model
"""
from .loading import load_checkpoint
from .models import GLEANConfig, GLEANStyleGANv2, StyleGAN2Discriminator, StyleGAN2Generator
from .zoo import ZOO, create_model, load_model

__version__ = "0.1.0"

__all__ = [
    "GLEANConfig",
    "GLEANStyleGANv2",
    "StyleGAN2Discriminator",
    "StyleGAN2Generator",
    "ZOO",
    "create_model",
    "load_checkpoint",
    "load_model",
]
