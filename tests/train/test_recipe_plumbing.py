"""Shared recipe plumbing and types where strings travelled (#22 items 7, 8, 9): one config resolution,
one state table shape, one DDP wrap, style mixing once, typed bank choice and parse mode, the
preset help from the zoo, and the bank recipe free of GLEAN's TrainConfig."""
from __future__ import annotations

import argparse
import subprocess
import sys
import typing

import pytest
import torch

from gleansr import zoo
from gleansr.commands import train as train_command
from gleansr.errors import CheckpointError, GleanError
from gleansr.loading import BankWeights
from gleansr.loading.identify import _FORMAT_NAMES, Format, Kind
from gleansr.models.stylegan2 import StyleGAN2Generator
from gleansr.train import state as train_state
from gleansr.train.bank import BankConfig, MixingGenerator, resolve_config as resolve_bank
from gleansr.train.config import BankChoice, BankSource, TrainConfig, load_config
from gleansr.train.distributed import DistInfo
from gleansr.train.glean import RunPaths, resolve_config as resolve_glean
from gleansr.train.overrides import Values, with_overrides
from gleansr.train.runtime import StateTable, wrap_ddp



def test_the_bank_recipe_does_not_reach_glean_training_config():
    code = "import sys, gleansr.train.bank; print('gleansr.train.config' in sys.modules, 'gleansr.zoo' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["False", "False"], done.stderr


def test_parse_mode_is_a_type_not_a_label():
    config = BankConfig(size=32)
    assert with_overrides(config, {"batch_size": "4"}, "--batch-size").batch_size == 4  # any label parses text
    assert with_overrides(config, {"batch_size": 4}, "run.toml", Values.TYPED).batch_size == 4
    with pytest.raises(GleanError, match="run.toml: config key 'batch_size': expected int, got '4'"):
        with_overrides(config, {"batch_size": "4"}, "run.toml", Values.TYPED)


def test_both_recipes_resolve_their_configs_one_way(tmp_path):
    saved = BankConfig(size=32, max_iters=10).to_dict()
    assert resolve_bank({}, {"max_iters": "20"}, saved, "last.pt").max_iters == 20
    with pytest.raises(GleanError, match=r"cannot resume last.pt: config field lr \(0.002 in the checkpoint"):
        resolve_bank({}, {"lr": "0.1"}, saved, "last.pt")
    glean = load_config("glean_glyphs_8x")
    paths = RunPaths(data=tmp_path, out=tmp_path / "run")
    with pytest.raises(GleanError, match=r"cannot resume last.pt: config field lr_g \(0.0002 in the checkpoint"):
        resolve_glean(None, paths, {"lr_g": "0.1"}, glean.to_dict(), "last.pt")
    with pytest.raises(GleanError, match="no config given and no checkpoint"):
        resolve_glean(None, paths, {}, None, "")
    resumed, notes = resolve_glean(None, paths, {"max_iters": "2000"}, glean.to_dict(), "last.pt")
    assert resumed.max_iters == 2000 and notes == []


def test_the_bank_choice_is_read_once_as_a_type(tmp_path):
    assert TrainConfig(model=zoo.get_entry("glean_glyphs_8x").config).bank_source == BankSource(BankChoice.UNSET)
    assert load_config("glean_cat_8x").bank_source.choice is BankChoice.PRETRAINED
    random = load_config("glean_cat_8x", ["bank=random"]).bank_source
    assert random == BankSource(BankChoice.RANDOM)
    file = load_config("glean_cat_8x", [f"bank={tmp_path / 'b.pth'}"]).bank_source
    assert file == BankSource(BankChoice.FILE, tmp_path / "b.pth")


def test_a_state_table_saves_and_loads_strictly():
    class Holder:
        def __init__(self) -> None:
            self.net = torch.nn.Linear(2, 3)
            self.opt = torch.optim.Adam(self.net.parameters(), lr=0.5)

    table = StateTable(networks=(("net", "network"),), others=(("opt", "optimizer"),))
    first, second = Holder(), Holder()
    saved = table.state(first)
    assert set(saved) == {"network", "optimizer"}
    table.load(second, saved, "ckpt")
    assert torch.equal(second.net.weight, first.net.weight) and second.opt.param_groups[0]["lr"] == 0.5
    with pytest.raises(CheckpointError, match=r"ckpt \(network\): missing key 'bias'"):
        table.load(second, {**saved, "network": {"weight": first.net.weight}}, "ckpt")


def test_one_process_trains_the_module_itself():
    net = torch.nn.Linear(2, 2)
    assert wrap_ddp(net, DistInfo(0, 0, 1, torch.device("cpu"))) is net


def test_style_mixing_is_written_once():
    torch.manual_seed(0)
    g = StyleGAN2Generator(16, style_channels=8, num_mlps=1, channel_max=8).eval()
    z1, z2 = torch.randn(2, 8), torch.randn(2, 8)
    w1, w2 = g.mapping(z1), g.mapping(z2)
    latents = g.mixed_latents(w1, w2, 2)
    assert torch.equal(latents[:, :2], w1[:, None].expand(-1, 2, -1))
    assert torch.equal(latents[:, 2:], w2[:, None].expand(-1, g.num_latents - 2, -1))
    _, trained = MixingGenerator(g)(z1, z2, 2)
    assert torch.allclose(trained, latents)
    fixed = g([z1, z2], inject_index=2)  # the sampling forward mixes the same way (fixed noise)
    assert torch.allclose(fixed, g.synthesis(latents))


def test_kinds_and_formats_are_declared_types():
    assert set(typing.get_args(Format)) == set(_FORMAT_NAMES)
    assert set(typing.get_args(Kind)) == {"glean", "bank", "training-checkpoint"}


def test_removed_twins_stay_removed():
    assert not hasattr(BankWeights, "generator_state") and not hasattr(BankWeights, "config")
    assert not hasattr(StyleGAN2Generator, "mean_latent")
    assert not hasattr(train_state, "checkpoint_config") and not hasattr(train_state, "build_discriminator")


def test_train_help_lists_every_trainable_zoo_model():
    parser = argparse.ArgumentParser()
    train_command.add_arguments(parser)
    text = " ".join(parser.format_help().split())
    names = [name for name, entry in zoo.ZOO.items() if entry.recipe is not None]
    assert "glean_glyphs_8x" in names
    assert f"a preset name ({', '.join(names)})" in text
