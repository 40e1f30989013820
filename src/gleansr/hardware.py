"""What the hardware computes fast, read without importing torch: the choice behind ``precision="auto"``.

bfloat16 halves GLEAN's time on CPUs with native bf16 matrix units (measured on a 2-core Xeon with
AMX: 0.62 s against 1.31 s per cat_8x image in float32) and stays >= 50 dB PSNR against the float32
output on the models the deployment benchmark (``benchmarks/bench_deploy.py``) covers (cat_8x
53.7 dB, the bundled glyph model 51.8 dB; rerun it when a model is added). Without
such units PyTorch emulates bf16 through float32 conversions and it is slower than float32, so
``auto`` picks bf16 only where the CPU reports AMX-BF16 or AVX512-BF16 (Linux ``/proc/cpuinfo``
flags) and on CUDA GPUs with bf16 tensor cores (compute capability 8.0, Ampere, and newer).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

CPUINFO = Path("/proc/cpuinfo")
# /proc/cpuinfo flag -> what it means for us; the first one present names the reason
BF16_CPU_FLAGS = {
    "amx_bf16": "AMX-BF16 matrix units",
    "avx512_bf16": "AVX512-BF16 instructions",
}
CUDA_BF16_CAPABILITY = (8, 0)


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
    """``(precision, reason)`` for ``precision="auto"`` on ``device_type`` ("cpu" or "cuda").

    flags: the CPU's ISA flags (default: :func:`cpu_flags` of this machine); tests pass fake sets.
    cuda_capability: the GPU's (major, minor) when known; older than 8.0 gets float32.
    The reason is one line for the user, e.g. "bf16: the CPU has AMX-BF16 matrix units".
    """
    if device_type == "cuda":
        if cuda_capability is not None and tuple(cuda_capability) < CUDA_BF16_CAPABILITY:
            major, minor = cuda_capability
            return "fp32", f"fp32: this GPU (compute capability {major}.{minor}) has no bf16 tensor cores"
        return "bf16", "bf16: the GPU has bf16 tensor cores (--precision fp32 for exact float32)"
    if device_type != "cpu":
        return "fp32", f"fp32: no bf16 speed-up is known for {device_type!r} devices"
    present = cpu_flags() if flags is None else frozenset(flags)
    for flag, what in BF16_CPU_FLAGS.items():
        if flag in present:
            return "bf16", f"bf16: the CPU has {what} (--precision fp32 for exact float32)"
    return "fp32", "fp32: the CPU has no native bf16 units (no amx_bf16 or avx512_bf16 flag), where bf16 is slower"
