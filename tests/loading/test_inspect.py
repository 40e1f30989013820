"""``inspect`` on every format the loader reads, and the one-line messages for files it cannot."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY_GLEAN
from gleansr.cli import main
from gleansr.errors import CheckpointError
from gleansr.loading import (export_bank, export_release, inspect, load_bank, load_glean, load_glean_state,
                             read_training_checkpoint, save_safetensors)
from gleansr.models import GLEANStyleGANv2
from loading_helpers import mmgen_file, nvidia_file, release_file, rosinality_file, training_checkpoint


def _glean_files(tmp_path, glean):
    bare = tmp_path / "bare.pth"
    torch.save(glean.state_dict(), bare)
    return {
        "mmedit": release_file(tmp_path / "release.pth", glean),
        "gleansr": save_safetensors(glean, tmp_path / "g.safetensors", config=glean.config.to_dict()),
        "bare": bare,
    }


def _bank_files(tmp_path):
    exported = tmp_path / "exported.safetensors"
    export_bank(load_bank(rosinality_file(tmp_path / "r0.pt")), exported)
    return {"mmgen": mmgen_file(tmp_path / "mmgen.pth"), "rosinality": rosinality_file(tmp_path / "r.pt"),
            "nvidia": nvidia_file(tmp_path / "n.pkl"), "gleansr-bank": exported}


def test_every_glean_format_is_recognised_and_loads_the_same_model(tmp_path, tiny_glean):
    x = torch.rand(1, 3, 8, 8) * 2 - 1
    with torch.no_grad():
        expected = tiny_glean(x)
    for fmt, path in _glean_files(tmp_path, tiny_glean).items():
        found = inspect(path)
        assert (found.kind, found.format, found.config) == ("glean", fmt, tiny_glean.config)
        line = found.describe()
        assert "\n" not in line and "8 -> 32 (x4)" in line and "M parameters" in line
        with torch.no_grad():
            assert torch.equal(load_glean(path)(x), expected), fmt
    assert inspect(tmp_path / "release.pth").describe().startswith("MMEditing GLEAN release: GLEAN 8 -> 32 (x4)")


def test_training_checkpoints_and_run_folders(tmp_path, tiny_glean):
    last = training_checkpoint(tmp_path / "run", tiny_glean, iteration=7)
    for path in (last, tmp_path / "run"):
        found = inspect(path)
        assert (found.kind, found.format, found.iteration) == ("training-checkpoint", "gleansr-run", 7)
        assert "at iteration 7" in found.describe()
        config, state = load_glean_state(path)
        assert config == tiny_glean.config and state.keys() == tiny_glean.state_dict().keys()
    assert read_training_checkpoint(last)["iteration"] == 7


@pytest.mark.filterwarnings("ignore:.*(TypedStorage|pickle).*")
def test_every_bank_format_is_recognised(tmp_path):
    for fmt, path in _bank_files(tmp_path).items():
        found = inspect(path)
        assert (found.kind, found.format) == ("bank", fmt), path
        assert found.config.out_size == 32 and found.config.style_channels == 16
        assert "StyleGAN2 32 px, style 16, with discriminator" in found.describe()
    with pytest.raises(CheckpointError, match="is a StyleGAN2 bank .*not a GLEAN model.*--bank"):
        load_glean(tmp_path / "r.pt")


def test_an_image_is_named_as_an_image(tmp_path):
    png, jpg = tmp_path / "photo.png", tmp_path / "photo.jpg"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(png)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(jpg)
    with pytest.raises(CheckpointError, match=r"photo\.png is a PNG image, not a weights file"):
        inspect(png)
    with pytest.raises(CheckpointError, match=r"photo\.jpg is a JPEG image, not a weights file"):
        load_glean(jpg)


def test_upscale_weights_given_a_photo_says_it_is_an_image(tmp_path, capsys):
    png = tmp_path / "photo.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(png)
    assert main(["upscale", str(png), "--weights", str(png), "-o", str(tmp_path / "out"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "photo.png is a PNG image, not a weights file" in err
    assert "Traceback" not in err and "unpickl" not in err.lower()


def test_a_torch_file_of_no_known_kind_says_what_it_holds(tmp_path, capsys):
    path = tmp_path / "mystery.pth"
    torch.save({"model": {"layer.weight": torch.zeros(2)}, "epoch": 3}, path)
    with pytest.raises(CheckpointError, match="not a GLEAN checkpoint.*top-level keys: model, epoch"):
        inspect(path)
    torch.save({"fc.weight": torch.zeros(2), "fc.bias": torch.zeros(2)}, path)
    assert main(["convert", str(path), "-o", str(tmp_path / "x.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "no known StyleGAN2 layout" in err and "top-level keys: fc.weight, fc.bias" in err
    assert "2 tensors such as fc.weight" in err


def test_saved_files_get_the_same_mode_as_any_output(tmp_path, tiny_glean):
    previous = os.umask(0o022)
    try:
        training_checkpoint(tmp_path / "run", tiny_glean)
        written = [save_safetensors(tiny_glean, tmp_path / "a.safetensors"),
                   export_release(tmp_path / "run", tmp_path / "b.safetensors"),
                   export_release(tmp_path / "run", tmp_path / "c.pth"),
                   *export_bank(load_bank(rosinality_file(tmp_path / "r.pt")), tmp_path / "bank.safetensors")]
    finally:
        os.umask(previous)
    assert len(written) == 5
    assert {oct(p.stat().st_mode & 0o777) for p in written} == {"0o644"}


def test_export_refusing_to_overwrite_names_the_flag(tmp_path, tiny_glean, capsys):
    training_checkpoint(tmp_path / "run", tiny_glean)
    out = tmp_path / "g.safetensors"
    assert main(["export", str(tmp_path / "run"), "-o", str(out)]) == 0
    before = out.read_bytes()
    assert main(["export", str(tmp_path / "run"), "-o", str(out)]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == before
    assert main(["export", str(tmp_path / "run"), "-o", str(out), "--overwrite"]) == 0


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_train_init_reads_a_generator_written_by_export(tmp_path, tiny_glean, suffix):
    training_checkpoint(tmp_path / "run", tiny_glean)
    out = tmp_path / f"exported{suffix}"
    assert main(["export", str(tmp_path / "run"), "-o", str(out)]) == 0
    config, state = load_glean_state(out)
    assert config == tiny_glean.config
    fresh = GLEANStyleGANv2(**TINY_GLEAN)
    fresh.load_state_dict(state, strict=True)
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in tiny_glean.state_dict().items())


def test_a_glean_file_given_as_a_bank_is_named(tmp_path, tiny_glean, capsys):
    path = release_file(tmp_path / "release.pth", tiny_glean)
    with pytest.raises(CheckpointError, match="is already a GLEAN model file, not a StyleGAN2 bank.*--init"):
        load_bank(path)
    assert main(["bank", "sample", str(path), "-o", str(tmp_path / "grid.png"), "--device", "cpu"]) == 2
    assert "is already a GLEAN model file, not a StyleGAN2 bank" in capsys.readouterr().err


def test_eval_weights_given_a_photo_says_it_is_an_image(tmp_path, capsys):
    png = tmp_path / "photo.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(png)
    assert main(["eval", str(tmp_path), "--weights", str(png), "--device", "cpu"]) == 2
    assert "photo.png is a PNG image, not a weights file" in capsys.readouterr().err
