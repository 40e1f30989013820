"""Training configs: preset recipes, the cosine-restart schedule, typed overrides, files, resume checks."""
from __future__ import annotations

import dataclasses
import json
import math

import pytest

from gleansr.errors import GleanError
from gleansr.zoo import ZOO
from gleansr.train.config import (RESUMABLE_CHANGES, TrainConfig, config_from_dict, cosine_restart_lr, load_config,
                                  preset_config)
from gleansr.train.overrides import resume_conflict, with_overrides


def test_preset_recipes_match_the_released_configs():
    expected_batch = {"glean_cat_8x": 8, "glean_cat_16x": 8, "glean_ffhq_16x": 4,
                      "glean_in128out1024_4x2_300k_ffhq_celebahq": 2}
    for name, batch in expected_batch.items():
        config = preset_config(name)
        in128 = name.startswith("glean_in128")
        assert config.model == ZOO[name].config
        assert config.batch_size == batch
        assert config.perceptual_input_range == ("[0,1]" if in128 else "[-1,1]")
        assert config.degrade is in128
        assert (config.lr_g, config.lr_d, config.betas, config.lr_min) == (1e-4, 1e-4, (0.9, 0.99), 1e-7)
        assert (config.pixel_weight, config.perceptual_weight, config.gan_weight) == (1.0, 1e-2, 1e-2)
        assert config.max_iters == 300_000 and config.periods == (300_000,)


def test_cosine_restart_follows_mmcv():
    config = TrainConfig(model=ZOO["glean_cat_8x"].config, max_iters=300, lr_periods=(100, 200),
                         lr_restart_weights=(1.0, 0.5), lr_min=1e-7)
    base, low = 1e-4, 1e-7

    def annealed(start, end, factor, weight):  # MMCV's annealing_cos
        return end + 0.5 * weight * (start - end) * (math.cos(math.pi * factor) + 1)

    assert cosine_restart_lr(0, base, config) == pytest.approx(base, rel=1e-12)
    assert cosine_restart_lr(50, base, config) == pytest.approx((base + low) / 2, rel=1e-12)
    assert cosine_restart_lr(99, base, config) == pytest.approx(annealed(base, low, 0.99, 1.0), rel=1e-12)
    # the restart: period 2 starts again from min + weight * (base - min)
    assert cosine_restart_lr(100, base, config) == pytest.approx(low + 0.5 * (base - low), rel=1e-12)
    assert cosine_restart_lr(250, base, config) == pytest.approx(annealed(base, low, 0.75, 0.5), rel=1e-12)
    assert cosine_restart_lr(300, base, config) == low


def test_typed_overrides():
    config = load_config("glean_cat_8x", ["batch_size=3", "lr_g=2e-4", "betas=0.5,0.9", "flip=false",
                                          "model.in_size=16", "model.blur_kernel=[1, 2, 1]", "precision=bf16"])
    assert config.batch_size == 3 and config.lr_g == 2e-4 and config.betas == (0.5, 0.9)
    assert config.flip is False and config.precision == "bf16"
    assert config.model.in_size == 16 and config.model.blur_kernel == (1, 2, 1)
    assert config.model.out_size == 256 and config.preset == "glean_cat_8x"


@pytest.mark.parametrize("item, message", [
    ("nonsense=1", "unknown config key 'nonsense'"),
    ("model.depth=3", "unknown config key 'model.depth'"),
    ("batch_size=abc", "config key 'batch_size': expected int, got 'abc'"),
    ("lr_g=1e-4x", "config key 'lr_g': expected a finite float"),
    ("flip=maybe", "config key 'flip': expected bool"),
    ("betas=0.9", "config key 'betas': expected 2 values, got 1"),
    ("precision=fp8", "precision must be one of fp32, bf16, fp16"),
    ("batch_size=0", "batch_size must be >= 1"),
    ("model.in_size=12", "in_size must be a power of two"),
    ("max_iters", "--set expects key=value"),
])
def test_bad_overrides_are_one_line_errors(item, message):
    with pytest.raises(GleanError, match="^.*" + message.replace("(", r"\(").replace("[", r"\[")) as info:
        load_config("glean_cat_8x", [item])
    assert "\n" not in str(info.value)


def test_json_and_toml_files(tmp_path):
    custom = {"model": {"in_size": 8, "out_size": 32, "num_rrdbs": 1, "channel_max": 16}, "batch_size": 2,
              "betas": [0.8, 0.95]}
    (tmp_path / "custom.json").write_text(json.dumps(custom))
    config = load_config(tmp_path / "custom.json")
    assert config.preset == "" and config.model.num_rrdbs == 1 and config.model.rrdb_channels == 64
    assert config.betas == (0.8, 0.95) and config.batch_size == 2

    (tmp_path / "cat.toml").write_text('preset = "glean_cat_16x"\nmax_iters = 1000\n[model]\nnum_rrdbs = 4\n')
    config = load_config(tmp_path / "cat.toml", ["save_every=10"])
    assert config.model == dataclasses.replace(ZOO["glean_cat_16x"].config, num_rrdbs=4)
    assert (config.max_iters, config.save_every, config.batch_size) == (1000, 10, 8)


def test_file_errors_name_the_file(tmp_path):
    (tmp_path / "a.json").write_text('{"preset": "glean_cat_8x", "learning_rate": 1}')
    with pytest.raises(GleanError, match="unknown config key 'learning_rate'"):
        load_config(tmp_path / "a.json")
    (tmp_path / "b.json").write_text('{"model": {"in_size": 8}}')
    with pytest.raises(GleanError, match=r"b\.json: a config without 'preset' must give"):
        load_config(tmp_path / "b.json")
    (tmp_path / "c.json").write_text('{"batch_size": 2,')
    with pytest.raises(GleanError, match=r"c\.json: invalid JSON"):
        load_config(tmp_path / "c.json")
    (tmp_path / "d.json").write_text('{"preset": "glean_cat_8x", "batch_size": "8"}')
    with pytest.raises(GleanError, match="expected int, got '8'"):  # files are typed: no string coercion
        load_config(tmp_path / "d.json")
    with pytest.raises(GleanError, match="neither a zoo model.*did you mean .glean_cat_8x."):
        load_config("glean_cat_9x")


def test_dict_round_trip_and_resume_conflicts():
    config = load_config("glean_ffhq_16x", ["lr_periods=100000,200000", "lr_restart_weights=1,0.5", "seed=3"])
    again = config_from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    assert _conflict(config, with_overrides(config, {"max_iters": "200000", "save_every": "7"})) is None
    assert _conflict(config, with_overrides(config, {"lr_g": "2e-4"})) == \
        "lr_g (0.0001 in the checkpoint, 0.0002 now)"
    assert _conflict(config, with_overrides(config, {"model.num_rrdbs": "3"})).startswith("model.num_rrdbs")


def _conflict(saved, requested):
    return resume_conflict(saved.to_dict(), requested.to_dict(), RESUMABLE_CHANGES)
