"""Architectures read off state dicts: StyleGAN2 generator/discriminator and GLEAN, from keys and shapes.

The channel widths of every StyleGAN2-type network follow ``min(channel_max, upstream base *
channel_multiplier)`` per resolution (:data:`~gleansr.models.stylegan2.UPSTREAM_CHANNELS`);
:func:`channel_config` inverts that, once, for all three networks.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import torch

from ..errors import CheckpointError
from ..models.glean import GLEANConfig
from ..models.stylegan2 import UPSTREAM_CHANNELS
from .rules import count


def channel_config(widths: Mapping[int, int]) -> tuple[float, int]:
    """(channel_multiplier, channel_max) that reproduce per-resolution ``widths``.

    Widths at 64 px and above carry the multiplier unless capped; a model whose every width is
    capped shows no multiplier, so the upstream 2 is assumed (it builds the same shapes).
    """
    channel_max = max(widths.values())
    for res in sorted(widths):
        if res >= 64 and widths[res] < channel_max:
            m = widths[res] / UPSTREAM_CHANNELS[res]
            return (int(m) if m == int(m) else m), channel_max
    return 2, channel_max


def _blur_taps(kernel: torch.Tensor | None) -> list[float]:
    """1-D taps behind a stored separable 2-D FIR kernel (their ratios; the buffer itself is loaded).

    A missing kernel, or one without values (meta device), means the upstream taps."""
    if kernel is None or kernel.is_meta:
        return [1, 3, 3, 1]
    rows = kernel.double().sum(1)
    taps = [round(float(v / rows[0]), 6) for v in rows]
    return [int(t) if t == int(t) else t for t in taps]


def infer_generator_config(state: Mapping[str, torch.Tensor], lr_mlp: float = 0.01) -> dict[str, Any]:
    """StyleGAN2Generator keyword arguments read off our-layout keys and shapes.

    ``lr_mlp`` cannot be seen in shapes; formats that record it pass it in.
    """
    try:
        num_noises = count(state, r"injected_noise_(\d+)")
        log_size = (num_noises + 3) // 2
        widths = {4: int(state["constant_input.input"].shape[1])}
        for i in range(3, log_size + 1):
            widths[2**i] = int(state[f"convs.{2 * (i - 3)}.conv.weight_orig"].shape[1])
        style_channels = int(state["style_mapping.1.linear.weight_orig"].shape[1])
    except KeyError as exc:
        raise CheckpointError(f"not a StyleGAN2 generator: key {exc.args[0]!r} is missing") from None
    multiplier, channel_max = channel_config(widths)
    return dict(out_size=2**log_size, style_channels=style_channels,
                num_mlps=count(state, r"style_mapping\.(\d+)\.bias"), channel_multiplier=multiplier,
                blur_kernel=_blur_taps(state.get("convs.0.conv.blur.kernel")), lr_mlp=lr_mlp, channel_max=channel_max)


def infer_discriminator_config(state: Mapping[str, torch.Tensor], group_size: int = 4) -> dict[str, Any]:
    """StyleGAN2Discriminator keyword arguments read off our-layout keys and shapes."""
    try:
        blocks = count(state, r"convs\.(\d+)\.conv1\.0\.conv\.weight_orig")
        in_size = 2 ** (blocks + 2)
        widths = {in_size: int(state["convs.0.0.conv.weight_orig"].shape[0])}
        for k in range(1, blocks + 1):
            widths[in_size >> k] = int(state[f"convs.{k}.conv2.1.conv.weight_orig"].shape[0])
        channel_groups = int(state["final_conv.0.conv.weight_orig"].shape[1]) - widths[4]
    except KeyError as exc:
        raise CheckpointError(f"not a StyleGAN2 discriminator: key {exc.args[0]!r} is missing") from None
    multiplier, channel_max = channel_config(widths)
    return dict(in_size=in_size, channel_multiplier=multiplier,
                blur_kernel=_blur_taps(state.get("convs.1.conv2.0.kernel")),
                mbstd_cfg={"group_size": group_size, "channel_groups": channel_groups}, channel_max=channel_max)


def infer_glean_config(state: Mapping[str, torch.Tensor]) -> GLEANConfig:
    """Rebuild a GLEANConfig from bare GLEAN keys and shapes.

    The bank's part is :func:`infer_generator_config` of the ``generator.`` keys. ``lr_mlp`` cannot
    be seen in shapes and takes the upstream value; ``latent_bank=False`` (the ablation) keeps
    every key, so only a file's stored config can say so.
    """
    try:
        first = state["encoder.0.0.conv_first.weight"]
        bank = infer_generator_config({k[10:]: v for k, v in state.items() if k.startswith("generator.")})
        in_size = 2 ** count(state, r"encoder\.(\d+)\..*")  # the encoder has log2(in_size) blocks
        cfg = GLEANConfig(in_size=in_size, out_size=bank["out_size"], img_channels=int(first.shape[1]),
                          rrdb_channels=int(first.shape[0]), num_rrdbs=count(state, r"encoder\.0\.0\.body\.(\d+)\..*"),
                          style_channels=bank["style_channels"], num_mlps=bank["num_mlps"],
                          channel_multiplier=bank["channel_multiplier"], blur_kernel=tuple(bank["blur_kernel"]),
                          channel_max=bank["channel_max"])
    except KeyError as exc:
        raise CheckpointError(f"incomplete GLEAN checkpoint: key {exc.args[0]!r} is missing") from None
    if 2 ** int(math.log2(cfg.in_size)) != cfg.in_size or cfg.in_size >= cfg.out_size:
        raise CheckpointError(f"inconsistent GLEAN sizes read off the state dict: in {cfg.in_size}, out {cfg.out_size}")
    return cfg
