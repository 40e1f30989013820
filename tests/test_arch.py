"""Typed architecture (#22 item 5): StyleGAN2 / discriminator / GLEAN configs validated once, sizes
computed without building, keyword construction, upstream's mbstd_cfg spelling, zoo input specs."""
import dataclasses

import pytest
import torch

from gleansr import zoo
from gleansr.arch import ArchError, DiscriminatorConfig, StyleGAN2Config
from gleansr.glean_config import GLEANConfig
from gleansr.models.discriminator import StyleGAN2Discriminator
from gleansr.models.glean import GLEANStyleGANv2
from gleansr.models.stylegan2 import StyleGAN2Generator

CONFIGS = [
    GLEANConfig(in_size=16, out_size=128, rrdb_channels=16, num_rrdbs=2, style_channels=128, num_mlps=4,
                channel_multiplier=0.25, channel_max=64),
    GLEANConfig(in_size=8, out_size=32, rrdb_channels=8, num_rrdbs=1, style_channels=16, num_mlps=2,
                channel_max=16, blur_kernel=(1, 2, 1)),
    GLEANConfig(in_size=4, out_size=64, img_channels=1, rrdb_channels=5, num_rrdbs=1, style_channels=8, num_mlps=1,
                channel_max=24, channel_multiplier=3),
    zoo.get_entry("glean_cat_8x").config,
]


def _counts(module: torch.nn.Module) -> tuple[int, int]:
    return sum(p.numel() for p in module.parameters()), sum(v.numel() for v in module.state_dict().values())


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.in_size}-{c.out_size}-{c.style_channels}")
def test_sizes_computed_from_the_config_equal_the_built_networks(config):
    with torch.device("meta"):
        glean = GLEANStyleGANv2.from_config(config)
        disc = StyleGAN2Discriminator.from_config(config.discriminator(2))
    assert _counts(glean) == (config.parameter_count(), config.state_size())
    assert _counts(glean.generator) == (config.bank.parameter_count(), config.bank.state_size())
    assert _counts(disc) == (config.discriminator(2).parameter_count(), config.discriminator(2).state_size())
    assert glean.config == config and glean.generator.config == config.bank and disc.config == config.discriminator(2)


@pytest.mark.parametrize("fields, message", [
    ({"in_size": 12}, "in_size must be a power of two"),
    ({"in_size": 32, "out_size": 32}, "out_size must be larger than in_size"),
    ({"out_size": 8192}, "out_size must be between 8 and 4096"),
    ({"in_size": "16"}, "in_size must be an integer"),
    ({"in_size": True}, "in_size must be an integer"),
    ({"num_rrdbs": 0}, "num_rrdbs must be between 1 and 256"),
    ({"style_channels": 5000}, "style_channels must be between 1 and 4096"),
    ({"channel_multiplier": float("nan")}, "channel_multiplier must be a finite number"),
    ({"channel_multiplier": 0.001}, "leaves no channels"),
    ({"blur_kernel": "1331"}, "blur_kernel must be a list"),
    ({"blur_kernel": (1, -1)}, "non-zero sum"),
    ({"latent_bank": 1}, "latent_bank must be true or false"),
])
def test_glean_config_validates_itself(fields, message):
    with pytest.raises(ValueError, match=message):
        GLEANConfig(**{"in_size": 16, "out_size": 128, **fields})


def test_construction_is_by_keyword_and_dicts_are_checked():
    with pytest.raises(TypeError):
        GLEANConfig(16, 128)  # noqa: the fields are keyword-only
    with pytest.raises(TypeError):
        StyleGAN2Config(64)
    with pytest.raises(ArchError, match="unknown GLEAN config keys: evil"):
        GLEANConfig.from_dict({"in_size": 16, "out_size": 128, "evil": 1})
    with pytest.raises(ArchError, match="must be a table"):
        StyleGAN2Config.from_dict([64])
    cfg = CONFIGS[0]
    assert GLEANConfig.from_dict(cfg.to_dict()) == cfg
    assert StyleGAN2Config.from_dict(cfg.bank.to_dict()) == cfg.bank
    assert cfg.bank.to_dict()["channel_multiplier"] == 0.25 and CONFIGS[3].bank.to_dict()["channel_multiplier"] == 2


def test_discriminator_config_keeps_upstreams_mbstd_spelling():
    d = DiscriminatorConfig(in_size=64, mbstd_group_size=2, channel_max=32)
    assert d.to_dict()["mbstd_cfg"] == {"group_size": 2, "channel_groups": 1}
    assert DiscriminatorConfig.from_dict(d.to_dict()) == d
    assert DiscriminatorConfig.from_dict({"in_size": 64, "mbstd_cfg": {"group_size": 2}, "channel_max": 32}) == d
    with pytest.raises(ArchError, match="mbstd_cfg must be a table"):
        DiscriminatorConfig.from_dict({"in_size": 64, "mbstd_cfg": {"size": 2}})
    with pytest.raises(ArchError, match="must divide the 4 px width"):
        DiscriminatorConfig(in_size=64, channel_max=30, mbstd_channel_groups=4)
    # the upstream constructor argument builds the same network, validated the same way
    assert StyleGAN2Discriminator(64, mbstd_cfg={"group_size": 2}, channel_max=32).config == d
    with pytest.raises(ValueError, match="in_size must be a power of two"):
        StyleGAN2Discriminator(48)
    with pytest.raises(ValueError, match="num_mlps must be between"):
        StyleGAN2Generator(32, num_mlps=-1)


def test_bank_run_config_maps_to_the_generator_once():
    from gleansr.train.bank import BankConfig

    bank = BankConfig(size=32, style_channels=16, num_mlps=2, channel_max=16, mbstd_group_size=2, batch_size=2)
    assert bank.generator == StyleGAN2Config(out_size=32, style_channels=16, num_mlps=2, channel_max=16)
    assert StyleGAN2Config.from_run_config(bank.to_dict()) == bank.generator
    assert bank.discriminator == DiscriminatorConfig.matching(bank.generator, 2)
    with pytest.raises(ValueError, match="size must be a power of two"):
        BankConfig(size=48)


def test_every_zoo_entry_records_its_input_normalisation_and_resize():
    for entry in zoo.ZOO.values():
        spec = entry.preprocess
        assert spec.value_range == (-1.0, 1.0) and spec.resize == "matlab-bicubic" and spec.crop == "center"
    assert {f.name for f in dataclasses.fields(zoo.InputSpec)} >= {"mean", "std", "resize"}
    with pytest.raises(TypeError):
        zoo.TrainingRecipe(8, 1, False, "[-1,1]", None)  # keyword-only rows
