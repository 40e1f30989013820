"""MMGeneration / MMEditing StyleGAN2 weights and gleansr bank checkpoints: the keys are ours.

Layout: ``{'state_dict': {'generator_ema.<key>', 'generator.<key>', 'discriminator.<key>'},
'meta': {...}}`` (a bare flat dict with those prefixes, e.g. from safetensors, works too).
The EMA generator is the one sampled from and plugged into GLEAN; the raw ``generator.`` copy
is used only when a file has no EMA copy. gleansr bank checkpoints record both networks'
constructor arguments in ``meta['gleansr_bank']``; for other files they are read off the shapes.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from ..arch import DiscriminatorConfig, StyleGAN2Config
from ..models.discriminator import StyleGAN2Discriminator
from ..models.stylegan2 import StyleGAN2Generator
from .configs import check_sizes, checked, infer_discriminator_config, infer_generator_config
from .rules import Rule, apply_rules

BANK_META_KEY = "gleansr_bank"
_MARKER = "constant_input.input"


def _state_and_meta(obj: Mapping) -> tuple[Mapping, Mapping]:
    if isinstance(obj.get("state_dict"), Mapping):
        meta = obj.get("meta")
        return obj["state_dict"], meta if isinstance(meta, Mapping) else {}
    return obj, {}


def detect(obj: Any) -> bool:
    if not isinstance(obj, Mapping):
        return False
    state, _ = _state_and_meta(obj)
    return any(f"{prefix}{_MARKER}" in state for prefix in ("generator_ema.", "generator."))


def _under(state: Mapping[str, Any], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _identity_rules(module_cls: Any, config: StyleGAN2Config | DiscriminatorConfig) -> list[Rule]:
    """One rule per key of the module (built on the meta device: keys and shapes only)."""
    with torch.device("meta"):
        keys = module_cls.from_config(config).state_dict().keys()
    return [Rule(k, k) for k in keys]


def _config(saved: Any, parse: Any, infer: Any, source: Mapping[str, torch.Tensor], what: str) -> Any:
    """The recorded architecture (validated, held against the tensors) or the one read off the shapes."""
    if not saved:
        return infer(source)
    config = checked(lambda: parse(saved), f"invalid {BANK_META_KEY!r} {what} metadata")
    check_sizes(source, config.state_size(), f"{BANK_META_KEY!r} {what} metadata")
    return config


def convert(obj: Mapping) -> tuple[dict, dict | None, dict]:
    state, meta = _state_and_meta(obj)
    # Every key must sit under one of the three networks; the raw generator is a training copy.
    apply_rules([], state, ignored=[r"generator_ema\..*", r"generator\..*", r"discriminator\..*"],
                what="MMGeneration state dict")
    g_prefix = "generator_ema." if f"generator_ema.{_MARKER}" in state else "generator."
    saved = meta.get(BANK_META_KEY) or {}
    saved = saved if isinstance(saved, Mapping) else {"generator": saved}  # a forged value fails below
    g_source = _under(state, g_prefix)
    g_config = _config(saved.get("generator"), StyleGAN2Config.from_dict, infer_generator_config, g_source,
                       "generator")
    generator = apply_rules(_identity_rules(StyleGAN2Generator, g_config), g_source, what=f"{g_prefix}*")
    d_source = _under(state, "discriminator.")
    discriminator = d_config = None
    if d_source:
        d_config = _config(saved.get("discriminator"), DiscriminatorConfig.from_dict, infer_discriminator_config,
                           d_source, "discriminator")
        discriminator = apply_rules(_identity_rules(StyleGAN2Discriminator, d_config), d_source,
                                    what="discriminator.*")
    return generator, discriminator, {"generator": g_config, "discriminator": d_config}
