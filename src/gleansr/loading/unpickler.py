"""A restricted unpickler for NVIDIA network pickles (stylegan2-ada-pytorch ``.pkl``).

Those pickles hold whole Python objects: every network class is a ``persistent_class`` whose
pickle calls ``torch_utils.persistence._reconstruct_persistent_obj(meta)``, and upstream's
version of that function ``exec``s the module source stored in ``meta``. Here nothing from the
file is ever executed: every global the pickle names is looked up in :data:`ALLOWED_GLOBALS`
(an explicit table of harmless replacements) and anything else raises
:class:`~gleansr.errors.CheckpointError` before it could run. A persistent object becomes a
:class:`PersistentObject` that only records its class name and state; tensors are rebuilt from
their storage bytes with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import io
import os
import pickle
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..errors import CheckpointError


@dataclass
class PersistentObject:
    """What remains of an upstream ``persistent_class`` instance: its class name and ``__dict__``."""

    class_name: str
    state: dict = field(repr=False)

    def child(self, name: str) -> "PersistentObject | None":
        module = (self.state.get("_modules") or {}).get(name)
        return module if isinstance(module, PersistentObject) else None

    @property
    def init_kwargs(self) -> dict:
        """The constructor's keyword arguments (upstream keeps a copy in ``_init_kwargs``)."""
        return dict(self.state.get("_init_kwargs") or {})

    def named_tensors(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """Parameters and buffers of this object and its children, like ``nn.Module.state_dict``."""
        out: dict[str, torch.Tensor] = {}
        for group in ("_parameters", "_buffers"):
            for name, value in (self.state.get(group) or {}).items():
                if value is not None:
                    out[prefix + name] = value
        for name, module in (self.state.get("_modules") or {}).items():
            if isinstance(module, PersistentObject):
                out.update(module.named_tensors(f"{prefix}{name}."))
            elif module is not None:
                raise CheckpointError(f"sub-module {prefix}{name} is a {type(module).__name__}, not a network object")
        return out

    def class_names(self, prefix: str = "") -> dict[str, str]:
        """Class name of this object and of every child, by dotted path ('' is the object itself)."""
        out = {prefix.rstrip("."): self.class_name}
        for name, module in (self.state.get("_modules") or {}).items():
            if isinstance(module, PersistentObject):
                out.update(module.class_names(f"{prefix}{name}."))
        return out


class _EasyDict(dict):
    """Stands in for ``dnnlib.util.EasyDict`` (a dict with attribute access; only the dict matters)."""


def _reconstruct_persistent_obj(meta: Any) -> PersistentObject:
    """Replacement for upstream's reconstruction: keeps the state, never runs ``meta['module_src']``."""
    if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("class_name"), str):
        raise pickle.UnpicklingError("malformed persistent object (expected a class record)")
    state = meta.get("state") or {}
    if not isinstance(state, dict):
        raise pickle.UnpicklingError(f"persistent object {meta['class_name']} has a non-dict state")
    return PersistentObject(meta["class_name"], dict(state))


def _load_storage_from_bytes(data: bytes) -> Any:
    """Storages are embedded as small legacy ``torch.save`` files: read them the safe way."""
    if not isinstance(data, (bytes, bytearray)):
        raise pickle.UnpicklingError("tensor storage is not a byte string")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # TypedStorage deprecation notice
        try:
            storage = torch.load(io.BytesIO(bytes(data)), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            raise _Refused("an embedded tensor storage holds Python objects that a safe load refuses") from None
    if not isinstance(storage, (torch.TypedStorage, torch.UntypedStorage)):
        raise pickle.UnpicklingError(f"embedded storage holds a {type(storage).__name__}, not a storage")
    return storage


def _rebuild_tensor(storage: Any, offset: int, size: tuple, stride: tuple, *_ignored: Any) -> torch.Tensor:
    """(storage, offset, size, stride[, requires_grad, hooks, metadata]) -> tensor; hooks are dropped."""
    if not isinstance(storage, torch.TypedStorage):
        raise pickle.UnpicklingError("tensor rebuilt from something that is not a storage")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        untyped, dtype = storage.untyped(), storage.dtype
    return torch.empty(0, dtype=dtype).set_(untyped, int(offset), tuple(size), tuple(stride))


def _rebuild_parameter(data: Any, *_ignored: Any) -> torch.Tensor:
    """A Parameter becomes its plain tensor (requires_grad, hooks and extra state are dropped)."""
    if not isinstance(data, torch.Tensor):
        raise pickle.UnpicklingError("parameter data is not a tensor")
    return data


def _rebuild_from_type(func: Callable, _new_type: Any, args: tuple, _state: Any) -> torch.Tensor:
    """Tensor subclasses: ``func`` is already one of the allowed rebuilders; the subclass is dropped."""
    if func not in (_rebuild_tensor, _rebuild_parameter):
        raise pickle.UnpicklingError("tensor rebuilt by a function that is not a tensor rebuilder")
    return func(*args)


def _numpy_scalar(dtype: Any, data: bytes = b"") -> Any:
    """``numpy.core.multiarray.scalar`` for plain numeric dtypes only (e.g. layers' ``weight_gain``)."""
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes):
        raise pickle.UnpicklingError("numpy scalar of an object dtype is refused")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


def _numpy_dtype(spec: Any, align: bool = False, copy: bool = False) -> np.dtype:
    if not isinstance(spec, str):
        raise pickle.UnpicklingError("numpy dtype from a non-string spec is refused")
    return np.dtype(spec, align, copy)


ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._utils", "_rebuild_from_type_v2"): _rebuild_from_type,
    ("torch", "Tensor"): torch.Tensor,
    ("torch.nn.parameter", "Parameter"): torch.Tensor,  # only ever a marker for _rebuild_from_type
    ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("dnnlib", "EasyDict"): _EasyDict,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy", "dtype"): _numpy_dtype,
}

_TF_HINT = {("dnnlib.tflib.network", "Network")}


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves globals only through :data:`ALLOWED_GLOBALS`."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _TF_HINT:
            raise _Refused("a TensorFlow-era StyleGAN2 pickle; convert it to PyTorch first "
                           "(stylegan2-ada-pytorch legacy.py), then run gleansr convert on that file")
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise _Refused(f"it references {module}.{name}, which is not on the allow-list") from None

    def persistent_load(self, pid: Any) -> Any:
        raise _Refused("it uses persistent ids (not a plain network pickle)")


class _Refused(pickle.UnpicklingError):
    """Raised inside the unpickler; turned into a CheckpointError naming the file."""


def load_network_pickle(path: str | os.PathLike) -> Any:
    """Unpickle ``path`` safely; raises CheckpointError naming the file and the refused global."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return RestrictedUnpickler(f).load()
    except _Refused as exc:
        raise CheckpointError(f"refusing to load {path}: {exc} (nothing from the file was run)") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path} is not a readable network pickle ({first})") from None
