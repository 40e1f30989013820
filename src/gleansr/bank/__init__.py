"""StyleGAN2 latent banks: sample one (:mod:`.sample`), augment its training images (:mod:`.augment`), plug
one into GLEAN; training one is :mod:`gleansr.train.bank`.

A bank file is anything :func:`gleansr.loading.load_bank` reads: MMGeneration official weights,
gleansr bank checkpoints (``bank.pth``), exported safetensors (``bank.safetensors`` with its
``bank.discriminator.safetensors``), rosinality ``.pt`` and NVIDIA ``.pkl`` files. Reading them
(and :func:`init_glean_from_bank`) lives in :mod:`gleansr.loading`.
"""
from __future__ import annotations

from ..loading import init_glean_from_bank, load_bank_generator

__all__ = ["init_glean_from_bank", "load_bank_generator"]
