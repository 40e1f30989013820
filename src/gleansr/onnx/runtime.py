"""Run an exported GLEAN (``gleansr export --format onnx``) with ONNX Runtime, without PyTorch.

Use::

    from gleansr.onnx.runtime import OnnxRunner
    run = OnnxRunner("glean_glyphs_8x.onnx")
    y = run(x)  # x: (N, 3, in, in) float32 in [-1, 1] -> (N, 3, out, out) float32, raw output
    sr = np.clip((y + 1) / 2, 0, 1)

The file's metadata (written by :mod:`gleansr.onnx.export`) says what the model is; a file
without it is refused, so a foreign ONNX model is never run with guessed sizes. Imports only
numpy and onnxruntime (lazily), so it works where torch is not installed.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GleanError

# metadata keys every gleansr export carries (see gleansr.onnx.export.model_metadata)
REQUIRED_KEYS = ("name", "in_size", "out_size", "scale", "img_channels", "normalisation")


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise GleanError("the ONNX backend needs onnxruntime: pip install onnxruntime "
                         "(or gleansr[onnx])") from None
    return onnxruntime


def default_providers(available: list[str]) -> list[str]:
    """CUDA first when this onnxruntime build has it, then the CPU."""
    preferred = [p for p in ("CUDAExecutionProvider",) if p in available]
    return preferred + ["CPUExecutionProvider"]


def session_options(ort: Any, threads: int | None) -> Any:
    """All graph optimisations; ``threads`` intra-op threads (None: onnxruntime's default, the
    physical cores)."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads is not None:
        if threads < 1:
            raise GleanError(f"threads must be >= 1, got {threads}")
        opts.intra_op_num_threads = threads
    return opts


class OnnxRunner:
    """An exported GLEAN in an ONNX Runtime session; the ``runner`` of :class:`gleansr.Upscaler`.

    Args:
        path: a ``.onnx`` file written by ``gleansr export --format onnx``.
        providers: onnxruntime execution providers (default: CUDA if available, then CPU).
        threads: intra-op threads (default: onnxruntime's, one per physical core).
    Attributes: ``name``, ``in_size``, ``out_size``, ``scale``, ``meta`` (every metadata entry,
    as strings) and ``providers`` (those the session really uses).
    Calling it: x (N, 3, in, in) float32 in [-1, 1] -> (N, 3, out, out) float32 (raw output;
    the image is ``clip((y + 1) / 2, 0, 1)``). One runner may be called from several threads.
    """

    def __init__(self, path: str | os.PathLike[str], providers: list[str] | None = None,
                 threads: int | None = None):
        ort = _onnxruntime()
        self.path = Path(path)
        if not self.path.is_file():
            raise GleanError(f"{self.path}: no such ONNX model file")
        if providers is None:
            providers = default_providers(ort.get_available_providers())
        try:
            self._session = ort.InferenceSession(str(self.path), session_options(ort, threads), providers=providers)
        except Exception as exc:  # onnxruntime raises its own pybind types (InvalidProtobuf, Fail, ...)
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise GleanError(f"{self.path}: ONNX Runtime cannot load it ({first_line})") from None
        self.meta: dict[str, str] = dict(self._session.get_modelmeta().custom_metadata_map)
        missing = [k for k in REQUIRED_KEYS if k not in self.meta]
        if missing:
            raise GleanError(f"{self.path}: not a gleansr GLEAN export (metadata lacks {', '.join(missing)}); "
                             "write one with `gleansr export --format onnx`")
        self.name = self.meta["name"]
        self.in_size, self.out_size = int(self.meta["in_size"]), int(self.meta["out_size"])
        self.scale, self.img_channels = int(self.meta["scale"]), int(self.meta["img_channels"])
        self._input = self._session.get_inputs()[0].name
        self._output = self._session.get_outputs()[0].name

    @property
    def precision(self) -> str:
        """The precision the file was exported in (what the Upscaler reports)."""
        return self.meta.get("precision", "fp32")

    @property
    def device(self) -> str:
        return "onnxruntime " + "/".join(p.removesuffix("ExecutionProvider") for p in self.providers)

    @property
    def providers(self) -> list[str]:
        return list(self._session.get_providers())

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        expected = (self.img_channels, self.in_size, self.in_size)
        if x.ndim != 4 or x.shape[1:] != expected or x.shape[0] < 1:
            raise ValueError(f"{self.name} expects input of shape (N, {', '.join(map(str, expected))}), "
                             f"got {x.shape}")
        return self._session.run([self._output], {self._input: x})[0]

    def __repr__(self) -> str:
        return (f"OnnxRunner({str(self.path)!r}: {self.name}, {self.in_size} -> {self.out_size} "
                f"(x{self.scale}), {self.meta.get('precision', '?')}, {', '.join(self.providers)})")
