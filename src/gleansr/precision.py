"""The one table of compute precisions, and what ``precision="auto"`` picks for the weights loaded.

Importing this module does not import torch (command-line parsers import it). ``auto`` asks the
hardware first (:func:`gleansr.hardware.choose_precision`: bf16 is a *candidate* only where it is
computed natively), then the weights: a reduced precision is taken only when the model's output in
it stays >= :data:`BF16_MIN_PSNR` dB against its float32 output on every probe image. That figure
comes from a zoo declaration (measured by ``benchmarks/bench_deploy.py``) or is measured on first
use by :func:`calibrate` and cached per (weights SHA-256, device kind and ISA flags, torch version,
precision) in ``<cache root>/precision/`` (:func:`gleansr.hub.cache_root`), so it is paid once per
machine and model. :func:`resolve_auto` is the one function the Upscaler (Python API, CLI, server)
goes through.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import GleanError

if TYPE_CHECKING:
    import numpy as np
    import torch

PRECISIONS = ("fp32", "bf16", "fp16")
AUTO = "auto"
CHOICES = (AUTO, *PRECISIONS)  # what a user may ask for: "auto" resolves to one of PRECISIONS
BF16_MIN_PSNR = 50.0  # dB against fp32, worst probe: below it, or unmeasured, "auto" keeps fp32
_TORCH_NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
VERDICT_FOLDER = "precision"


class PrecisionError(GleanError, ValueError):
    """An unknown precision name (a ValueError too, for callers that validate arguments)."""


def check_precision(name: str) -> str:
    """``name`` if it is a known precision, else a one-line :class:`PrecisionError`."""
    if name not in PRECISIONS:
        raise PrecisionError(f"precision must be one of {', '.join(PRECISIONS)}, got {name!r}")
    return name


def torch_dtype(name: str) -> "torch.dtype":
    """The torch dtype of a precision name ("fp32" -> torch.float32); imports torch on first use."""
    import torch

    return getattr(torch, _TORCH_NAMES[check_precision(name)])


# -- the weights' identity -------------------------------------------------------------------------
def state_dict_sha256(model: "torch.nn.Module") -> str:
    """A module's weights as one hash (names, dtypes, shapes, bytes), for weights from no file."""
    import torch

    digest = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        t = value.detach().cpu().contiguous()
        digest.update(f"{key}:{t.dtype}:{tuple(t.shape)};".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return "state_dict:" + digest.hexdigest()


def _verdict_folder() -> Path:
    from .hub import cache_root

    return cache_root() / VERDICT_FOLDER


def _write_json(path: Path, data: dict) -> None:
    from .atomic import atomic_write_bytes

    atomic_write_bytes(path, json.dumps(data, indent=1, sort_keys=True).encode(), overwrite=True)


def _read_json(path: Path) -> dict | None:
    """The JSON object in ``path``; None when it is missing or unreadable (then it is measured again)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def cached_file_sha256(path: str | os.PathLike[str]) -> str:
    """A weights file's SHA-256, read once: remembered in the cache folder by path, size and
    modification time, so a later run hashes nothing unless the file changed."""
    from .hub import file_sha256

    path = Path(path).resolve()
    stat = path.stat()
    seen = {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    memo = _verdict_folder() / f"file-{hashlib.sha256(str(path).encode()).hexdigest()[:24]}.json"
    known = _read_json(memo)
    if known and {k: known.get(k) for k in seen} == seen and isinstance(known.get("sha256"), str):
        return known["sha256"]
    digest = file_sha256(path)
    try:
        _write_json(memo, {**seen, "sha256": digest})
    except OSError:  # a read-only cache folder: hashed again next time
        pass
    return digest


def weights_sha256(model: "torch.nn.Module", source: Any = None) -> str:
    """The identity of the weights loaded: the file's SHA-256 when ``source`` (a zoo name or a
    path) names one file, else the state dict's bytes (modules, run folders)."""
    if source is not None and not hasattr(source, "state_dict"):
        from . import zoo

        name = str(source)
        path = zoo.weights_file(name) if name in zoo.ZOO else Path(name).expanduser()
        if path.is_file():
            return cached_file_sha256(path)
    return state_dict_sha256(model)


# -- calibration -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    """One calibration: ``candidate`` against fp32 for one set of weights on one kind of device."""

    candidate: str
    worst_psnr_db: float  # the lowest probe's PSNR of the candidate's output against fp32's (uint8)
    psnr_db: tuple[float, ...]  # per probe
    fp32_s: float  # seconds per probe, float32 (the first probe is the warm-up, not counted)
    candidate_s: float  # seconds per probe, the candidate
    seconds: float  # the whole calibration, snapshots built included
    weights_sha256: str = ""
    device: str = ""
    torch: str = ""
    measured_at: str = ""

    @property
    def holds(self) -> bool:
        """Whether the candidate stays close enough to fp32 on every probe."""
        return self.worst_psnr_db >= BF16_MIN_PSNR


