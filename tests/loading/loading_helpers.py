"""Small files of every kind the loader reads, written the way their producers write them."""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch

from gleansr.loading import CHECKPOINT_FORMAT
from gleansr.models import GLEANStyleGANv2, StyleGAN2Discriminator, StyleGAN2Generator

import stylegan2_foreign as foreign

# A bank that fits conftest.TINY_GLEAN (32 px, style 16, 2 mapping layers, every width 16).
BANK = dict(out_size=32, style_channels=16, num_mlps=2, channel_max=16)


def release_file(path: Path, glean: GLEANStyleGANv2) -> Path:
    """MMEditing's ``publish_model`` layout: ``meta`` + ``state_dict`` with ``generator.*`` (legacy format)."""
    state = OrderedDict(("generator." + k, v) for k, v in glean.state_dict().items())
    torch.save({"meta": {"mmedit_version": "0.16.1"}, "state_dict": state}, path, _use_new_zipfile_serialization=False)
    return path


def training_checkpoint(folder: Path, glean: GLEANStyleGANv2, iteration: int = 3) -> Path:
    """A GLEAN run folder's ``last.pt`` with the keys ``gleansr train`` writes and export reads."""
    folder.mkdir(parents=True, exist_ok=True)
    c = glean.config
    d = StyleGAN2Discriminator(c.out_size, channel_multiplier=c.channel_multiplier, channel_max=c.channel_max)
    state = {"format": CHECKPOINT_FORMAT, "iteration": iteration, "generator": glean.state_dict(),
             "discriminator": d.state_dict(), "config": {"model": c.to_dict(), "mbstd_group_size": 4}}
    torch.save(state, folder / "last.pt")
    return folder / "last.pt"


def mmgen_file(path: Path) -> Path:
    torch.manual_seed(4)
    g, d = StyleGAN2Generator(**BANK), StyleGAN2Discriminator(32, channel_max=16)
    state = {**{f"generator_ema.{k}": v for k, v in g.state_dict().items()},
             **{f"discriminator.{k}": v for k, v in d.state_dict().items()}}
    torch.save({"meta": {"iter": 1}, "state_dict": state}, path, _use_new_zipfile_serialization=False)
    return path


def rosinality_file(path: Path, with_d: bool = True) -> Path:
    torch.manual_seed(1)
    obj = {"g_ema": foreign.rosinality_generator_state(32, style=16, n_mlp=2, width=16, dtype=torch.float32)}
    if with_d:
        obj["d"] = foreign.rosinality_discriminator_state(32, width=16, dtype=torch.float32)
    torch.save(obj, path)
    return path


def nvidia_file(path: Path) -> Path:
    torch.manual_seed(3)
    g = foreign.nvidia_generator(32, w_dim=16, n_mlp=2, channel_base=512, channel_max=16, dtype=torch.float32)
    d = foreign.nvidia_discriminator(32, channel_base=512, channel_max=16, dtype=torch.float32)
    path.write_bytes(foreign.nvidia_pickle({"G": g, "D": d, "G_ema": g}))
    return path
