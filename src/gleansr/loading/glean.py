"""GLEAN generators from any file: MMEditing releases, gleansr safetensors, bare state dicts,
training checkpoints and run folders. The architecture comes from the file (stored config, else
read off the keys and shapes), and loading is strict."""
from __future__ import annotations

import os

import torch

from ..errors import CheckpointError
from ..models.glean import GLEANConfig, GLEANStyleGANv2, build_uninitialised
from .identify import Loaded, inspect
from .strict import check_finite, load_state_dict_strict


def _require_glean(found: Loaded) -> Loaded:
    if found.is_glean:
        return found
    use = "a bank training run: its bank file is bank.safetensors" if found.kind == "training-checkpoint" else (
        "use it with `gleansr train --bank` or `gleansr convert`")
    raise CheckpointError(f"{found.path} is a StyleGAN2 bank ({found.describe()}), not a GLEAN model; {use}")


def load_glean_state(path: str | os.PathLike, allow_nonfinite: bool = False
                     ) -> tuple[GLEANConfig, dict[str, torch.Tensor]]:
    """(config, bare generator state dict) of any GLEAN file or run folder, without building a model.

    Non-finite weights are refused unless ``allow_nonfinite``.
    """
    found = _require_glean(inspect(path))
    if not allow_nonfinite:
        check_finite(found.weights, str(found.path))
    return found.config, dict(found.weights)


def build_glean(found: Loaded, allow_nonfinite: bool = False) -> GLEANStyleGANv2:
    """The GLEAN generator a :class:`Loaded` describes, loaded strictly, in eval mode (non-finite
    weights refused unless ``allow_nonfinite``)."""
    found = _require_glean(found)
    if not allow_nonfinite:
        check_finite(found.weights, str(found.path))
    model = build_uninitialised(found.config)  # weights are loaded next: no random init
    load_state_dict_strict(model, found.weights, str(found.path))
    return model.eval()


def load_glean(path: str | os.PathLike, allow_nonfinite: bool = False) -> GLEANStyleGANv2:
    """Build and strictly load a GLEAN generator from any GLEAN file, training checkpoint or run folder.

    What the config says is checked as data and against the file's tensors before anything is built.
    """
    return build_glean(inspect(path), allow_nonfinite)