def probe_images(in_size: int) -> "torch.Tensor":
    """(K, 3, in, in) float32 in [-1, 1]: the probe set, deterministic and synthetic (no files):
    a colour ramp with rings, a smooth seeded texture, dark strokes on white (as glyphs and line art
    are) and a texture of several scales (as photos are). Each is drawn at 64x64, brought to
    ``in_size`` by MATLAB bicubic (as inputs are) and rounded to 8 bits (as image files are)."""
    import numpy as np
    import torch

    from .imaging.convert import tensor_to_uint8, uint8_to_tensor
    from .imaging.imresize import imresize

    rng = np.random.default_rng(2026)
    r = np.linspace(0, 1, 64)
    yy, xx = np.meshgrid(r, r, indexing="ij")
    rings = np.stack([xx, yy, 0.5 + 0.5 * np.sin(40 * ((xx - 0.4) ** 2 + (yy - 0.6) ** 2))], axis=-1)
    smooth = imresize(rng.uniform(0, 1, (8, 8, 3)), output_shape=(64, 64))
    ink = (np.abs(yy - 0.3 - 0.4 * xx) < 0.06) | (np.abs(xx - 0.7) < 0.05) | ((xx - 0.35) ** 2 + (yy - 0.7) ** 2 < 0.02)
    strokes = np.repeat(np.where(ink, 0.05, 0.95)[..., None], 3, axis=-1)
    scales = sum(imresize(rng.uniform(-1, 1, (n, n, 3)), output_shape=(64, 64)) / k
                 for k, n in enumerate((4, 16, 64), start=1))
    photo = 0.5 + 0.25 * scales
    small = np.stack([imresize(img, output_shape=(in_size, in_size)) for img in (rings, smooth, strokes, photo)])
    as_uint8 = tensor_to_uint8(torch.from_numpy(small * 2 - 1).permute(0, 3, 1, 2))
    return uint8_to_tensor(as_uint8)


def _psnr_uint8(a: "np.ndarray", b: "np.ndarray") -> float:
    """PSNR (dB) of two uint8 images; identical images give 999 (kept finite for JSON)."""
    import numpy as np

    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 999.0 if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def _run_probes(model: "torch.nn.Module", device: "torch.device", precision: str,
                probes: "torch.Tensor") -> tuple[list["np.ndarray"], float]:
    """Each probe's output through ``precision``'s snapshot, one at a time (bounded memory), and the
    seconds per probe after the first (the warm-up)."""
    import torch

    from .imaging.convert import tensor_to_uint8
    from .inference import build_inference_model

    net = build_inference_model(model, device=device, precision=precision)
    outputs, times = [], []
    with torch.inference_mode():
        for probe in probes:
            start = time.perf_counter()
            outputs.append(tensor_to_uint8(net(probe[None].to(device)))[0])
            times.append(time.perf_counter() - start)
    del net
    return outputs, (sum(times[1:]) / len(times[1:]) if len(times) > 1 else times[0])


CALIBRATIONS = {"count": 0}  # calibration runs in this process (tests assert that a cached verdict runs none)


def calibrate(model: "torch.nn.Module", device: "str | torch.device", candidate: str,
              probes: "torch.Tensor | None" = None) -> Verdict:
    """Run ``model`` in fp32 and in ``candidate`` on the probe set (default :func:`probe_images`) and
    measure the PSNR of the candidate's output against fp32's (uint8 images, the restorer's
    rounding). Nothing is cached here: :func:`resolve_auto` does that."""
    import torch

    check_precision(candidate)
    start = time.perf_counter()
    CALIBRATIONS["count"] += 1
    device = torch.device(device)
    if probes is None:
        probes = probe_images(model.in_size)
    reference, fp32_s = _run_probes(model, device, "fp32", probes)
    reduced, candidate_s = _run_probes(model, device, candidate, probes)
    scores = tuple(_psnr_uint8(a, b) for a, b in zip(reference, reduced))
    return Verdict(candidate, min(scores), scores, fp32_s, candidate_s, time.perf_counter() - start)


def verdict_path(weights_id: str, device: str, candidate: str) -> Path:
    """Where the verdict for these weights, this device kind, this torch and ``candidate`` is kept."""
    import torch

    key = json.dumps([weights_id, device, torch.__version__, candidate])
    return _verdict_folder() / f"verdict-{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"


def load_verdict(path: Path) -> Verdict | None:
    """The verdict stored at ``path``, or None (missing, unreadable, or from another layout)."""
    data = _read_json(path)
    if data is None:
        return None
    try:
        data["psnr_db"] = tuple(data["psnr_db"])
        return Verdict(**data)
    except (TypeError, KeyError):
        return None


def _device_facts(device: "torch.device") -> tuple[tuple[int, int] | None, str]:
    """(CUDA compute capability or None, device signature)."""
    from .hardware import device_signature

    if device.type != "cuda":
        return None, device_signature(device.type)
    import torch

    capability = torch.cuda.get_device_capability(device)
    return capability, device_signature("cuda", cuda_name=torch.cuda.get_device_name(device),
                                        cuda_capability=capability)


