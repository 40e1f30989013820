"""Export a GLEAN to ONNX: the inference snapshot's folded weights, a dynamic batch, its facts inside.

Use::

    from gleansr.onnx.export import export_onnx
    export_onnx("glean_glyphs_8x", "glyphs.onnx")                 # a zoo name, or any GLEAN file
    export_onnx(model, "cat.onnx", name="glean_cat_8x", precision="fp16")   # or a module

What is exported is :class:`gleansr.inference.FastGLEAN` in its plain form (float32 or float16
weights, no Winograd, no CUDA graphs, NCHW): the same function as ``model.set_impl("ref")`` with
the equalised-lr scales, demodulation constants, noise and RRDB residual scales folded in and the
bank's unused RGB branch left out. It goes through PyTorch's ``torch.export``-based exporter
(``dynamo=True``, needs onnxscript); the TorchScript exporter cannot export the blur of the bank's
up-sampling convolution (its kernel's shape depends on the input). Input ``input`` (N, C, in, in)
float32 in [-1, 1], output ``output`` (N, C, out, out) float32, raw; N is dynamic. An fp16 file
computes in float16 with float32 input and output (styles and demodulation stay float32).

Every file is checked before it is written: ``onnx.checker`` (full check), then ONNX Runtime's
output against the PyTorch float32 snapshot on a fixed random input, as PSNR after uint8 rounding
(metadata ``check_psnr_db``; fp32 must agree to one level of 255, fp16 warns below 50 dB).
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from .. import __version__
from ..atomic import atomic_write_bytes
from ..errors import GleanError
from ..hub import file_sha256
from ..metrics import psnr
from ..models.glean import GLEANStyleGANv2
from ..precision import BF16_MIN_PSNR, state_dict_sha256  # the dB bar: one for every lower precision

OPSET = 18  # onnxruntime >= 1.14, TensorRT 8.6+, OpenVINO 2023+
EXPORT_PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16}
NORMALISATION = "[-1,1] in, raw out, (y+1)/2 clamp"
NORMALISATION_HELP = "input x = rgb * 2 - 1 (rgb in [0, 1]); output y raw: rgb = clip((y + 1) / 2, 0, 1)"
CHECK_BATCH, CHECK_SEED = 2, 0


@dataclass(frozen=True)
class ExportSource:
    """A model to export and the facts that go into the file's metadata."""

    model: GLEANStyleGANv2
    name: str
    domain: str
    weights_sha256: str  # of the file the weights came from; "state_dict:<sha256>" for a module


@dataclass(frozen=True)
class Exported:
    """What :func:`export_onnx` wrote."""

    path: Path
    meta: dict[str, str]


def resolve_source(name_or_path: str | os.PathLike[str], download: bool = False) -> ExportSource:
    """A zoo model (with its weights), any GLEAN file the loader reads, or a run folder (its latest
    checkpoint, the model named after the run)."""
    from ..loading import build_glean, inspect
    from ..zoo import ZOO, create_model, weights_file

    name = str(name_or_path)
    if name in ZOO:
        entry = ZOO[name]
        path = weights_file(entry, download)
        model, domain = create_model(name, weights=path), entry.domain
    elif Path(name).exists():
        found = inspect(name)  # a file, or a run folder's latest checkpoint
        path, domain = found.path, "unknown"
        # a training checkpoint (runs/x/last.pt, or the folder runs/x) is named after its run
        name = path.parent.name if found.kind == "training-checkpoint" else path.stem
        model = build_glean(found)
    else:
        from ..zoo import unknown_model_message

        raise GleanError(f"{unknown_model_message(name)}; nor is it an existing weights file")
    return ExportSource(model.eval(), name, domain, file_sha256(path))


def plain_snapshot(model: GLEANStyleGANv2, dtype: torch.dtype) -> torch.nn.Module:
    """The inference snapshot without Winograd, CUDA graphs or channels_last, on the CPU: what
    the exporter can trace."""
    from ..inference import FastGLEAN

    return FastGLEAN(model, dtype, "cpu", channels_last=False, winograd=False).eval()




def model_metadata(source: ExportSource, precision: str, opset: int) -> dict[str, str]:
    """The facts an exported file carries (ONNX ``metadata_props``; all values are strings)."""
    cfg = source.model.config
    return {
        "name": source.name,
        "in_size": str(cfg.in_size),
        "out_size": str(cfg.out_size),
        "scale": str(cfg.scale),
        "img_channels": str(cfg.img_channels),
        "normalisation": NORMALISATION,
        "normalisation_help": NORMALISATION_HELP,
        "domain": source.domain,
        "weights_sha256": source.weights_sha256,
        "precision": precision,
        "opset": str(opset),
        "config": json.dumps(cfg.to_dict(), sort_keys=True),
        "gleansr_version": __version__,
    }


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter logs about optional packages (torchvision) and warns about its internals:
    not the user's business during an export that works."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning)
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            yield
    finally:
        logger.setLevel(level)


