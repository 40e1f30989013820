"""The fine-tune recipe's rules (#25): the warm-up schedule, and what --init changes in a config."""
from __future__ import annotations

import dataclasses

import pytest

from gleansr.train.config import (FINETUNE_SETTINGS, FROM_INIT, RANDOM, config_from_dict, cosine_restart_lr,
                                  preset_config, scheduled_lr, with_init)


def test_warm_up_ramps_linearly_into_the_cosine_schedule():
    config = config_from_dict({"model": {"in_size": 8, "out_size": 32}, "max_iters": 100, "warmup_iters": 10,
                               "lr_g": 1e-3})
    for i in (0, 4, 9):
        assert scheduled_lr(i, 1e-3, config) == pytest.approx(cosine_restart_lr(i, 1e-3, config) * (i + 1) / 10)
    for i in (10, 50, 99):
        assert scheduled_lr(i, 1e-3, config) == cosine_restart_lr(i, 1e-3, config)
    plain = dataclasses.replace(config, warmup_iters=0)
    assert scheduled_lr(0, 1e-3, plain) == cosine_restart_lr(0, 1e-3, plain)


def test_init_on_the_command_line_brings_its_bank_and_the_fine_tune_rates():
    preset = dataclasses.replace(preset_config("glean_glyphs_8x"), init="glean_glyphs_8x")
    tuned, notes = with_init(preset, {"init": "glean_glyphs_8x"})
    assert tuned.bank == FROM_INIT and len(notes) == 1 and "fine-tuning from glean_glyphs_8x" in notes[0]
    assert {key: getattr(tuned, key) for key, _ in FINETUNE_SETTINGS} == dict(FINETUNE_SETTINGS)
    given = {"init": "x", "lr_g": "1e-5", "bank": RANDOM}  # what the user set is kept
    mine, _ = with_init(dataclasses.replace(preset, bank=RANDOM, lr_g=1e-5), given)
    assert mine.bank == RANDOM and mine.lr_g == 1e-5 and mine.lr_d == dict(FINETUNE_SETTINGS)["lr_d"]
    assert with_init(preset, {}) == (preset, [])  # init from a config file: the file's values stand
    with pytest.raises(ValueError, match="bank 'init'"):
        dataclasses.replace(preset, init="", bank=FROM_INIT)