def measured_verdict(model: "torch.nn.Module", device: "torch.device", candidate: str, weights_id: str,
                     signature: str, refresh: bool = False) -> tuple[Verdict, bool]:
    """``(verdict, cached)``: the stored verdict for these weights on this kind of device, or a new
    calibration (``refresh=True`` always measures), stored atomically for the next run."""
    import torch

    path = verdict_path(weights_id, signature, candidate)
    stored = None if refresh else load_verdict(path)
    if stored is not None and (stored.weights_sha256, stored.device, stored.torch) == (weights_id, signature,
                                                                                     torch.__version__):
        return stored, True
    verdict = calibrate(model, device, candidate)
    verdict = Verdict(**{**asdict(verdict), "weights_sha256": weights_id, "device": signature,
                         "torch": torch.__version__,
                         "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    try:
        _write_json(path, asdict(verdict))
    except OSError:  # a read-only cache folder: measured again next time
        pass
    return verdict, False


def describe_verdict(verdict: Verdict, cached: bool, why: str) -> str:
    """The one line saying what auto chose from a measurement, with the figure (``why``: the
    hardware's reason for the candidate)."""
    when = "cached" if cached else f"measured now in {verdict.seconds:.1f} s"
    if verdict.holds:
        return f"auto: {verdict.candidate} (worst probe {verdict.worst_psnr_db:.1f} dB against fp32, {when}; {why})"
    return (f"auto: fp32 ({verdict.candidate}'s worst probe is {verdict.worst_psnr_db:.1f} dB against fp32, under "
            f"{BF16_MIN_PSNR:g} dB, {when}; --precision {verdict.candidate} to use it anyway)")


@dataclass(frozen=True)
class Choice:
    """What ``auto`` chose and why; ``verdict``/``cached``/``path`` when a measurement decided it."""

    precision: str
    line: str | None
    verdict: Verdict | None = None
    cached: bool = False
    path: Path | None = None


def auto_choice(requested: str, model: "torch.nn.Module", device: "str | torch.device", entry: Any = None,
                source: Any = None, refresh: bool = False) -> Choice:
    """The precision for a model about to run on ``device``: ``requested`` itself (line None) unless
    it is ``"auto"``; then the hardware's candidate if the weights hold up in it, else fp32.

    entry: the model's zoo declaration when it was loaded by zoo name: its measured figure is used
    (no calibration). source: what the weights were loaded from (zoo name, path, or the module),
    for their SHA-256. refresh: measure again even if a verdict is stored (or declared). ``line`` is
    said once: "auto: bf16 (worst probe 54.1 dB against fp32, measured now in 6.2 s; the CPU has ...)".
    """
    if requested != AUTO:
        return Choice(check_precision(requested), None)
    import torch

    from .hardware import choose_precision

    device = torch.device(device)
    capability, signature = _device_facts(device)
    candidate, why = choose_precision(device.type, cuda_capability=capability)
    if candidate == "fp32":
        return Choice("fp32", f"auto: fp32 ({why})")
    declared = getattr(entry, "bf16_psnr", None) if candidate == "bf16" else None
    if declared is not None and not refresh:
        if declared >= BF16_MIN_PSNR:
            return Choice(candidate, f"auto: {candidate} ({entry.name}'s declared figure {declared:g} dB against "
                                     f"fp32; {why})")
        return Choice("fp32", f"auto: fp32 ({entry.name}'s {candidate} output is {declared:g} dB against fp32, "
                              f"under {BF16_MIN_PSNR:g} dB; --precision {candidate} to use it anyway)")
    weights_id = weights_sha256(model, source)
    verdict, cached = measured_verdict(model, device, candidate, weights_id, signature, refresh)
    return Choice(candidate if verdict.holds else "fp32", describe_verdict(verdict, cached, why), verdict, cached,
                  verdict_path(weights_id, signature, candidate))


def resolve_auto(requested: str, model: "torch.nn.Module", device: "str | torch.device", entry: Any = None,
                 source: Any = None) -> tuple[str, str | None]:
    """``(precision, line)`` of :func:`auto_choice`: what the Upscaler (API, CLI, server) runs."""
    choice = auto_choice(requested, model, device, entry, source)
    return choice.precision, choice.line


def model_choice(source: str, device: "str | torch.device" = "cpu", refresh: bool = False,
                 download: bool = False) -> tuple[Choice, str]:
    """``(choice, device signature)`` of ``auto`` for a zoo model or weights file (what ``gleansr
    precision`` shows); ``refresh=True`` measures again, over a stored verdict or a declared figure."""
    from . import zoo

    model = zoo.load_model(source, download=download).eval()
    choice = auto_choice(AUTO, model, device, zoo.ZOO.get(str(source)), source, refresh)
    import torch

    return choice, _device_facts(torch.device(device))[1]
