"""Weights of the auxiliary networks (perceptual loss, LPIPS, FID) from their published files.

torchvision VGG16 (``vgg16-397923af.pth``) and AlexNet (``alexnet-owt-7be5be79.pth``), the lpips
package's v0.1 lin layers, pytorch-fid's ``pt_inception-2015-12-05``: each read by the one reader
and loaded strictly, so a wrong file is a one-line CheckpointError naming the key.
"""
from __future__ import annotations

import os

import torch
from torch import nn

from ..models.alexnet import AlexNetFeatures
from ..models.inception import InceptionV3FID
from ..models.vgg import VGG16Features
from .read import read_checkpoint
from .strict import check_state_dict, load_state_dict_strict


def _load_trunk(module: nn.Module, full: type[nn.Module], path: str | os.PathLike, what: str) -> None:
    """Load the ``features.*`` of a torchvision file into a possibly truncated trunk.

    The file must hold the complete trunk (every ``features.*`` key with its exact shape, even past
    the truncation, so a wrong network is caught); ``classifier.*`` keys are ignored.
    """
    state, _ = read_checkpoint(path)
    trunk = {key: value for key, value in state.items() if not key.startswith("classifier.")}
    with torch.device("meta"):  # the full trunk's keys and shapes, nothing allocated
        check_state_dict(full(), trunk, f"{path} ({what})")
    module.load_state_dict({key: trunk[key] for key in module.state_dict()})


def load_vgg16_weights(module: VGG16Features, path: str | os.PathLike) -> None:
    """torchvision-layout VGG16 file -> ``module`` (possibly truncated)."""
    _load_trunk(module, VGG16Features, path, "VGG16")


def load_alexnet_weights(module: AlexNetFeatures, path: str | os.PathLike) -> None:
    """torchvision-layout AlexNet file -> ``module`` (possibly truncated)."""
    _load_trunk(module, AlexNetFeatures, path, "AlexNet")


def load_fid_inception_weights(module: InceptionV3FID, path: str | os.PathLike) -> None:
    """pytorch-fid's ``pt_inception-2015-12-05`` state dict -> ``module``, strictly.

    ``fc.*`` (the unused 1008-class classifier) is ignored; BatchNorm's ``num_batches_tracked``
    may be absent (older files; unused in eval).
    """
    state, _ = read_checkpoint(path)
    state = {key: value for key, value in state.items() if not key.startswith("fc.")}
    for key, value in module.state_dict().items():
        if key.endswith(".num_batches_tracked"):
            state.setdefault(key, value)
    load_state_dict_strict(module, state, f"{path} (FID Inception)")


def load_lpips_lin_weights(module: nn.Module, path: str | os.PathLike, net: str) -> None:
    """The lpips package's v0.1 lin-layer file for backbone ``net`` -> ``module``, strictly."""
    load_state_dict_strict(module, read_checkpoint(path)[0], f"{path} (LPIPS-{net} lin layers)")
