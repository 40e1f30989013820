"""What a user chains, as a user runs it: each command's output file is the next command's input.

``bank train`` -> its bank file -> ``train --bank`` -> ``export`` -> ``upscale --weights`` ->
``eval --weights``, then ``train --init`` from the export; foreign banks (NVIDIA, rosinality)
straight into ``train --bank`` and through ``convert``. Every step is a ``gleansr`` subprocess.
"""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gleansr.loading import load_bank, load_glean, read_training_checkpoint
import loading_helpers as foreign
from train.train_helpers import write_config, write_images, write_random_vgg

BANK = ["--set", "size=32", "channel_max=16", "style_channels=16", "num_mlps=2", "r1_every=2", "pl_every=2",
        "sample_every=2", "--batch-size", "4"]
COMMON = ["--num-workers", "0", "--device", "cpu", "--quiet"]


def gleansr(*args: object, cwd: Path) -> subprocess.CompletedProcess:
    """Run one command as a user would; a failure shows what it printed."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "gleansr.cli", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"gleansr {' '.join(map(str, args))} exited {done.returncode}:\n{done.stderr}"
    return done


def bank_of_run(run: Path) -> dict[str, torch.Tensor]:
    """The frozen latent bank inside a GLEAN run's checkpoint."""
    state = read_training_checkpoint(run / "last.pt")["generator"]
    return {k[len("generator."):]: v for k, v in state.items() if k.startswith("generator.")}


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("chain")
    write_images(root / "hr", 8, seed=1)
    write_random_vgg(root / "vgg16.pth")
    write_config(root / "tiny.json")
    lr = Image.open(root / "hr" / "img_00.png").resize((8, 8), Image.Resampling.BICUBIC)
    (root / "lr").mkdir()
    lr.save(root / "lr" / "photo.png")
    return root


def test_bank_train_export_upscale_eval_then_init(work):
    train = ["train", "tiny.json", "--data", "hr", "--vgg", "vgg16.pth", *COMMON]
    gleansr("bank", "train", "--data", "hr", "--out", "bank", "--max-iters", "2", *BANK, *COMMON, cwd=work)
    gleansr(*train, "--out", "run", "--bank", "bank/bank.safetensors", "--max-iters", "2", cwd=work)
    expected = load_bank(work / "bank" / "bank.safetensors").generator
    assert all(torch.equal(bank_of_run(work / "run")[k], v) for k, v in expected.items())

    gleansr("export", "run", "-o", "glean.safetensors", cwd=work)
    exported = load_glean(work / "glean.safetensors")
    gleansr("upscale", "lr/photo.png", "--weights", "glean.safetensors", "-o", "out", cwd=work)
    with Image.open(work / "out" / "photo_x4.png") as sr:
        assert sr.size == (32, 32)

    gleansr("eval", "hr", "--weights", "glean.safetensors", "--csv", "eval.csv", cwd=work)
    rows = list(csv.DictReader((work / "eval.csv").open()))
    assert [r["image"] for r in rows][-1] == "MEAN" and len(rows) == 9
    assert np.isfinite(float(rows[-1]["sr_psnr"]))

    # --init: the generator starts from the export (learning rates 0: it stays there)
    gleansr(*train, "--out", "run2", "--init", "glean.safetensors", "--max-iters", "1", "--set", "lr_g=0", "lr_d=0",
            cwd=work)
    started = read_training_checkpoint(work / "run2" / "last.pt")["generator"]
    assert all(torch.equal(started[k], v) for k, v in exported.state_dict().items())


@pytest.mark.parametrize("source", ["nvidia", "rosinality"])
def test_foreign_bank_straight_into_train_and_through_convert(work, source):
    path = getattr(foreign, f"{source}_file")(work / f"{source}.{'pkl' if source == 'nvidia' else 'pt'}")
    train = ["train", "tiny.json", "--data", "hr", "--vgg", "vgg16.pth", "--max-iters", "1", *COMMON]
    gleansr(*train, "--out", f"run_{source}", "--bank", path.name, cwd=work)
    gleansr("convert", path.name, "-o", f"{source}.safetensors", cwd=work)
    gleansr(*train, "--out", f"run_{source}_converted", "--bank", f"{source}.safetensors", cwd=work)
    expected = load_bank(path).generator
    for run in (f"run_{source}", f"run_{source}_converted"):
        assert all(torch.equal(bank_of_run(work / run)[k], v.float()) for k, v in expected.items())
