"""StyleGAN2 banks from other code bases, in gleansr's (MMGeneration's) key layout.

One adapter module per source format, each with ``detect(obj) -> bool`` and
``convert(obj) -> (generator_state, discriminator_state | None, config)``:

- :mod:`.mmgen`: MMGeneration/MMEditing official weights and gleansr bank checkpoints
  (``generator_ema.`` / ``generator.`` / ``discriminator.`` prefixes; keys already ours);
- :mod:`.rosinality`: rosinality/stylegan2-pytorch ``.pt`` files (``g_ema``, ``d``);
- :mod:`.nvidia`: NVlabs/stylegan2-ada-pytorch ``.pkl`` network pickles, read by the
  restricted unpickler in :mod:`.unpickler` (no code from the file is ever run).

Each adapter is an explicit key table of :class:`Rule` (target key <- source key, transform).
:func:`apply_rules` fills every target exactly once, names any missing source key, and reports
every source key that no rule used and no ``ignored`` pattern explains; the result is then
loaded strictly (shape-checked) into freshly built modules.

Equalized learning rate: every code base multiplies a stored weight by a run-time gain, but
not the same one (ours: ``sqrt(1 / fan_in)`` rounded through float32, see
:func:`~gleansr.models.layers.equalized_lr_scale`; rosinality: the float64 value; NVIDIA: none
at all for demodulated convs). Conversions rescale the stored weight so that the weight used
at run time equals the source's: ``weight_orig = w * their_gain / our_gain``.

Exported safetensors: ``DST`` holds the bare generator (arch ``StyleGAN2Generator``, its
constructor arguments in the metadata) and, when the source has a discriminator, the sibling
file ``<DST stem>.discriminator.safetensors`` holds the bare discriminator.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import torch

from ..checkpoints import (SAFETENSORS_ARCH_KEY, SAFETENSORS_CONFIG_KEY, is_safetensors, load_state_dict_strict,
                           read_checkpoint, save_safetensors)
from ..errors import CheckpointError
from ..models.discriminator import StyleGAN2Discriminator
from ..models.layers import equalized_lr_scale
from ..models.stylegan2 import UPSTREAM_CHANNELS, StyleGAN2Generator

FORMATS = ("mmgen", "rosinality", "nvidia")
GENERATOR_ARCH = "StyleGAN2Generator"
DISCRIMINATOR_ARCH = "StyleGAN2Discriminator"
_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"

Transform = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Rule:
    """Fill our key ``target`` from the source's key ``source`` through ``transform``."""

    target: str
    source: str
    transform: Transform = lambda t: t


def apply_rules(rules: Iterable[Rule], source: Mapping[str, torch.Tensor], ignored: Iterable[str] = (),
                what: str = "generator") -> dict[str, torch.Tensor]:
    """Run a key table; ``ignored`` are regular expressions (full match) of source keys to drop."""
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for rule in rules:
        if rule.target in out:
            raise CheckpointError(f"{what}: the key table fills {rule.target!r} twice")
        if rule.source not in source:
            raise CheckpointError(f"{what}: source key {rule.source!r} is missing (needed for {rule.target!r})")
        out[rule.target] = rule.transform(source[rule.source])
        used.add(rule.source)
    patterns = [re.compile(p) for p in ignored]
    leftovers = [k for k in source if k not in used and not any(p.fullmatch(k) for p in patterns)]
    if leftovers:
        more = f" (and {len(leftovers) - 5} more)" if len(leftovers) > 5 else ""
        raise CheckpointError(f"{what}: source keys that no rule maps: {', '.join(leftovers[:5])}{more}")
    return out


def fan_in(weight: torch.Tensor) -> int:
    """Inputs per output of a linear (out, in) or conv ([1,] out, in, k, k) weight."""
    return math.prod(weight.shape[-3:]) if weight.ndim >= 4 else int(weight.shape[1])


def rescale_gain(weight: torch.Tensor, their_gain: float) -> torch.Tensor:
    """Stored weight for us so that ``weight_orig * our_gain == weight * their_gain`` (in float64)."""
    ratio = their_gain / equalized_lr_scale(fan_in(weight))
    return weight if ratio == 1.0 else (weight.double() * ratio).to(weight.dtype)


def equalized(weight: torch.Tensor) -> torch.Tensor:
    """Source applies ``1 / sqrt(fan_in)`` in float64 (rosinality; NVIDIA's weight_gain)."""
    return rescale_gain(weight, 1.0 / math.sqrt(fan_in(weight)))


def count(state: Mapping[str, Any], pattern: str) -> int:
    """How many distinct integers fill the ``(\\d+)`` group of ``pattern`` among the keys."""
    rx = re.compile(pattern)
    return len({m.group(1) for k in state if (m := rx.fullmatch(k))})


def _widths_to_config(widths: dict[int, int]) -> tuple[float, int]:
    """(channel_multiplier, channel_max) reproducing per-resolution ``widths``; checked by the caller."""
    channel_max = max(widths.values())
    for res in sorted(widths):
        if res >= 64 and widths[res] < channel_max:
            m = widths[res] / UPSTREAM_CHANNELS[res]
            return (int(m) if m == int(m) else m), channel_max
    return 2, channel_max


def _blur_taps(kernel: torch.Tensor | None) -> list[float]:
    """1-D taps behind a stored separable 2-D FIR kernel (their ratios; the buffer itself is loaded)."""
    if kernel is None:
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
    multiplier, channel_max = _widths_to_config(widths)
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
    multiplier, channel_max = _widths_to_config(widths)
    return dict(in_size=in_size, channel_multiplier=multiplier,
                blur_kernel=_blur_taps(state.get("convs.1.conv2.0.kernel")),
                mbstd_cfg={"group_size": group_size, "channel_groups": channel_groups}, channel_max=channel_max)


