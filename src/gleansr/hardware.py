"""What the hardware computes fast, read without importing torch: the choice behind ``precision="auto"``.

bfloat16 halves GLEAN's time on CPUs with native bf16 matrix units (measured on a 2-core Xeon with
AMX: 0.62 s against 1.31 s per cat_8x image in float32) and stays >= 50 dB PSNR against the float32
output on the models the deployment benchmark (``benchmarks/bench_deploy.py``) covers (cat_8x
53.7 dB, the bundled glyph model 51.8 dB; rerun it when a model is added). Without
such units PyTorch emulates bf16 through float32 conversions and it is slower than float32, so
``auto`` picks bf16 only where the CPU reports AMX-BF16 or AVX512-BF16 (Linux ``/proc/cpuinfo``
flags) and on CUDA GPUs with bf16 tensor cores (compute capability 8.0, Ampere, and newer).
That choice is only the *candidate*: :func:`gleansr.precision.resolve_auto` takes it for the weights
actually loaded when a calibration run (or a zoo declaration's figure) shows it holds up.
"""
from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    import torch

CPUINFO = Path("/proc/cpuinfo")
# /proc/cpuinfo flag -> what it means for us; the first one present names the reason
BF16_CPU_FLAGS = {
    "amx_bf16": "AMX-BF16 matrix units",
    "avx512_bf16": "AVX512-BF16 instructions",
}
CUDA_BF16_CAPABILITY = (8, 0)
# the flags that decide how fast each precision runs: what a calibration verdict is valid for
# (x86: vector and matrix extensions; ARM: "Features" names)
ISA_FLAGS = frozenset({"avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni", "amx_tile",
                       "amx_bf16", "amx_fp16", "asimd", "asimdhp", "sve", "sve2", "bf16", "i8mm"})


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The ISA flags of the first CPU listed in ``cpuinfo`` (default: this machine's /proc/cpuinfo).

    Empty where the file does not exist (macOS, Windows): nothing is assumed.
    """
    if cpuinfo is None:
        try:
            cpuinfo = CPUINFO.read_text(errors="replace")
        except OSError:
            return frozenset()
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("flags", "Features"):  # x86 / ARM spelling
            return frozenset(value.split())
    return frozenset()


def choose_precision(device_type: str, flags: Iterable[str] | None = None,
                     cuda_capability: tuple[int, int] | None = None) -> tuple[str, str]:
    """``(precision, why)``: the fastest precision ``device_type`` ("cpu" or "cuda") computes natively.

    flags: the CPU's ISA flags (default: :func:`cpu_flags` of this machine); tests pass fake sets.
    cuda_capability: the GPU's (major, minor) when known; older than 8.0 gets float32.
    ``why`` is a clause for the user, e.g. "the CPU has AMX-BF16 matrix units".
    """
    if device_type == "cuda":
        if cuda_capability is not None and tuple(cuda_capability) < CUDA_BF16_CAPABILITY:
            major, minor = cuda_capability
            return "fp32", f"this GPU (compute capability {major}.{minor}) has no bf16 tensor cores"
        return "bf16", "the GPU has bf16 tensor cores"
    if device_type != "cpu":
        return "fp32", f"no bf16 speed-up is known for {device_type!r} devices"
    present = cpu_flags() if flags is None else frozenset(flags)
    for flag, what in BF16_CPU_FLAGS.items():
        if flag in present:
            return "bf16", f"the CPU has {what}"
    return "fp32", "the CPU has no native bf16 units (no amx_bf16 or avx512_bf16 flag), where bf16 is slower"


def resolve_device(requested: str = "auto", *, local_rank: int | None = None) -> "torch.device":
    """The one device rule of every door: ``auto`` -> this process's GPU if CUDA is there
    (``cuda:<local_rank % GPUs>`` under torchrun), else the CPU; ``cuda``/``cuda:N`` without CUDA,
    or an unknown name, is a one-line GleanError."""
    import torch

    from .errors import GleanError

    try:
        device = torch.device("cuda" if requested == "auto" and torch.cuda.is_available()
                              else "cpu" if requested == "auto" else requested)
    except RuntimeError:
        raise GleanError(f"unknown device {requested!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise GleanError(f"device {requested!r} was asked for, but PyTorch sees no CUDA device "
                             "(use --device cpu, or a CUDA build of PyTorch)")
        count = torch.cuda.device_count()
        index = device.index if device.index is not None else (local_rank or 0) % count
        if index >= count:
            raise GleanError(f"device cuda:{index} was asked for, but only {count} GPU(s) are visible")
        device = torch.device("cuda", index)
    elif device.type != "cpu":
        raise GleanError(f"unsupported device {requested!r}; use auto, cpu, cuda or cuda:N")
    return device


def torchrun_place() -> tuple[int, int, int]:
    """``(rank, local_rank, world_size)`` of this process as ``torchrun`` sets them (0, 0, 1 alone)."""
    from .errors import GleanError

    place = []
    for name, default in (("RANK", 0), ("LOCAL_RANK", 0), ("WORLD_SIZE", 1)):
        value = os.environ.get(name)
        try:
            place.append(default if value is None else int(value))
        except ValueError:
            raise GleanError(f"environment variable {name}={value!r} is not an integer") from None
    return place[0], place[1], place[2]


def device_signature(device_type: str, flags: Iterable[str] | None = None, cuda_name: str | None = None,
                     cuda_capability: tuple[int, int] | None = None) -> str:
    """The kind of device a measurement holds for: ``"cpu x86_64 avx2,avx512_bf16,avx512f,fma"``
    (the architecture and the :data:`ISA_FLAGS` present) or ``"cuda NVIDIA H100 sm_90"``."""
    if device_type == "cuda":
        major, minor = cuda_capability or (0, 0)
        return f"cuda {cuda_name or 'unknown GPU'} sm_{major}{minor}"
    if device_type != "cpu":
        return device_type
    present = cpu_flags() if flags is None else frozenset(flags)
    return f"cpu {platform.machine() or 'unknown'} {','.join(sorted(present & ISA_FLAGS)) or 'baseline'}"
