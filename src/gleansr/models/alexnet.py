"""AlexNet convolutional trunk in torchvision's key layout, the backbone of LPIPS-alex.

torchvision's ``alexnet().features`` (the "one weird trick" variant, 64-192-384-256-256 channels)
rebuilt with the same indices, so ``alexnet-owt-7be5be79.pth`` (``features.N.*`` and
``classifier.*``) loads directly. LPIPS taps the ReLUs 1, 4, 7, 9, 11.
"""
from __future__ import annotations

import itertools
from typing import Iterator

import torch
from torch import nn

ALEXNET_NUM_LAYERS = 13


def _alexnet_layers() -> Iterator[nn.Module]:
    # ReLUs are not in-place: a tapped output must survive the layers that follow it.
    yield from (nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU())
    yield nn.MaxPool2d(kernel_size=3, stride=2)
    yield from (nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU())
    yield nn.MaxPool2d(kernel_size=3, stride=2)
    yield from (nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU())
    yield from (nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU())
    yield from (nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU())
    yield nn.MaxPool2d(kernel_size=3, stride=2)


class AlexNetFeatures(nn.Module):
    """torchvision ``alexnet().features`` truncated after layer ``last_layer`` (inclusive, 0..12).

    ``forward``: (N, 3, H, W) -> output of the last layer kept.
    """

    def __init__(self, last_layer: int = ALEXNET_NUM_LAYERS - 1) -> None:
        super().__init__()
        if not 0 <= last_layer < ALEXNET_NUM_LAYERS:
            raise ValueError(f"last_layer must be in 0..{ALEXNET_NUM_LAYERS - 1}, got {last_layer}")
        self.features = nn.Sequential(*itertools.islice(_alexnet_layers(), last_layer + 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)
