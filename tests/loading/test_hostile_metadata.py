"""Loading checks before it builds (#23 items 9 and 10): the bundled glyph model's real tensors under
forged ``gleansr_config`` metadata, and non-finite weights, through the API and the CLI."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

from gleansr import zoo
from gleansr.errors import GleanError
from gleansr.loading import load_glean_state
from gleansr.models import glean as glean_models

GLYPHS = zoo.ASSETS / "glean_glyphs_8x.safetensors"
REAL = zoo.get_entry("glean_glyphs_8x").config.to_dict()

# name -> the forged metadata text (each is a one-line refusal, before any module is built)
FORGED = {
    "string_size": json.dumps({**REAL, "in_size": "16"}),
    "size_8192": json.dumps({**REAL, "out_size": 8192}),
    "not_power_of_two": json.dumps({**REAL, "in_size": 12}),
    "out_not_above_in": json.dumps({**REAL, "out_size": 16}),
    "huge_depth": json.dumps({**REAL, "num_rrdbs": 100000}),
    "huge_width": json.dumps({**REAL, "style_channels": 4096, "channel_max": 4096}),  # 1.5 G parameters asked
    "nan_multiplier": json.dumps({**REAL, "channel_multiplier": float("nan")}),
    "taps_text": json.dumps({**REAL, "blur_kernel": "1,3,3,1"}),
    "unknown_key": json.dumps({**REAL, "evil": 1}),
    "not_a_table": json.dumps([16, 128]),
    "not_json": "{in_size: 16",
    "bool_as_flag": json.dumps({**REAL, "latent_bank": "yes"}),
    "other_valid_arch": json.dumps({**REAL, "num_rrdbs": 3}),  # valid, but not these tensors
}
CLI_CASES = ("size_8192", "huge_width", "other_valid_arch")


def _tensors_and_meta() -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(GLYPHS), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())


@pytest.fixture(scope="module")
def forged(tmp_path_factory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("forged")
    tensors, meta = _tensors_and_meta()
    files = {}
    for name, text in FORGED.items():
        files[name] = root / f"{name}.safetensors"
        save_file(tensors, str(files[name]), metadata={**meta, "gleansr_config": text})
    bad = dict(tensors)
    key = "decoder.0.upsample_conv.weight"
    bad[key] = bad[key].clone()
    bad[key].view(-1)[7] = float("nan")
    files["nan_weights"] = root / "nan.safetensors"
    save_file(bad, str(files["nan_weights"]), metadata=meta)
    files["nan_key"] = key
    return files


@pytest.fixture()
def nothing_built(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a module was built from forged metadata")

    monkeypatch.setattr(glean_models.GLEANStyleGANv2, "__init__", refuse)


@pytest.mark.parametrize("name", sorted(FORGED))
def test_forged_metadata_is_one_line_before_anything_is_built(forged, name, nothing_built):
    with pytest.raises(GleanError) as caught:
        zoo.load_model(forged[name])
    message = str(caught.value)
    assert "\n" not in message and str(forged[name]) in message and "gleansr_config" in message
    if name in ("huge_width", "other_valid_arch", "huge_depth") and "between" not in message:
        assert "its tensors hold 3,798,812" in message


def test_the_real_metadata_still_loads(forged):
    model = zoo.load_model(GLYPHS)
    assert model.config.to_dict() == REAL


def test_non_finite_weights_are_refused_naming_the_file_and_tensor(forged):
    with pytest.raises(GleanError) as caught:
        zoo.load_model(forged["nan_weights"])
    assert f"{forged['nan_weights']}: tensor {forged['nan_key']!r} holds NaN" in str(caught.value)
    assert "--allow-nonfinite" in str(caught.value)
    model = zoo.load_model(forged["nan_weights"], allow_nonfinite=True)  # forensics
    assert torch.isnan(model.state_dict()[forged["nan_key"]]).any()
    with pytest.raises(GleanError, match="holds NaN"):
        load_glean_state(forged["nan_weights"])  # what `train --init` reads


def _cli(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gleansr.cli", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd)


def _one_line_error(done: subprocess.CompletedProcess, path) -> str:
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("gleansr: error: ") and str(path) in lines[-1], done.stderr
    return lines[-1]


def test_upscale_refuses_forged_and_non_finite_weights(forged, tmp_path):
    image = tmp_path / "in.png"
    Image.fromarray(np.full((16, 16, 3), 200, np.uint8)).save(image)
    for name in (*CLI_CASES, "nan_weights"):
        done = _cli("upscale", str(image), "-o", str(tmp_path / f"{name}.png"), "--weights", str(forged[name]),
                    cwd=tmp_path)
        _one_line_error(done, forged[name])
        assert not (tmp_path / f"{name}.png").exists()


def test_train_init_refuses_forged_and_non_finite_weights(forged, tmp_path):
    data = tmp_path / "hr"
    data.mkdir()
    for i in range(2):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (128, 128, 3), np.uint8)).save(data / f"{i}.png")
    for name in (*CLI_CASES, "nan_weights"):
        out = tmp_path / f"run_{name}"
        done = _cli("train", "glean_glyphs_8x", "--data", str(data), "--out", str(out), "--init", str(forged[name]),
                    "--bank", "random", "--max-iters", "1", "--batch-size", "2", "--device", "cpu", "--quiet",
                    cwd=tmp_path)
        line = _one_line_error(done, forged[name])
        assert "--init" in line or "gleansr_config" in line or "holds NaN" in line
        assert not (out / "last.pt").exists()


def test_demo_refuses_non_finite_weights_unless_allowed(forged, tmp_path):
    refused = _cli("demo", "--weights", str(forged["nan_weights"]), "-o", str(tmp_path / "a"), "--device", "cpu",
                   cwd=tmp_path)
    assert "holds NaN" in _one_line_error(refused, forged["nan_weights"])
    allowed = _cli("demo", "--weights", str(forged["nan_weights"]), "-o", str(tmp_path / "b"), "--device", "cpu",
                   "--allow-nonfinite", cwd=tmp_path)
    assert allowed.returncode == 0 and "holds NaN" not in allowed.stderr, allowed.stderr
    assert any((tmp_path / "b").iterdir())


@pytest.mark.parametrize("forge", [
    {"out_size": 8192}, {"style_channels": 4096}, {"num_mlps": "2"}, {"blur_kernel": [0, 0]}, {"evil": 1},
])
def test_forged_bank_metadata_is_one_line(tmp_path, forge):
    from gleansr.arch import StyleGAN2Config
    from gleansr.loading import BankWeights, export_bank, load_bank
    from gleansr.models.stylegan2 import StyleGAN2Generator

    config = StyleGAN2Config(out_size=16, style_channels=8, num_mlps=2, channel_max=8)
    path = export_bank(BankWeights(StyleGAN2Generator.from_config(config).state_dict(), config),
                       tmp_path / "bank.safetensors")[0]
    with safe_open(str(path), "pt") as f:
        tensors, meta = {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())
    save_file(tensors, str(path), metadata={**meta, "gleansr_config": json.dumps({**config.to_dict(), **forge})})
    with pytest.raises(GleanError) as caught:
        load_bank(path)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)


def test_finite_weights_whose_sum_overflows_are_accepted_and_inf_is_named():
    from gleansr.loading.strict import check_finite

    big = torch.full((4,), 60000.0, dtype=torch.float16)  # sums past float16's range, every value finite
    check_finite({"w": big, "steps": torch.tensor(3)}, "f.pt")
    with pytest.raises(GleanError, match=r"f.pt: tensor 'w' holds infinite values"):
        check_finite({"ok": big, "w": torch.tensor([1.0, float("-inf")])}, "f.pt")
