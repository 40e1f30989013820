"""Strict loading: every key of a module filled exactly once, with the right shape, or a one-line error."""
from __future__ import annotations

import os
from typing import Mapping

import torch
import torch.nn as nn

from ..errors import CheckpointError
from .read import read_checkpoint

SAFETENSORS_CONFIG_KEY = "gleansr_config"
SAFETENSORS_ARCH_KEY = "gleansr_arch"
SAFETENSORS_LAYOUT_KEY = "gleansr_layout"  # "bare": keys of one module, no wrapper prefix


def select_prefix(state: Mapping[str, torch.Tensor], prefix: str,
                  path: str | os.PathLike = "checkpoint") -> dict[str, torch.Tensor]:
    """Entries under ``prefix`` with the prefix stripped; an error lists the prefixes present."""
    if not prefix:
        return dict(state)
    out = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not out:
        heads = sorted({k.split(".", 1)[0] + "." for k in state})
        raise CheckpointError(
            f"{path}: no keys start with {prefix!r} (prefixes found: {', '.join(heads[:8])}); "
            "pass the right prefix, e.g. prefix='' for a bare state dict"
        )
    return out


def check_state_dict(module: nn.Module, state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Raise a one-line CheckpointError unless ``state`` fits ``module`` exactly."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise CheckpointError(
            f"{source}: missing key {missing[0]!r}{more}; the model expects shape {tuple(expected[missing[0]].shape)}"
        )
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        raise CheckpointError(f"{source}: unexpected key {unexpected[0]!r}{more} that the model does not have")
    for k, v in expected.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise CheckpointError(
                f"{source}: key {k!r} has shape {tuple(state[k].shape)}, the model expects {tuple(v.shape)}"
            )
        if not state[k].is_floating_point() and v.is_floating_point():
            raise CheckpointError(f"{source}: key {k!r} has dtype {state[k].dtype}, expected a floating-point tensor")


def check_finite(state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """CheckpointError naming ``source`` and the first tensor holding NaN or infinity: such weights
    give black or garbage images without any other sign."""
    for key, value in state.items():
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            continue
        # A NaN or inf makes the sum non-finite; a finite sum (the usual case) costs a tenth of isfinite().
        # A non-finite sum may also be an overflow: the exact test decides.
        if not bool(torch.isfinite(value.sum())) and not bool(torch.isfinite(value).all()):
            kind = "NaN" if bool(torch.isnan(value).any()) else "infinite values"
            raise CheckpointError(f"{source}: tensor {key!r} holds {kind}; refusing non-finite weights "
                                  "(allow_nonfinite=True, or --allow-nonfinite, loads them for forensics)")


def load_state_dict_strict(module: nn.Module, state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> nn.Module:
    """Check then copy ``state`` into ``module`` (values cast to the module's dtypes)."""
    check_state_dict(module, state, source)
    module.load_state_dict(dict(state), strict=True)
    return module


def load_checkpoint(module: nn.Module, path: str | os.PathLike, prefix: str = "generator.") -> nn.Module:
    """Load ``path`` into ``module`` strictly, taking the keys under ``prefix``.

    - MMEditing GLEAN release files: ``prefix="generator."`` (the default);
      the discriminator and perceptual-loss entries are ignored.
    - MMGeneration StyleGAN2 official weights into ``glean.generator``: ``prefix="generator_ema."``.
    - gleansr safetensors files of one network store bare keys: ``prefix`` does not apply.
    """
    state, meta = read_checkpoint(path)
    if meta.get(SAFETENSORS_LAYOUT_KEY) == "bare":
        prefix = ""
    return load_state_dict_strict(module, select_prefix(state, prefix, path), str(path))
