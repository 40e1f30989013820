"""End to end: train a tiny bank, resume it exactly, sample it, convert it, plug it into GLEAN."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from gleansr import GLEANStyleGANv2, StyleGAN2Discriminator, load_checkpoint
from gleansr.loading import init_glean_from_bank, load_bank_generator
from gleansr.cli import main
from gleansr.loading import load_bank, load_state_dict_strict
from gleansr.errors import CheckpointError
from gleansr.loading import read_training_checkpoint

TINY = ["--set", "size=32", "channel_max=16", "style_channels=16", "num_mlps=2", "r1_every=2", "pl_every=2",
        "sample_every=2", "--batch-size", "4", "--save-every", "2", "--log-every", "1", "--num-workers", "0",
        "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Networks this small run 3-5x faster on one thread than on two shared ones."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """24 images of 32x32: a coloured disc or square on a coloured background."""
    folder = tmp_path_factory.mktemp("shapes")
    rng = np.random.default_rng(0)
    for i in range(24):
        colour = lambda: tuple(int(v) for v in rng.integers(0, 256, 3))  # noqa: E731
        image = Image.new("RGB", (32, 32), colour())
        x, y, s = (int(v) for v in rng.integers(2, 14, 3))
        box = [x, y, x + s + 6, y + s + 6]
        (ImageDraw.Draw(image).ellipse if i % 2 else ImageDraw.Draw(image).rectangle)(box, fill=colour())
        image.save(folder / f"shape_{i:02d}.png")
    return folder


@pytest.fixture(scope="module")
def trained(shapes, tmp_path_factory):
    """A 4-iteration run in one go, and the same run stopped at 2 and resumed to 4."""
    whole, split = tmp_path_factory.mktemp("whole"), tmp_path_factory.mktemp("split")
    assert main(["bank", "train", "--data", str(shapes), "--out", str(whole), "--max-iters", "4", *TINY]) == 0
    assert main(["bank", "train", "--data", str(shapes), "--out", str(split), "--max-iters", "2", *TINY]) == 0
    assert main(["bank", "train", "--data", str(shapes), "--out", str(split), "--max-iters", "4",
                 "--num-workers", "0", "--device", "cpu", "--quiet"]) == 0
    return whole, split


def test_run_writes_checkpoints_banks_and_sample_grids(trained):
    whole, _ = trained
    state = read_training_checkpoint(whole / "last.pt")
    assert state["kind"] == "stylegan2-bank" and state["iteration"] == 4
    assert read_training_checkpoint(whole / "previous.pt")["iteration"] == 2
    assert float(state["mean_path_length"]) > 0  # the path-length regulariser ran
    for name in ("bank.pth", "bank.safetensors", "bank.discriminator.safetensors", "samples/iter_00000002.png",
                 "samples/iter_00000004.png"):
        assert (whole / name).is_file(), name
    grid = np.asarray(Image.open(whole / "samples/iter_00000004.png"))
    assert grid.shape == (128, 128, 3) and grid.std() > 0  # 16 samples of 32 px, 4 x 4
    lines = (whole / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 4 and all(np.isfinite(v) for v in eval(lines[-1].replace("null", "None")).values())


def test_resumed_run_equals_uninterrupted_run(trained):
    whole, split = trained
    a, b = read_training_checkpoint(whole / "last.pt"), read_training_checkpoint(split / "last.pt")
    for key in ("generator", "generator_ema", "discriminator"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key
    assert torch.equal(a["mean_path_length"], b["mean_path_length"])
    assert (whole / "samples/iter_00000004.png").read_bytes() == (split / "samples/iter_00000004.png").read_bytes()


def test_resume_refuses_a_different_recipe(trained, shapes, capsys):
    _, split = trained
    assert main(["bank", "train", "--data", str(shapes), "--out", str(split), "--set", "lr=0.01", "--max-iters", "5"]) == 2
    err = capsys.readouterr().err
    assert "cannot resume" in err and "config field lr (0.002 in the checkpoint, 0.01 now) differs" in err


def test_bank_plugs_into_glean(trained):
    whole, _ = trained
    torch.manual_seed(0)
    glean = GLEANStyleGANv2(in_size=8, out_size=32, rrdb_channels=8, num_rrdbs=1, style_channels=16, num_mlps=2,
                            channel_max=16)
    discriminator = StyleGAN2Discriminator(32, channel_max=16)
    load_checkpoint(glean.generator, whole / "bank.pth", prefix="generator_ema.")  # GLEAN training's own path
    load_checkpoint(discriminator, whole / "bank.pth", prefix="discriminator.")
    ema = read_training_checkpoint(whole / "last.pt")["generator_ema"]
    assert all(torch.equal(glean.generator.state_dict()[k], v) for k, v in ema.items())

    fresh = GLEANStyleGANv2(in_size=8, out_size=32, rrdb_channels=8, num_rrdbs=1, style_channels=16, num_mlps=2,
                            channel_max=16)
    d_state = init_glean_from_bank(fresh, whole / "bank.safetensors")
    assert all(torch.equal(fresh.generator.state_dict()[k], v) for k, v in ema.items())
    load_state_dict_strict(StyleGAN2Discriminator(32, channel_max=16), d_state)
    assert fresh.eval()(torch.rand(1, 3, 8, 8) * 2 - 1).shape == (1, 3, 32, 32)

    bigger = GLEANStyleGANv2(in_size=16, out_size=64, rrdb_channels=8, num_rrdbs=1, style_channels=16, num_mlps=2,
                             channel_max=16)
    with pytest.raises(CheckpointError, match=r"bank in this file is 32 px.*this GLEAN \(16 -> 64\) needs a bank of 64 px"):
        init_glean_from_bank(bigger, whole / "bank.pth")


def test_sample_is_seeded_and_truncated(trained, tmp_path):
    whole, _ = trained
    args = ["bank", "sample", str(whole), "--n", "6", "--truncation", "0.7", "--device", "cpu"]
    assert main([*args, "-o", str(tmp_path / "a.png"), "--seed", "3", "--separate", str(tmp_path / "sep")]) == 0
    assert main([*args, "-o", str(tmp_path / "b.png"), "--seed", "3"]) == 0
    assert main([*args, "-o", str(tmp_path / "c.png"), "--seed", "4"]) == 0
    a, b, c = (np.asarray(Image.open(tmp_path / f"{x}.png")) for x in "abc")
    assert a.shape == (64, 96, 3) and np.array_equal(a, b) and not np.array_equal(a, c)
    tiles = sorted((tmp_path / "sep").iterdir())
    assert len(tiles) == 6 and np.array_equal(np.asarray(Image.open(tiles[4])), a[32:64, 32:64])
    assert main([*args, "-o", str(tmp_path / "a.png")]) == 2  # no silent overwrite


def test_bank_converts_to_safetensors_with_the_same_images(trained, tmp_path):
    whole, _ = trained
    assert main(["convert", str(whole / "bank.pth"), "-o", str(tmp_path / "cat.safetensors")]) == 0
    z = torch.randn(3, 16)
    with torch.no_grad():
        expected = load_bank_generator(whole / "bank.pth")(z)
        assert torch.equal(load_bank_generator(tmp_path / "cat.safetensors")(z), expected)
    assert load_bank(tmp_path / "cat.safetensors").discriminator is not None


def test_augmented_bf16_run_trains_with_finite_losses(shapes, tmp_path):
    args = [*TINY, "--batch-size", "2", "--max-iters", "2", "--set", "r1_every=1", "pl_every=1", "augment=true",
            "--precision", "bf16"]
    assert main(["bank", "train", "--data", str(shapes), "--out", str(tmp_path), *args]) == 0
    record = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["iter"] == 2 and all(np.isfinite(record[k]) for k in ("loss_gan_d", "loss_gan_g", "loss_r1", "loss_pl"))


@pytest.mark.parametrize("bank_file", ["bank.pth", "bank.safetensors"])
def test_glean_trains_from_the_files_bank_training_writes(trained, shapes, tmp_path, bank_file):
    whole, _ = trained
    config = {"model": {"in_size": 8, "out_size": 32, "rrdb_channels": 8, "num_rrdbs": 1, "style_channels": 16,
                        "num_mlps": 2, "channel_max": 16}, "batch_size": 2, "perceptual_weight": 0, "lr_d": 0,
              "num_workers": 0}
    (tmp_path / "glean.json").write_text(json.dumps(config))
    assert main(["train", str(tmp_path / "glean.json"), "--data", str(shapes), "--out", str(tmp_path / "run"),
                 "--bank", str(whole / bank_file), "--max-iters", "1", "--device", "cpu", "--quiet"]) == 0
    saved = read_training_checkpoint(tmp_path / "run" / "last.pt")
    bank = read_training_checkpoint(whole / "last.pt")
    assert all(torch.equal(saved["generator"][f"generator.{k}"], v) for k, v in bank["generator_ema"].items())
    assert all(torch.equal(saved["discriminator"][k], v) for k, v in bank["discriminator"].items())  # lr_d = 0
