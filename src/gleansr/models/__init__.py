"""The networks: StyleGAN2 (bank and discriminator), RRDB, GLEAN."""
from .discriminator import StyleGAN2Discriminator
from .glean import GLEANConfig, GLEANStyleGANv2
from .rrdb import RRDBFeatureExtractor
from .stylegan2 import StyleGAN2Generator

__all__ = ["GLEANConfig", "GLEANStyleGANv2", "RRDBFeatureExtractor", "StyleGAN2Discriminator", "StyleGAN2Generator"]
