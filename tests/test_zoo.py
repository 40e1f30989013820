"""Every zoo declaration: sizes against a forward pass, weights source, recipe, and the zoo's user messages."""
from __future__ import annotations

import re

import pytest
import torch

from gleansr import zoo
from gleansr.cli import main
from gleansr.errors import GleanError
from gleansr.train.config import VGG_INPUT_RANGES, load_config
from gleansr.zoo import ZOO, create_model, get_entry, load_model, weights_file

NAMES = list(ZOO)


@pytest.mark.parametrize("name", NAMES)
def test_declaration_sizes_match_a_forward_pass(name):
    entry = ZOO[name]
    assert entry.name == name and entry.scale == entry.out_size // entry.in_size > 1
    with torch.device("meta"):  # every declared size, no compute
        y = create_model(name)(torch.empty(1, 3, entry.in_size, entry.in_size))
    assert tuple(y.shape) == (1, 3, entry.out_size, entry.out_size)
    assert entry.face_model == (entry.domain == "faces")
    assert entry.domain and entry.input_kind and entry.licence and entry.test_set and entry.trained_on
    assert f"{entry.in_size}x{entry.in_size}" in entry.input_kind


@pytest.mark.parametrize("name", NAMES)
def test_declaration_weights_and_recipe(name):
    entry = ZOO[name]
    source = entry.weights
    if source.bundled:
        assert (zoo.ASSETS / source.filename).is_file()
    else:
        assert source.url.endswith("/" + source.filename) and source.sha256_prefix in source.filename
    recipe = entry.recipe
    if recipe is None:
        return
    assert recipe.perceptual_input_range in VGG_INPUT_RANGES and recipe.total_batch >= recipe.batch_size
    config = load_config(name)  # what `gleansr train NAME` starts from
    assert config.model == entry.config and config.batch_size == recipe.batch_size
    assert config.degrade == recipe.degradations and config.perceptual_input_range == recipe.perceptual_input_range
    assert all(getattr(config, key) == value for key, value in recipe.settings)


def test_upstream_recipes_are_the_released_ones():
    total = {name: (e.recipe.batch_size, e.recipe.processes) for name, e in ZOO.items() if not e.weights.bundled}
    assert total == {"glean_cat_8x": (8, 2), "glean_cat_16x": (8, 2), "glean_ffhq_16x": (4, 2),
                     "glean_in128out1024_4x2_300k_ffhq_celebahq": (2, 4)}
    assert [n for n, e in ZOO.items() if e.recipe and e.recipe.degradations] == ["glean_in128out1024_4x2_300k_ffhq_celebahq"]
    assert ZOO["glean_glyphs_8x"].recipe.bank is None


def test_bundled_model_loads_and_runs_for_real():
    entry = ZOO["glean_glyphs_8x"]
    model = create_model(entry.name, "pretrained")
    assert model.config == entry.config
    with torch.no_grad():
        y = model(torch.zeros(2, 3, entry.in_size, entry.in_size))
    assert y.shape == (2, 3, entry.out_size, entry.out_size) and torch.isfinite(y).all()
    assert load_model(entry.name).config == entry.config


def test_typos_get_did_you_mean(capsys):
    with pytest.raises(GleanError, match="unknown model 'glean_cat8x'; did you mean 'glean_cat_8x'\\?"):
        get_entry("glean_cat8x")
    with pytest.raises(GleanError, match="did you mean 'glean_glyphs_8x'"):
        load_model("glean_glyph_8x")
    with pytest.raises(GleanError, match="weights file not found: .*nope.pth"):
        load_model("nope.pth")


def test_missing_weights_are_reported_before_any_model_is_built(tmp_path, monkeypatch):
    monkeypatch.setenv("GLEANSR_HOME", str(tmp_path))
    built = []
    import gleansr.models.glean as glean

    monkeypatch.setattr(glean, "GLEANStyleGANv2", lambda **kw: built.append(kw))
    monkeypatch.setattr(glean, "build_uninitialised", lambda config: built.append(config))
    with pytest.raises(GleanError, match="not in the weights cache; allow downloading \\(--download\\).*fetch https://"):
        create_model("glean_ffhq_16x", "pretrained")
    with pytest.raises(GleanError, match="glean_cat_8x_20210614-d3ac8683.pth is not in the weights cache"):
        weights_file("glean_cat_8x")
    assert built == []


def test_upscale_with_a_missing_release_fails_fast(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GLEANSR_HOME", str(tmp_path))
    import gleansr.models.glean as glean

    monkeypatch.setattr(glean, "build_uninitialised", lambda config: pytest.fail("a model was built"))
    from PIL import Image

    Image.new("RGB", (64, 64)).save(tmp_path / "face.png")
    assert main(["upscale", str(tmp_path / "face.png"), "--model", "glean_ffhq_16x", "--device", "cpu"]) == 2
    assert "not in the weights cache" in capsys.readouterr().err


def test_models_command_lists_every_entry_with_domain_and_input(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for entry in ZOO.values():
        line = next(line for line in out.splitlines() if line.startswith(entry.name + " "))
        assert re.search(rf"\b{entry.domain}\b", line) and f"{entry.in_size} -> {entry.out_size}" in line
    assert main(["models", "--long"]) == 0
    details = capsys.readouterr().out
    for entry in ZOO.values():
        assert entry.input_kind in " ".join(details.split())  # wrapped lines joined


def test_the_zoo_reads_without_torch():
    """Argument parsing, `gleansr models` and ONNX deployments read model facts without PyTorch."""
    import subprocess
    import sys

    probe = "import sys, gleansr.zoo as z; z.get_entry('glean_glyphs_8x'); print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "False", done.stderr
