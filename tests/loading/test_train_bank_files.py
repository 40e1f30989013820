"""Every bank file the loader reads starts GLEAN training: converted exports, rosinality, NVIDIA, MMGeneration.

Before the one loader, ``train --bank`` read only MMGeneration's ``generator_ema.*`` layout and
refused the files that ``gleansr convert`` and ``gleansr bank train`` write.
"""
from __future__ import annotations

import pytest
import torch

from gleansr.cli import main
from gleansr.errors import CheckpointError
from gleansr.loading import init_glean_from_bank, load_bank, read_training_checkpoint
from gleansr.models import GLEANStyleGANv2, StyleGAN2Discriminator
import loading_helpers as files_of
from train.train_helpers import one_torch_thread  # noqa: F401 - autouse fixture
from train.train_helpers import TINY_MODEL, cli_args, setup_run


def _bank_of_run(run) -> dict[str, torch.Tensor]:
    state = read_training_checkpoint(run / "last.pt")["generator"]
    return {k[len("generator."):]: v for k, v in state.items() if k.startswith("generator.")}


@pytest.mark.parametrize("source", ["rosinality", "nvidia"])
def test_converted_bank_trains(tmp_path, source, capsys):
    files = setup_run(tmp_path)
    foreign = getattr(files_of, f"{source}_file")(tmp_path / ("bank.pt" if source == "rosinality" else "bank.pkl"))
    converted = tmp_path / "converted.safetensors"
    assert main(["convert", str(foreign), "-o", str(converted)]) == 0
    run = tmp_path / "run"
    assert main(cli_args(files, run, "--bank", str(converted), "--max-iters", "1")) == 0, capsys.readouterr().err
    expected = load_bank(converted).generator
    assert all(torch.equal(_bank_of_run(run)[k], v.float()) for k, v in expected.items())  # the frozen bank


@pytest.mark.parametrize("source", ["rosinality", "nvidia", "mmgen"])
def test_foreign_bank_goes_straight_into_glean(tmp_path, source):
    path = getattr(files_of, f"{source}_file")(tmp_path / f"bank.{source}")
    glean, discriminator = GLEANStyleGANv2(**TINY_MODEL), StyleGAN2Discriminator(32, channel_max=16)
    d_state = init_glean_from_bank(glean, path, discriminator=discriminator)
    weights = load_bank(path)
    assert all(torch.equal(glean.generator.state_dict()[k], v.float()) for k, v in weights.generator.items())
    assert all(torch.equal(discriminator.state_dict()[k], v.float()) for k, v in d_state.items())


def test_rosinality_file_straight_into_train(tmp_path):
    files = setup_run(tmp_path)
    bank = files_of.rosinality_file(tmp_path / "550000.pt")
    assert main(cli_args(files, tmp_path / "run", "--bank", str(bank), "--max-iters", "1")) == 0
    assert all(torch.equal(_bank_of_run(tmp_path / "run")[k], v) for k, v in load_bank(bank).generator.items())


def test_a_bank_of_the_wrong_size_names_both_sizes(tmp_path, capsys):
    files = setup_run(tmp_path)
    bank = files_of.rosinality_file(tmp_path / "550000.pt")
    bigger = GLEANStyleGANv2(**dict(TINY_MODEL, in_size=16, out_size=64))
    with pytest.raises(CheckpointError, match=r"bank in this file is 32 px.*this GLEAN \(16 -> 64\) needs a bank of 64 px"):
        init_glean_from_bank(bigger, bank)
    args = cli_args(files, tmp_path / "run", "--bank", str(bank), "--max-iters", "1", "--set", "model.style_channels=32")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "style 16" in err and "style 32" in err and "missing key" not in err


def test_a_bank_without_discriminator_warns_and_keeps_d(tmp_path):
    path = files_of.rosinality_file(tmp_path / "g_only.pt", with_d=False)
    glean, discriminator = GLEANStyleGANv2(**TINY_MODEL), StyleGAN2Discriminator(32, channel_max=16)
    before = {k: v.clone() for k, v in discriminator.state_dict().items()}
    with pytest.warns(UserWarning, match="holds no StyleGAN2 discriminator"):
        assert init_glean_from_bank(glean, path, discriminator=discriminator) is None
    assert all(torch.equal(discriminator.state_dict()[k], v) for k, v in before.items())
