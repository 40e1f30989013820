"""precision="auto": bf16 where the hardware computes it natively, fp32 elsewhere."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gleansr import hardware
from gleansr.hardware import choose_precision, cpu_flags

# Trimmed /proc/cpuinfo of the two kinds of CPU seen on this project's machines.
XEON_AMX = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_fp16 amx_bf16 amx_tile amx_int8
"""
EPYC_AVX2 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B12
flags\t\t: fpu sse2 avx avx2 fma
"""
ARM = """processor\t: 0
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics
"""


def test_flags_are_read_from_cpuinfo():
    assert {"amx_bf16", "avx512_bf16", "avx2"} <= cpu_flags(XEON_AMX)
    assert "amx_bf16" not in cpu_flags(EPYC_AVX2) and "avx2" in cpu_flags(EPYC_AVX2)
    assert "asimd" in cpu_flags(ARM)
    assert cpu_flags("") == frozenset()


@pytest.mark.parametrize("flags, expected, named", [
    (cpu_flags(XEON_AMX), "bf16", "AMX-BF16"),
    ({"avx512f", "avx512_bf16"}, "bf16", "AVX512-BF16"),  # Zen 4, Cooper Lake: bf16 dot products, no AMX
    (cpu_flags(EPYC_AVX2), "fp32", "no native bf16"),
    (cpu_flags(ARM), "fp32", "no native bf16"),
    (set(), "fp32", "no native bf16"),
])
def test_cpu_choice(flags, expected, named):
    precision, reason = choose_precision("cpu", flags)
    assert precision == expected and named in reason and "\n" not in reason


def test_cuda_choice_follows_the_compute_capability():
    assert choose_precision("cuda")[0] == "bf16"
    assert choose_precision("cuda", cuda_capability=(9, 0))[0] == "bf16"
    precision, reason = choose_precision("cuda", cuda_capability=(7, 5))
    assert precision == "fp32" and "7.5" in reason
    assert choose_precision("mps")[0] == "fp32"


def test_this_machine_is_probed_from_proc_cpuinfo(tmp_path, monkeypatch):
    fake = tmp_path / "cpuinfo"
    fake.write_text(EPYC_AVX2)
    monkeypatch.setattr(hardware, "CPUINFO", fake)
    assert choose_precision("cpu")[0] == "fp32"
    fake.write_text(XEON_AMX)
    assert choose_precision("cpu")[0] == "bf16"
    monkeypatch.setattr(hardware, "CPUINFO", tmp_path / "missing")  # macOS, Windows
    assert cpu_flags() == frozenset() and choose_precision("cpu")[0] == "fp32"


def test_the_device_signature_names_the_isa_flags_that_matter():
    amx = hardware.device_signature("cpu", cpu_flags(XEON_AMX))
    assert amx.startswith("cpu ")
    assert {"amx_bf16", "avx512_bf16", "avx2"} <= set(amx.split()[-1].split(",")) and "fpu" not in amx
    assert hardware.device_signature("cpu", cpu_flags(EPYC_AVX2)).split()[-1] == "avx2,fma"
    assert hardware.device_signature("cpu", cpu_flags(ARM)).split()[-1] == "asimd"
    assert hardware.device_signature("cpu", set()).endswith(" baseline")
    assert hardware.device_signature("cuda", cuda_name="NVIDIA H100", cuda_capability=(9, 0)) == "cuda NVIDIA H100 sm_90"


def test_the_probe_does_not_import_torch():
    code = "import sys, gleansr.hardware as h; h.choose_precision('cpu'); print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the answer on a machine without CUDA")
def test_one_device_rule_and_one_sentence_for_every_command(tmp_path, capsys, monkeypatch):
    """upscale, eval, bank sample and training all ask hardware.resolve_device: one sentence."""
    import torch

    from gleansr.cli import main
    from gleansr.errors import GleanError
    from gleansr.hardware import resolve_device, torchrun_place
    from gleansr.train.distributed import init_distributed

    with pytest.raises(GleanError) as err:
        resolve_device("cuda")
    sentence = str(err.value)
    assert "no CUDA device" in sentence and resolve_device("auto") == torch.device("cpu")
    with pytest.raises(GleanError, match="unknown device 'gpu'"):
        resolve_device("gpu")
    with pytest.raises(GleanError) as err:
        init_distributed("cuda")
    assert str(err.value) == sentence
    image = tmp_path / "a.png"
    image.write_bytes(next((Path(__file__).parents[1] / "src/gleansr/assets/samples/lr").glob("*.png")).read_bytes())
    for argv in (["upscale", str(image), "--device", "cuda"], ["eval", str(tmp_path), "--device", "cuda",
                                                               "--model", "glean_glyphs_8x"]):
        assert main(argv) == 2
        assert f"error: {sentence}" in capsys.readouterr().err, argv
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(GleanError, match="WORLD_SIZE='two' is not an integer"):
        torchrun_place()
