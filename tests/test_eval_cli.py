"""`gleansr eval`: reference LR generation, restorer rounding, MMEditing metrics, bicubic baseline."""
import csv

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from gleansr.loading import save_safetensors
from gleansr.cli import main
from gleansr.imaging.convert import tensor_to_uint8, uint8_to_tensor
from gleansr.imaging.imresize import imresize
from gleansr.metrics import psnr, ssim


@pytest.fixture
def setup(tmp_path, tiny_glean):
    weights = save_safetensors(tiny_glean, tmp_path / "tiny.safetensors", config=tiny_glean.config.to_dict())
    hr_dir = tmp_path / "hr"
    hr_dir.mkdir()
    hrs = {"a": data.astronaut()[100:132, 200:232], "b": data.chelsea()[50:82, 50:82]}
    for k, v in hrs.items():
        Image.fromarray(v).save(hr_dir / f"{k}.png")
    return tmp_path, str(weights), hr_dir, hrs


def test_eval_figures_match_an_independent_computation(setup, tiny_glean, capsys):
    tmp, weights, hr_dir, hrs = setup
    assert main(["eval", str(hr_dir), "--weights", weights, "--csv", str(tmp / "m.csv")]) == 0
    out = capsys.readouterr().out
    assert "bicubic" in out and "GLEAN" in out and "PSNR" in out
    rows = {r["image"]: r for r in csv.DictReader(open(tmp / "m.csv"))}
    hr = hrs["a"]
    lr = imresize(hr, scale=1 / 4)
    with torch.no_grad():
        sr = tensor_to_uint8(tiny_glean.set_impl("ref")(uint8_to_tensor(lr)[None]))[0]
    assert float(rows["a.png"]["sr_psnr"]) == pytest.approx(psnr(sr, hr), abs=0.05)
    assert float(rows["a.png"]["sr_ssim"]) == pytest.approx(ssim(sr, hr), abs=1e-3)
    bic = imresize(lr, output_shape=(32, 32))
    assert float(rows["a.png"]["bicubic_psnr"]) == pytest.approx(psnr(bic, hr), abs=1e-9)
    mean = np.mean([float(rows[k]["bicubic_psnr"]) for k in ("a.png", "b.png")])
    assert float(rows["MEAN"]["bicubic_psnr"]) == pytest.approx(mean)


def test_premade_lr_folder_is_used(setup, capsys):
    tmp, weights, hr_dir, hrs = setup
    lr_dir = tmp / "lr"
    lr_dir.mkdir()
    for k, v in hrs.items():
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(lr_dir / f"{k}.png")  # deliberately wrong content
    assert main(["eval", str(hr_dir), "--weights", weights, "--lr", str(lr_dir), "--csv", str(tmp / "z.csv")]) == 0
    rows = {r["image"]: r for r in csv.DictReader(open(tmp / "z.csv"))}
    black = np.zeros((32, 32, 3), np.uint8)
    assert float(rows["a.png"]["bicubic_psnr"]) == pytest.approx(psnr(black, hrs["a"]))


def test_wrong_hr_size_is_a_clear_error(setup, capsys):
    tmp, weights, hr_dir, _ = setup
    Image.fromarray(data.astronaut()[:40, :40]).save(hr_dir / "c.png")
    assert main(["eval", str(hr_dir), "--weights", weights]) == 2
    assert "c.png is 40x40, and evaluating tiny.safetensors needs HR images of exactly 32x32" in capsys.readouterr().err
