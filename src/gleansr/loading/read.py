"""The one file reader, with the one safety policy for every weights file gleansr accepts.

- safetensors: read as tensors plus string metadata;
- PyTorch files (zip or legacy ``torch.save``): ``torch.load(weights_only=True)``, so no code
  from a file ever runs (``argparse.Namespace`` is allowed: rosinality's training checkpoints
  keep their arguments in one);
- other pickles (NVIDIA ``.pkl``): only through the restricted unpickler of :mod:`.unpickler`;
- anything else (an image, a text file, an empty file) is refused with a message saying what
  the file looks like, before any model is built.
"""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from ..errors import CheckpointError

_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
_IMAGE_MAGIC = ((b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
                (b"BM", "a BMP image"), (b"II*\x00", "a TIFF image"), (b"MM\x00*", "a TIFF image"))


@dataclass
class RawFile:
    """What a file holds, once read: ``obj`` (a mapping, or a pickled object tree) and its container."""

    path: Path
    container: str  # "safetensors" | "torch" | "pickle"
    obj: Any
    meta: dict[str, str] = field(default_factory=dict)  # safetensors metadata


def is_safetensors(path: str | os.PathLike) -> bool:
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9:
        return False
    header_len = int.from_bytes(head[:8], "little")
    return head[8:9] == b"{" and 0 < header_len < 100_000_000


def _sniff(head: bytes) -> str | None:
    """What a non-weights file looks like, from its first bytes (None: nothing recognised)."""
    for magic, what in _IMAGE_MAGIC:
        if head.startswith(magic):
            return what
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP image"
    if head.lstrip()[:1] in (b"{", b"["):
        return "a JSON/text file"
    return None


def _first_line(exc: BaseException, limit: int = 160) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__


def _torch_load(path: Path) -> Any:
    safe_globals = getattr(torch.serialization, "safe_globals", None)
    try:
        if safe_globals is None:
            return torch.load(path, map_location="cpu", weights_only=True)
        with safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to parse an untrusted file is the file's fault
        text = str(exc)
        if "weights_only" in text or "Unsupported global" in text:
            raise CheckpointError(f"{path} holds Python objects that a safe load refuses "
                                  f"({_first_line(exc, 120)}); only weights files are read") from None
        raise CheckpointError(f"{path} is not a readable checkpoint (corrupt or truncated: "
                              f"{_first_line(exc)})") from None


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file (corrupt or truncated: {exc})") from None
    return tensors, meta


def read_file(path: str | os.PathLike) -> RawFile:
    """Read any supported weights file under the one safety policy (see the module docstring)."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a weights file")
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"weights file is empty: {path}")
    with open(path, "rb") as f:
        head = f.read(len(_LEGACY_TORCH_MAGIC))
    if is_safetensors(path):
        tensors, meta = _read_safetensors(path)
        return RawFile(path, "safetensors", tensors, meta)
    if head.startswith(b"PK") or head == _LEGACY_TORCH_MAGIC:
        return RawFile(path, "torch", _torch_load(path))
    if head[:1] == b"\x80":
        from .unpickler import load_network_pickle

        return RawFile(path, "pickle", load_network_pickle(path))
    what = _sniff(head)
    if what is not None:
        raise CheckpointError(f"{path} is {what}, not a weights file (safetensors, .pth/.pt or .pkl)")
    raise CheckpointError(f"{path} is not a weights file: neither safetensors, a PyTorch checkpoint nor a pickle")


def unwrap_state(obj: Any, path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Flat tensor dict and metadata of a ``{'state_dict', 'meta'}`` wrapper or a bare state dict."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path} does not hold a state dict (found {type(obj).__name__})")
    meta: dict[str, Any] = {}
    if "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        meta = dict(obj.get("meta") or {})
        obj = obj["state_dict"]
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{path} holds no tensors at its top level ({summarize(obj)})")
    return tensors, meta


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Flat tensor dict and metadata of a weights file (safetensors metadata, or the ``meta`` entry)."""
    raw = read_file(path)
    if raw.container == "safetensors":
        return raw.obj, raw.meta
    return unwrap_state(raw.obj, raw.path)


def summarize(obj: Any, limit: int = 5) -> str:
    """What a loaded object is, in a few words: its top-level keys and a sample of tensor names."""
    if not isinstance(obj, Mapping):
        return f"a {type(obj).__name__}"
    keys = list(obj)
    text = f"top-level keys: {', '.join(map(str, keys[:limit]))}" + (f" (+{len(keys) - limit} more)"
                                                                    if len(keys) > limit else "")
    inner = obj.get("state_dict") if isinstance(obj.get("state_dict"), Mapping) else obj
    names = [k for k, v in inner.items() if isinstance(v, torch.Tensor)]
    if names:
        text += f"; {len(names)} tensors such as {', '.join(map(str, names[:3]))}"
    return text
