"""Architectures read off state dicts: StyleGAN2 generator/discriminator and GLEAN, from keys and shapes.

The channel widths of every StyleGAN2-type network follow ``min(channel_max, upstream base *
channel_multiplier)`` per resolution (:data:`~gleansr.arch.UPSTREAM_CHANNELS`);
:func:`channel_config` inverts that, once, for all three networks. Each reader returns a typed,
validated config (:mod:`gleansr.arch`, :class:`~gleansr.glean_config.GLEANConfig`); an impossible
architecture is a CheckpointError.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, TypeVar

import torch

from ..arch import UPSTREAM_CHANNELS, DiscriminatorConfig, StyleGAN2Config
from ..errors import CheckpointError
from ..glean_config import GLEANConfig
from .rules import count

T = TypeVar("T")


def checked(build: Callable[[], T], what: str) -> T:
    """``build()``, its ValueError/TypeError (an impossible architecture) as one CheckpointError."""
    try:
        return build()
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{what}: {exc}") from None

def check_sizes(state: Mapping[str, torch.Tensor], expected: int, source: str) -> None:
    """Hold an architecture's state size (computed from its config) against the tensors a file holds,
    before any module is built: a forged config cannot ask for more memory than the file brings."""
    held = sum(v.numel() for v in state.values() if isinstance(v, torch.Tensor))
    if held != expected:
        raise CheckpointError(f"{source}: the architecture in the file's config has {expected:,} values, "
                              f"its tensors hold {held:,}; the config does not describe these weights")


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


def infer_generator_config(state: Mapping[str, torch.Tensor], lr_mlp: float = 0.01) -> StyleGAN2Config:
    """The StyleGAN2 generator architecture read off our-layout keys and shapes.

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
    return checked(lambda: StyleGAN2Config(
        out_size=2**log_size, style_channels=style_channels, num_mlps=count(state, r"style_mapping\.(\d+)\.bias"),
        channel_multiplier=multiplier, blur_kernel=_blur_taps(state.get("convs.0.conv.blur.kernel")),
        lr_mlp=lr_mlp, channel_max=channel_max), "StyleGAN2 generator read off the state dict")


def infer_discriminator_config(state: Mapping[str, torch.Tensor], group_size: int = 4) -> DiscriminatorConfig:
    """The StyleGAN2 discriminator architecture read off our-layout keys and shapes."""
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
    return checked(lambda: DiscriminatorConfig(
        in_size=in_size, channel_multiplier=multiplier, blur_kernel=_blur_taps(state.get("convs.1.conv2.0.kernel")),
        mbstd_group_size=group_size, mbstd_channel_groups=channel_groups, channel_max=channel_max),
        "StyleGAN2 discriminator read off the state dict")


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
        fields: dict[str, Any] = dict(
            in_size=in_size, img_channels=int(first.shape[1]), rrdb_channels=int(first.shape[0]),
            num_rrdbs=count(state, r"encoder\.0\.0\.body\.(\d+)\..*"),
            **bank.to_dict())
    except KeyError as exc:
        raise CheckpointError(f"incomplete GLEAN checkpoint: key {exc.args[0]!r} is missing") from None
    return checked(lambda: GLEANConfig(**fields), "inconsistent GLEAN architecture read off the state dict")
