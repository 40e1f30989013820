"""VGG16 convolutional trunk in torchvision's key layout.

torchvision is not a dependency: the layers are built here with torchvision's indices, so a
torchvision state dict (``vgg16-397923af.pth``: ``features.N.*`` and ``classifier.*``) loads
directly. The perceptual loss uses layer 21 (conv4_3 before its ReLU, MMEditing's
``PerceptualVGG`` with ``layer_weights={'21': 1.0}``); LPIPS-vgg taps the ReLUs 3, 8, 15, 22, 29.
"""
from __future__ import annotations

import itertools
from typing import Iterator, Sequence

import torch
from torch import nn

# torchvision's configuration "D": conv widths, "M" = 2x2 max-pool. Each conv is followed by a
# ReLU, so the 13 convs, 13 ReLUs and 5 pools make the 31 layers features.0 ... features.30.
VGG16_CONFIG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
)
VGG16_NUM_LAYERS = 31


def _vgg16_layers() -> Iterator[nn.Module]:
    in_channels = 3
    for item in VGG16_CONFIG:
        if item == "M":
            yield nn.MaxPool2d(kernel_size=2, stride=2)
        else:
            yield nn.Conv2d(in_channels, int(item), kernel_size=3, padding=1)
            # Not in-place: a tapped conv output must survive the ReLU that follows it.
            yield nn.ReLU()
            in_channels = int(item)


def collect_outputs(layers: nn.Sequential, x: torch.Tensor, indices: Sequence[int]) -> list[torch.Tensor]:
    """Run ``layers`` on ``x`` and return the outputs of the layers at ``indices`` (ascending).

    Stops after the last requested layer, so truncated use costs nothing extra.
    """
    wanted = sorted(set(indices))
    if not wanted or wanted[0] < 0 or wanted[-1] >= len(layers):
        raise ValueError(f"layer indices {list(indices)} out of range 0..{len(layers) - 1}")
    outputs = []
    for index, layer in enumerate(layers):
        x = layer(x)
        if index in wanted:
            outputs.append(x)
            if index == wanted[-1]:
                break
    return outputs


class VGG16Features(nn.Module):
    """torchvision ``vgg16().features`` truncated after layer ``last_layer`` (inclusive).

    Args:
        last_layer: index of the last layer kept, 0..30. 21 is conv4_3 before its ReLU (the
            perceptual loss), 29 the last ReLU (LPIPS), 30 the full trunk.

    ``forward``: (N, 3, H, W) already normalised as the weights expect -> output of the last layer.
    """

    def __init__(self, last_layer: int = VGG16_NUM_LAYERS - 1) -> None:
        super().__init__()
        if not 0 <= last_layer < VGG16_NUM_LAYERS:
            raise ValueError(f"last_layer must be in 0..{VGG16_NUM_LAYERS - 1}, got {last_layer}")
        # islice builds only the kept layers, so a truncated trunk allocates no unused weights.
        self.features = nn.Sequential(*itertools.islice(_vgg16_layers(), last_layer + 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)
