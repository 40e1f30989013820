"""Reading, checking and writing checkpoints, safely.

Formats read: MMEditing/MMGeneration release files (legacy and zip ``torch.save``,
always with ``weights_only=True``: no code from a file ever runs), and safetensors.
Loading is strict: every key of the module must be filled exactly once with the right
shape; anything missing, unexpected or mis-shaped is a one-line :class:`CheckpointError`.
"""
from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import torch
import torch.nn as nn

from .errors import CheckpointError

if TYPE_CHECKING:  # the models import this module's neighbours; import them lazily at run time
    from .models.glean import GLEANConfig, GLEANStyleGANv2

SAFETENSORS_CONFIG_KEY = "gleansr_config"
SAFETENSORS_ARCH_KEY = "gleansr_arch"
SAFETENSORS_LAYOUT_KEY = "gleansr_layout"  # "bare": keys of one module, no wrapper prefix


def is_safetensors(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9:
        return False
    header_len = int.from_bytes(head[:8], "little")
    return head[8:9] == b"{" and 0 < header_len < 100_000_000


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Flat tensor dict and metadata from a checkpoint file.

    A ``{'state_dict': ..., 'meta': ...}`` wrapper (MMEditing/MMGeneration) is unwrapped;
    the metadata is ``meta`` (torch files) or the string metadata (safetensors).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint is empty: {path}")
    if is_safetensors(path):
        return _read_safetensors(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            raise CheckpointError(f"{path} holds Python objects that a safe load refuses ({first[:160]})") from None
        raise CheckpointError(f"{path} is not a readable checkpoint (corrupt or truncated: {first[:120]})") from None
    except Exception as exc:  # noqa: BLE001 - any failure to parse an untrusted file is the file's fault
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path} is not a readable checkpoint (corrupt or truncated: {msg[:160]})") from None
    return _unwrap(obj, path)


def _unwrap(obj: Any, path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path} does not hold a state dict (found {type(obj).__name__})")
    meta: dict[str, Any] = {}
    if "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        meta = dict(obj.get("meta") or {})
        obj = obj["state_dict"]
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{path} holds no tensors (keys: {', '.join(list(obj)[:5])})")
    return tensors, meta


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file (corrupt or truncated: {exc})") from None
    return tensors, meta


def select_prefix(state: Mapping[str, torch.Tensor], prefix: str, path: str | os.PathLike = "checkpoint") -> dict[str, torch.Tensor]:
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


def save_safetensors(module_or_state: nn.Module | Mapping[str, torch.Tensor], path: str | os.PathLike,
                     config: Mapping[str, Any] | None = None, arch: str = "GLEANStyleGANv2",
                     overwrite: bool = False, bare: bool = True) -> Path:
    """Write tensors (contiguous, CPU) and the model config as safetensors metadata, atomically.

    ``bare`` marks a file holding one network's own keys (no 'generator.'-style prefix).
    """
    from safetensors.torch import save_file

    from .atomic import atomic_path

    state = module_or_state.state_dict() if isinstance(module_or_state, nn.Module) else module_or_state
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    metadata = {SAFETENSORS_ARCH_KEY: arch, SAFETENSORS_LAYOUT_KEY: "bare" if bare else "prefixed"}
    if config is not None:
        metadata[SAFETENSORS_CONFIG_KEY] = json.dumps(dict(config), sort_keys=True)
    path = Path(path)
    with atomic_path(path, overwrite=overwrite) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


# --- GLEAN files of any origin: the architecture is read off the state dict ---------------

_GLEAN_MARKER = "encoder.0.0.conv_first.weight"


def _glean_keys(state: Mapping[str, torch.Tensor], path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Strip the wrapper prefix ('generator.' in MMEditing files, none in gleansr's own)."""
    for prefix in ("", "generator.", "module.", "generator_ema."):
        if prefix + _GLEAN_MARKER in state:
            return select_prefix(state, prefix, path)
    raise CheckpointError(f"{path} is not a GLEAN checkpoint (no '{_GLEAN_MARKER}' key under any known prefix)")


def infer_glean_config(state: Mapping[str, torch.Tensor]) -> "GLEANConfig":
    """Rebuild a GLEANConfig from bare GLEAN keys and shapes.

    ``lr_mlp`` and ``blur_kernel`` cannot be seen in shapes; they take upstream values
    (the kernel itself is a buffer and is loaded from the file anyway).
    """
    import math

    from .models.glean import GLEANConfig
    from .models.stylegan2 import UPSTREAM_CHANNELS

    def count(prefix: str) -> int:
        idx = {int(k[len(prefix):].split(".", 1)[0]) for k in state if k.startswith(prefix)}
        return max(idx) + 1 if idx else 0

    num_noises = count("generator.injected_noise_") or len([k for k in state if "injected_noise_" in k])
    out_size = 2 ** ((num_noises + 3) // 2)
    in_size = 2 ** (count("encoder."))  # encoder has log2(in_size) blocks
    first = state["encoder.0.0.conv_first.weight"]
    rrdb_channels, img_channels = int(first.shape[0]), int(first.shape[1])
    num_rrdbs = count("encoder.0.0.body.")
    style_channels = int(state["generator.conv1.conv.style_modulation.linear.weight_orig"].shape[1])
    num_mlps = len({k.split(".")[2] for k in state if k.startswith("generator.style_mapping.")})
    channel_max = int(state["generator.constant_input.input"].shape[1])
    channel_multiplier: float = 2
    for i in range(6, int(math.log2(out_size)) + 1):  # widths above 32 px carry the multiplier
        width = int(state[f"generator.convs.{2 * (i - 3)}.conv.weight_orig"].shape[1])
        if width < channel_max:  # not capped: width = upstream base * multiplier
            m = width / UPSTREAM_CHANNELS[2**i]
            channel_multiplier = int(m) if m == int(m) else m
            break
    cfg = GLEANConfig(in_size=in_size, out_size=out_size, img_channels=img_channels, rrdb_channels=rrdb_channels,
                      num_rrdbs=num_rrdbs, style_channels=style_channels, num_mlps=num_mlps,
                      channel_multiplier=channel_multiplier, channel_max=channel_max)
    if 2 ** int(math.log2(in_size)) != in_size or in_size >= out_size:
        raise CheckpointError(f"inconsistent GLEAN sizes read off the state dict: in {in_size}, out {out_size}")
    return cfg


def load_glean(path: str | os.PathLike) -> "GLEANStyleGANv2":
    """Build and strictly load a GLEAN generator from any GLEAN file, no flags needed.

    gleansr files carry their config in metadata; MMEditing release files and bare state
    dicts have it read off their keys and shapes.
    """
    from .models.glean import GLEANConfig, build_uninitialised

    state, meta = read_checkpoint(path)
    if SAFETENSORS_CONFIG_KEY in meta:
        try:
            cfg = GLEANConfig.from_dict(json.loads(meta[SAFETENSORS_CONFIG_KEY]))
        except (ValueError, TypeError) as exc:
            raise CheckpointError(f"{path}: unreadable model config in metadata ({exc})") from None
        state = _glean_keys(state, path)
    else:
        state = _glean_keys(state, path)
        try:
            cfg = infer_glean_config(state)
        except KeyError as exc:
            raise CheckpointError(f"{path}: incomplete GLEAN checkpoint, key {exc.args[0]!r} is missing") from None
    model = build_uninitialised(cfg)  # weights are loaded next: no random init
    load_state_dict_strict(model, state, str(path))
    return model.eval()
