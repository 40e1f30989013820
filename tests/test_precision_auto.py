"""precision="auto" measures: the hardware's candidate is taken only for weights whose output holds up in it."""
from __future__ import annotations

import json
import re

import pytest
import torch

from gleansr import GLEANStyleGANv2, hardware, hub, precision
from gleansr.loading.save import save_safetensors
from gleansr.precision import BF16_MIN_PSNR, CALIBRATIONS, resolve_auto
from gleansr.zoo import ZOO

from conftest import TINY_GLEAN
from test_hardware import ARM, EPYC_AVX2, XEON_AMX

EPYC_ZEN4 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9B14
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512_bf16 avx512_vnni
"""


@pytest.fixture
def cpu(tmp_path, monkeypatch):
    """Fake this machine's /proc/cpuinfo and give it an empty cache folder; returns a setter."""
    monkeypatch.setenv("GLEANSR_HOME", str(tmp_path / "home"))
    fake = tmp_path / "cpuinfo"
    monkeypatch.setattr(hardware, "CPUINFO", fake)

    def use(text: str) -> None:
        fake.write_text(text)
    use(EPYC_ZEN4)
    return use


def tiny(scale: float = 1.0, seed: int = 0) -> GLEANStyleGANv2:
    """The tiny GLEAN; ``scale`` multiplies every weight matrix, which pushes its activations up until
    bf16's 8-bit mantissa no longer carries the output (x4: about 25 dB against fp32)."""
    torch.manual_seed(seed)
    model = GLEANStyleGANv2(**TINY_GLEAN).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.mul_(scale)
    return model


def figure(line: str) -> float:
    return float(re.search(r"worst probe (?:is )?([0-9.]+) dB", line).group(1))


def test_bf16_is_taken_when_the_output_holds_and_the_verdict_is_reused(cpu):
    model, start = tiny(), CALIBRATIONS["count"]
    chosen, line = resolve_auto("auto", model, "cpu", source=model)
    assert chosen == "bf16" and CALIBRATIONS["count"] == start + 1
    assert line.startswith("auto: bf16 (worst probe ") and "measured now" in line and "AVX512-BF16" in line
    stored = [json.loads(p.read_text()) for p in (hub.cache_root() / "precision").glob("verdict-*.json")]
    assert len(stored) == 1 and round(stored[0]["worst_psnr_db"], 1) == figure(line) >= BF16_MIN_PSNR
    assert stored[0]["weights_sha256"] == precision.state_dict_sha256(model) and "avx512_bf16" in stored[0]["device"]
    again, line2 = resolve_auto("auto", tiny(), "cpu", source=tiny())  # same weights, another module
    assert again == "bf16" and CALIBRATIONS["count"] == start + 1  # no second calibration
    assert "cached" in line2 and figure(line2) == figure(line)


def test_fp32_is_kept_when_bf16_breaks_the_output(cpu):
    chosen, line = resolve_auto("auto", tiny(scale=4.0), "cpu")
    assert chosen == "fp32" and figure(line) < BF16_MIN_PSNR
    assert line.startswith("auto: fp32 (bf16's worst probe is ") and "--precision bf16 to use it anyway" in line


def test_changed_weights_are_measured_again(cpu):
    start = CALIBRATIONS["count"]
    resolve_auto("auto", tiny(seed=0), "cpu")
    resolve_auto("auto", tiny(seed=1), "cpu")
    assert CALIBRATIONS["count"] == start + 2


def test_a_file_is_hashed_once_and_again_when_it_changes(cpu, tmp_path, monkeypatch):
    path = save_safetensors(tiny(), tmp_path / "w.safetensors")
    reads = []
    real = hub.file_sha256
    monkeypatch.setattr(hub, "file_sha256", lambda p: reads.append(p) or real(p))
    first = precision.weights_sha256(tiny(), str(path))
    assert first == real(path) and precision.weights_sha256(tiny(), str(path)) == first and len(reads) == 1
    save_safetensors(tiny(seed=1), path, overwrite=True)
    assert precision.weights_sha256(tiny(), str(path)) != first and len(reads) == 2


@pytest.mark.parametrize("cpuinfo, expected", [(EPYC_AVX2, "no native bf16"), (ARM, "no native bf16")])
def test_without_native_bf16_nothing_is_measured(cpu, cpuinfo, expected):
    cpu(cpuinfo)
    start = CALIBRATIONS["count"]
    chosen, line = resolve_auto("auto", tiny(), "cpu")
    assert (chosen, CALIBRATIONS["count"]) == ("fp32", start) and line.startswith("auto: fp32 (") and expected in line


def test_each_kind_of_cpu_has_its_own_verdict(cpu):
    start = CALIBRATIONS["count"]
    model = tiny()
    assert resolve_auto("auto", model, "cpu")[0] == "bf16"
    cpu(XEON_AMX)
    chosen, line = resolve_auto("auto", model, "cpu")
    assert chosen == "bf16" and "AMX-BF16" in line and "measured now" in line
    assert CALIBRATIONS["count"] == start + 2


def test_a_declared_figure_and_an_explicit_precision_skip_the_measurement(cpu):
    start = CALIBRATIONS["count"]
    entry = ZOO["glean_glyphs_8x"]
    chosen, line = resolve_auto("auto", tiny(), "cpu", entry=entry)
    assert chosen == "bf16" and f"declared figure {entry.bf16_psnr:g} dB" in line
    assert resolve_auto("fp32", tiny(), "cpu") == ("fp32", None)
    assert CALIBRATIONS["count"] == start
    with pytest.raises(precision.PrecisionError, match="fp64"):
        resolve_auto("fp64", tiny(), "cpu")


def test_the_upscaler_and_the_command_go_through_it(cpu, tmp_path, capsys):
    from gleansr.cli import main
    from gleansr.pipeline.upscaler import Upscaler

    path = save_safetensors(tiny(), tmp_path / "w.safetensors")
    up = Upscaler(str(path), device="cpu")
    assert up.precision == "bf16" and "measured now" in up.precision_reason
    assert main(["precision", str(path), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert f"precision {up.precision_reason.split(', measured')[0]}, cached" in out and "verdict: " in out
    assert main(["precision", str(path), "--device", "cpu", "--refresh"]) == 0
    assert "measured now" in capsys.readouterr().out