@dataclass
class BankWeights:
    """A StyleGAN2 bank in our layout, with the constructor arguments of both networks."""

    generator: dict[str, torch.Tensor]
    generator_config: dict[str, Any]
    discriminator: dict[str, torch.Tensor] | None = None
    discriminator_config: dict[str, Any] | None = None
    source_format: str = "gleansr"
    notes: list[str] = field(default_factory=list)

    def build_generator(self, source: str = "bank") -> StyleGAN2Generator:
        """A StyleGAN2Generator with these weights, loaded strictly (every key, every shape)."""
        g = StyleGAN2Generator(**self.generator_config)
        return load_state_dict_strict(g, self.generator, f"{source} (generator)")

    def build_discriminator(self, source: str = "bank") -> StyleGAN2Discriminator | None:
        if self.discriminator is None or self.discriminator_config is None:
            return None
        d = StyleGAN2Discriminator(**self.discriminator_config)
        return load_state_dict_strict(d, self.discriminator, f"{source} (discriminator)")


def _adapters() -> dict[str, Any]:
    from . import mmgen, nvidia, rosinality

    return {"mmgen": mmgen, "rosinality": rosinality, "nvidia": nvidia}


def read_source(path: str | os.PathLike) -> Any:
    """The object stored in ``path``: a safetensors dict, a torch file (weights only), or a pickle.

    Torch files load with ``weights_only=True`` (``argparse.Namespace`` allowed: rosinality's
    training checkpoints keep their arguments); plain pickles go through the restricted unpickler.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    with open(path, "rb") as f:
        head = f.read(len(_LEGACY_TORCH_MAGIC))
    if is_safetensors(path):
        return read_checkpoint(path)[0]
    if head.startswith(b"PK") or head == _LEGACY_TORCH_MAGIC:
        safe_globals = getattr(torch.serialization, "safe_globals", None)
        try:
            if safe_globals is None:
                return torch.load(path, map_location="cpu", weights_only=True)
            with safe_globals([argparse.Namespace]):
                return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any failure to parse an untrusted file is the file's fault
            first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(f"{path} is not a checkpoint that loads safely ({first})") from None
    if head[:1] == b"\x80":
        from .unpickler import load_network_pickle

        return load_network_pickle(path)
    raise CheckpointError(f"{path} is not a safetensors, torch or pickle file")


def detect_format(obj: Any, path: str | os.PathLike = "checkpoint") -> str:
    """Name of the one adapter that recognises ``obj``."""
    found = [name for name, adapter in _adapters().items() if adapter.detect(obj)]
    if len(found) != 1:
        what = "no known StyleGAN2 layout" if not found else f"several layouts ({', '.join(found)})"
        raise CheckpointError(f"{path}: {what} recognised; pass --from {'|'.join(FORMATS)}")
    return found[0]


def discriminator_path(generator_path: str | os.PathLike) -> Path:
    """Where the exported discriminator sits beside an exported generator ``bank.safetensors``."""
    p = Path(generator_path)
    return p.with_name(f"{p.stem}.discriminator.safetensors")


def _read_exported(path: Path) -> BankWeights | None:
    """A gleansr export (bare generator safetensors), with its sibling discriminator if present."""
    if not is_safetensors(path):
        return None
    state, meta = read_checkpoint(path)
    if meta.get(SAFETENSORS_ARCH_KEY) != GENERATOR_ARCH:
        return None
    weights = BankWeights(state, json.loads(meta[SAFETENSORS_CONFIG_KEY]))
    d_path = discriminator_path(path)
    if d_path.is_file():
        d_state, d_meta = read_checkpoint(d_path)
        weights.discriminator, weights.discriminator_config = d_state, json.loads(d_meta[SAFETENSORS_CONFIG_KEY])
    return weights


def load_bank(path: str | os.PathLike, fmt: str = "auto") -> BankWeights:
    """Any supported bank file -> :class:`BankWeights` (checked by building both networks)."""
    path = Path(path)
    if fmt not in ("auto", *FORMATS):
        raise CheckpointError(f"unknown format {fmt!r}; choose auto or one of: {', '.join(FORMATS)}")
    weights = _read_exported(path) if fmt == "auto" and path.is_file() else None
    if weights is None:
        obj = read_source(path)
        fmt = detect_format(obj, path) if fmt == "auto" else fmt
        adapter = _adapters()[fmt]
        if not adapter.detect(obj):
            raise CheckpointError(f"{path} is not in the {fmt} layout")
        try:
            g_state, d_state, config = adapter.convert(obj)
        except CheckpointError as exc:
            raise CheckpointError(f"{path}: {exc}") from None
        weights = BankWeights(g_state, config["generator"], d_state, config.get("discriminator"), fmt,
                              list(config.get("notes", [])))
    weights.build_generator(str(path))
    weights.build_discriminator(str(path))
    return weights


def export_bank(weights: BankWeights, dst: str | os.PathLike, overwrite: bool = False) -> list[Path]:
    """Write the generator to ``dst`` and the discriminator (if any) beside it; returns the paths."""
    dst = Path(dst)
    if dst.suffix != ".safetensors":
        raise CheckpointError(f"{dst}: the output must end in .safetensors")
    targets = [dst] + ([discriminator_path(dst)] if weights.discriminator is not None else [])
    for target in targets:
        if target.exists() and not overwrite:
            raise CheckpointError(f"{target} already exists; pass --overwrite to replace it")
    written = [save_safetensors(weights.generator, dst, weights.generator_config, GENERATOR_ARCH, overwrite)]
    if weights.discriminator is not None:
        written.append(save_safetensors(weights.discriminator, discriminator_path(dst), weights.discriminator_config,
                                        DISCRIMINATOR_ARCH, overwrite))
    return written