def onnx_model(snapshot: torch.nn.Module, in_size: int, img_channels: int, opset: int = OPSET):
    """The snapshot as an ``onnx.ModelProto`` with a dynamic batch dimension."""
    try:
        import onnxscript  # noqa: F401  (torch's exporter needs it; say so before it fails)
    except ImportError:
        raise GleanError("ONNX export needs onnx and onnxscript: pip install onnx onnxscript "
                         "(or gleansr[onnx])") from None
    example = torch.zeros(CHECK_BATCH, img_channels, in_size, in_size)
    batch = torch.export.Dim("batch", min=1, max=4096)
    with _quiet_exporter():
        program = torch.onnx.export(snapshot, (example,), None, dynamo=True, opset_version=opset,
                                    input_names=["input"], output_names=["output"],
                                    dynamic_shapes={"x": {0: batch}}, verbose=False)
        program.optimize()
    return program.model_proto


def _to_uint8(y: np.ndarray) -> np.ndarray:
    """Raw (N, C, H, W) output -> uint8 (N, H, W, C) images, as the upscaler rounds them."""
    from ..pipeline.images import to_uint8

    return to_uint8((y.astype(np.float64) + 1) / 2).transpose(0, 2, 3, 1)


def mean_psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Mean PSNR (dB, uint8 after the output normalisation) of two raw (N, 3, H, W) outputs."""
    values = [psnr(x, y) for x, y in zip(_to_uint8(a), _to_uint8(b))]
    return float(np.mean(values)) if all(map(math.isfinite, values)) else math.inf


def check_input(in_size: int, img_channels: int) -> np.ndarray:
    """The fixed input every export is checked on: uniform noise in [-1, 1]."""
    rng = np.random.default_rng(CHECK_SEED)
    return rng.uniform(-1, 1, (CHECK_BATCH, img_channels, in_size, in_size)).astype(np.float32)


def _check_against_torch(data: bytes, model: GLEANStyleGANv2, precision: str) -> float:
    """ONNX Runtime's output against the torch float32 snapshot's; the PSNR in dB."""
    import onnxruntime as ort

    cfg = model.config
    x = check_input(cfg.in_size, cfg.img_channels)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    with torch.inference_mode():
        want = plain_snapshot(model, torch.float32)(torch.from_numpy(x)).numpy()
    worst = int(np.abs(_to_uint8(got).astype(np.int16) - _to_uint8(want)).max())
    if precision == "fp32" and worst > 1:
        raise RuntimeError(f"the exported graph differs from the torch model by {worst}/255 at most; "
                           "this is a bug in the exporter or in gleansr")
    return mean_psnr(got, want)


def export_onnx(source: str | os.PathLike[str] | GLEANStyleGANv2, out: str | os.PathLike[str], *,
                precision: str = "fp32", opset: int = OPSET, overwrite: bool = False, download: bool = False,
                name: str | None = None, domain: str | None = None) -> Exported:
    """Write ``source`` (a zoo name, a GLEAN file or a module) to ``out`` as checked ONNX.

    precision: "fp32" or "fp16". name/domain: the metadata's, for a module (default "custom",
    "unknown"); they override a zoo model's. Never overwrites ``out`` unless ``overwrite``.
    """
    import onnx

    if precision not in EXPORT_PRECISIONS:
        raise GleanError(f"ONNX export precision must be one of {', '.join(EXPORT_PRECISIONS)}, got {precision!r}")
    out = Path(out)
    if out.exists() and not overwrite:
        raise GleanError(f"{out} already exists; refusing to overwrite it (pass --overwrite)")
    if isinstance(source, GLEANStyleGANv2):
        src = ExportSource(source.eval(), "custom", "unknown", state_dict_sha256(source))
    else:
        src = resolve_source(source, download=download)
    src = ExportSource(src.model, name or src.name, domain or src.domain, src.weights_sha256)
    cfg = src.model.config
    proto = onnx_model(plain_snapshot(src.model, EXPORT_PRECISIONS[precision]), cfg.in_size, cfg.img_channels, opset)
    meta = model_metadata(src, precision, opset)
    check_db = _check_against_torch(proto.SerializeToString(), src.model, precision)
    meta["check_psnr_db"] = "inf" if math.isinf(check_db) else f"{check_db:.2f}"
    if precision != "fp32" and check_db < BF16_MIN_PSNR:
        warnings.warn(f"{src.name} in {precision} is {check_db:.1f} dB from float32 on the check input "
                      f"(below {BF16_MIN_PSNR:.0f} dB); prefer fp32", stacklevel=2)
    proto.producer_name, proto.producer_version = "gleansr", __version__
    onnx.helper.set_model_props(proto, meta)
    onnx.checker.check_model(proto, full_check=True)
    atomic_write_bytes(out, proto.SerializeToString(), overwrite=overwrite)
    return Exported(out, meta)
