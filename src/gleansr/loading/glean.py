"""GLEAN generators from any file: MMEditing releases, gleansr safetensors, bare state dicts,
training checkpoints and run folders. The architecture comes from the file (stored config, else
read off the keys and shapes), and loading is strict."""
from __future__ import annotations

import os

import torch

from ..errors import CheckpointError
from ..models.glean import GLEANConfig, GLEANStyleGANv2, build_uninitialised
from .identify import Loaded, inspect
from .strict import load_state_dict_strict


def _require_glean(found: Loaded) -> Loaded:
    if found.is_glean:
        return found
    use = "a bank training run: its bank file is bank.safetensors" if found.kind == "training-checkpoint" else (
        "use it with `gleansr train --bank` or `gleansr convert`")
    raise CheckpointError(f"{found.path} is a StyleGAN2 bank ({found.describe()}), not a GLEAN model; {use}")


def load_glean_state(path: str | os.PathLike) -> tuple[GLEANConfig, dict[str, torch.Tensor]]:
    """(config, bare generator state dict) of any GLEAN file or run folder, without building a model.

    What ``gleansr train --init PATH`` starts from (as MMagic's ``load_from``).
    """
    found = _require_glean(inspect(path))
    return found.config, dict(found.weights)


def build_glean(found: Loaded) -> GLEANStyleGANv2:
    """The GLEAN generator a :class:`Loaded` describes, loaded strictly, in eval mode."""
    found = _require_glean(found)
    model = build_uninitialised(found.config)  # weights are loaded next: no random init
    load_state_dict_strict(model, found.weights, str(found.path))
    return model.eval()


def load_glean(path: str | os.PathLike) -> GLEANStyleGANv2:
    """Build and strictly load a GLEAN generator from any GLEAN file, training checkpoint or run folder."""
    return build_glean(inspect(path))
