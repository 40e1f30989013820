"""StyleGAN2 latent banks: sample one (:mod:`.sample`), augment its training images (:mod:`.augment`), plug
one into GLEAN; training one is :mod:`gleansr.train.bank`.

A bank file is anything :func:`gleansr.convert.load_bank` reads: MMGeneration official weights,
gleansr bank checkpoints (``bank.pth``), exported safetensors (``bank.safetensors`` with its
``bank.discriminator.safetensors``), rosinality ``.pt`` and NVIDIA ``.pkl`` files.
"""
from __future__ import annotations

import os

import torch

from ..checkpoints import load_state_dict_strict
from ..convert import load_bank
from ..errors import CheckpointError
from ..models.glean import GLEANStyleGANv2
from ..models.stylegan2 import StyleGAN2Generator

__all__ = ["init_glean_from_bank", "load_bank_generator"]


def load_bank_generator(path: str | os.PathLike, fmt: str = "auto") -> StyleGAN2Generator:
    """The bank's (EMA) generator, built from the file's config and loaded strictly, in eval mode."""
    return load_bank(path, fmt).build_generator(str(path)).eval()


def init_glean_from_bank(glean: GLEANStyleGANv2, bank_path: str | os.PathLike,
                         fmt: str = "auto") -> dict[str, torch.Tensor] | None:
    """Load a bank's generator into ``glean.generator``; return its discriminator state, if any.

    The returned state dict (our layout) initialises GLEAN's discriminator, as upstream starts
    it from the StyleGAN2 discriminator: ``load_state_dict_strict(D, state)``.
    """
    weights = load_bank(bank_path, fmt)
    cfg, want = weights.generator_config, glean.config
    for name in ("out_size", "style_channels", "num_mlps"):
        if cfg[name] != getattr(want, name):
            raise CheckpointError(f"{bank_path}: the bank has {name}={cfg[name]}, this GLEAN needs "
                                  f"{getattr(want, name)}")
    load_state_dict_strict(glean.generator, weights.generator, f"{bank_path} (bank generator)")
    return weights.discriminator
