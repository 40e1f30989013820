"""scripts/bank_quality.py on a tiny synthetic glyph set, a tiny random bank and a briefly trained classifier."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFont

from conftest import load_script
from gleansr.loading.bank import BankWeights
from gleansr.loading.save import export_bank
from gleansr.models.stylegan2 import StyleGAN2Generator

CHARS = "AHOx7?"
SIZE = 32


@pytest.fixture(scope="module")
def script():
    return load_script("bank_quality")


@pytest.fixture(scope="module")
def glyphs(tmp_path_factory):
    """DATA/{train,test}/<font>/uXXXX.png: Pillow's built-in font at a size and offset per "font"."""
    root = tmp_path_factory.mktemp("glyphs")
    for split, fonts in (("train", [(20, 0), (24, 1), (22, -1), (26, 0)]), ("test", [(23, 1)])):
        for size, offset in fonts:
            font = ImageFont.load_default(size=size)
            folder = root / split / f"font{size}"
            folder.mkdir(parents=True)
            for char in CHARS:
                image = Image.new("L", (SIZE, SIZE), 255)
                ImageDraw.Draw(image).text((SIZE / 2 + offset, SIZE / 2), char, fill=0, font=font, anchor="mm")
                image.save(folder / f"u{ord(char):04X}.png")
    return root


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    """A random 32 px bank exported as ``bank train`` does (run folder/bank.safetensors)."""
    config = dict(out_size=SIZE, style_channels=16, num_mlps=2, channel_max=16)
    torch.manual_seed(1)
    generator = StyleGAN2Generator(**config)
    path = tmp_path_factory.mktemp("run") / "bank.safetensors"
    export_bank(BankWeights(generator.state_dict(), generator.config), path)
    return path


def test_writes_sane_results_and_reuses_its_classifier(script, glyphs, bank, tmp_path, capsys):
    out = tmp_path / "quality"
    argv = ["--data", str(glyphs), "--bank", str(bank), "--bank", "random", "--samples", "8", "--epochs", "2",
            "--device", "cpu", "--out", str(out), "--figure", str(tmp_path / "figure.png")]
    assert script.main(argv) == 0
    result = json.loads((out / "bank_quality.json").read_text())
    name = bank.parent.name
    assert list(result["sources"]) == ["test glyphs", name, "random"]
    assert result["classifier"]["classes"] == sorted(f"u{ord(c):04X}" for c in CHARS)
    assert result["classifier"]["test_images"] == len(CHARS) and result["real"]["images"] == 8
    for source in result["sources"].values():
        assert source["samples"] == 8 or source["samples"] == len(CHARS)  # test glyphs: all 6 of them
        assert 1 <= source["classes_1pct"] <= source["classes_any"] <= len(CHARS)
        assert 0 <= source["entropy_bits"] <= np.log2(len(CHARS)) + 1e-9
        assert 1 / len(CHARS) <= source["confidence"] <= 1
        assert all(0 <= source[m] <= 1 for m in ("precision", "recall", "coverage")) and source["density"] >= 0
        assert source["nn_feature"] >= 0 and 0 < source["nn_pixel"] <= 1
    for grid in (f"grid_{name}.png", "grid_random.png"):
        assert np.asarray(Image.open(out / grid)).shape == (SIZE, 8 * SIZE, 3)  # 8 samples: one row of 8
    assert "| random | 8 |" in (out / "bank_quality.md").read_text()
    strips = np.asarray(Image.open(tmp_path / "figure.png"))
    assert strips.shape == (2 * 64, 8 * 64, 3)  # a row of 8 samples per bank, 64 px each
    first = np.asarray(Image.open(out / f"grid_{name}.png").resize((8 * 64, 64), Image.BOX))
    assert np.abs(strips[:64].astype(int) - first).mean() < 8  # the bank's row shows its first samples

    with pytest.raises(SystemExit, match="--overwrite"):
        script.main(argv)
    cached = (out / "classifier.pt").read_bytes()
    assert script.main([*argv, "--overwrite"]) == 0
    assert (out / "classifier.pt").read_bytes() == cached  # same data, epochs and seed: not retrained
    assert json.loads((out / "bank_quality.json").read_text()) == result  # seeded: the same figures
    assert "Bank quality" in capsys.readouterr().out


def test_real_glyphs_against_themselves_score_perfectly(script, glyphs):
    classes = sorted(f"u{ord(c):04X}" for c in CHARS)
    train = script.read_glyphs(glyphs / "train", classes)
    net = script.train_classifier(train, len(classes), epochs=1, seed=0)
    scores = script.quality(net, train.x, script.reference(net, train.x))
    assert scores["precision"] == scores["recall"] == scores["coverage"] == 1.0
    assert scores["density"] >= 1.0  # each real ball holds its own centre and its k nearest
    assert scores["nn_feature"] == 0.0 and scores["nn_pixel"] == 0.0  # every sample is a real glyph
    assert scores["classes_any"] <= len(classes)


def test_random_needs_a_bank_file(script, glyphs, tmp_path):
    with pytest.raises(SystemExit, match="bank file"):
        script.main(["--data", str(glyphs), "--bank", "random", "--out", str(tmp_path / "q"), "--samples", "8"])
