"""Low-level ops of StyleGAN2/GLEAN.

Every op takes ``impl="auto" | "ref" | "fast"``: ``ref`` is a plain, obviously-correct
implementation that mirrors the upstream computation step by step (the oracle of the
tests); ``fast`` computes the same function with fewer or cheaper kernels. ``auto``
picks ``fast``. Nothing is compiled at import time.
"""
from .bias_act import bias_leaky_relu
from .modulated_conv import modulated_conv2d
from .upfirdn2d import upfirdn2d

IMPLS = ("auto", "ref", "fast")

__all__ = ["IMPLS", "bias_leaky_relu", "modulated_conv2d", "upfirdn2d"]
