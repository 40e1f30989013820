"""`gleansr eval --lpips ... --fid ...` as a user runs it (a subprocess), with backbone files the test
makes in the real files' layouts, checked against direct computations (issue 13.4)."""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from conftest import he_initialised
from gleansr.loading import save_safetensors
from gleansr.cli import main
from gleansr.imaging.convert import uint8_to_tensor
from gleansr.imaging.imresize import imresize
from gleansr.models.alexnet import AlexNetFeatures
from gleansr.models.glean import GLEANConfig, GLEANStyleGANv2
from gleansr.loading.backbones import load_fid_inception_weights
from gleansr.models.inception import InceptionV3FID
from gleansr.models.vgg import VGG16Features
from gleansr.perceptual_metrics import LPIPS, fid_from_features
from test_perceptual_metrics import CHANNELS, randomised_inception_state

TINY = GLEANConfig(in_size=16, out_size=128, rrdb_channels=4, num_rrdbs=1, style_channels=8, num_mlps=1,
                   channel_multiplier=0.5, channel_max=8)
# torchvision's classifier keys (ignored by LPIPS; small tensors keep the files small)
CLASSIFIER = {"alex": (1, 4, 6), "vgg": (0, 3, 6)}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("eval_perceptual")
    torch.manual_seed(0)
    model = GLEANStyleGANv2(**TINY.to_dict())
    paths = {"weights": save_safetensors(model, folder / "tiny.safetensors", config=TINY.to_dict())}
    for net, trunk in (("alex", AlexNetFeatures()), ("vgg", VGG16Features())):
        state = he_initialised(trunk.state_dict())
        state |= {f"classifier.{i}.{k}": torch.zeros(2, 2) for i in CLASSIFIER[net] for k in ("weight", "bias")}
        torch.save(state, folder / f"{net}.pth")
        torch.save({f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate(CHANNELS[net])},
                   folder / f"{net}_lin.pth")
        paths[net], paths[f"{net}_lin"] = folder / f"{net}.pth", folder / f"{net}_lin.pth"
    # pytorch-fid's pt_inception layout: the trunk, no num_batches_tracked, a 1008-class fc.
    inception = {k: v for k, v in randomised_inception_state(1).items() if not k.endswith("num_batches_tracked")}
    inception |= {"fc.weight": torch.randn(1008, 2048) * 0.01, "fc.bias": torch.zeros(1008)}
    torch.save(inception, folder / "pt_inception.pth")
    paths["inception"] = folder / "pt_inception.pth"
    hr_dir = folder / "hr"
    hr_dir.mkdir()
    for name, photo, (y, x) in (("astronaut", data.astronaut(), (20, 180)), ("chelsea", data.chelsea(), (40, 150)),
                                ("coffee", data.coffee(), (100, 200))):  # FID needs 2+; Inception is slow on CPU
        Image.fromarray(photo[y:y + 128, x:x + 128]).save(hr_dir / f"{name}.png")
    paths["hr"] = hr_dir
    return paths


def _eval(args: list[str]) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "gleansr.cli", "eval", *map(str, args), "--device", "cpu"]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def _images(folder: Path) -> dict[str, np.ndarray]:
    return {p.stem: np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.png"))}


def _frechet_by_eigenvalues(reference: np.ndarray, others: dict[str, np.ndarray]) -> dict[str, float]:
    """Frechet distances to ``reference`` written independently of gleansr: tr sqrt(S_r S_o) as the
    sum of the square roots of the eigenvalues of the symmetric S_r^1/2 S_o S_r^1/2 (numpy only)."""
    mu_r, s_r = reference.mean(0), np.cov(reference, rowvar=False)
    values, vectors = np.linalg.eigh(s_r)
    root = (vectors * np.sqrt(values.clip(0))) @ vectors.T
    distances = {}
    for kind, features in others.items():
        mu, s = features.mean(0), np.cov(features, rowvar=False)
        cross = np.linalg.eigvalsh(root @ s @ root).clip(0)
        distances[kind] = float(((mu - mu_r) ** 2).sum() + np.trace(s_r) + np.trace(s) - 2 * np.sqrt(cross).sum())
    return distances


def _fid_column(stdout: str) -> dict[str, float]:
    rows = {line.split()[0]: line.split() for line in stdout.splitlines() if line.split()[:1] in (["bicubic"], ["GLEAN"])}
    header = next(line.split() for line in stdout.splitlines() if line.startswith("method"))
    assert header[-1] == "FID"
    return {"bicubic": float(rows["bicubic"][-1]), "sr": float(rows["GLEAN"][-1])}


def test_lpips_alex_and_fid_through_the_cli(files, tmp_path):
    result = _eval([files["hr"], "--weights", files["weights"], "--lpips", "alex", files["alex"], files["alex_lin"],
                    "--fid", files["inception"], "--csv", tmp_path / "m.csv", "--save-sr", tmp_path / "sr"])
    assert result.returncode == 0, result.stderr
    assert "LPIPS" in result.stdout
    rows = {r["image"]: r for r in csv.DictReader(open(tmp_path / "m.csv"))}
    hrs, srs = _images(files["hr"]), _images(tmp_path / "sr")
    assert set(srs) == set(hrs) and len(hrs) == 3
    lpips = LPIPS("alex", files["alex"], files["alex_lin"])
    bicubics = {k: imresize(imresize(hr, scale=1 / 8), output_shape=(128, 128)) for k, hr in hrs.items()}
    with torch.no_grad():
        for name, hr in hrs.items():
            x = uint8_to_tensor(np.stack([bicubics[name], srs[name], hr]))  # [-1, 1], LPIPS's range
            direct = lpips(x[:2], x[2:].expand(2, -1, -1, -1))
            assert float(rows[f"{name}.png"]["bicubic_lpips"]) == pytest.approx(float(direct[0]), rel=1e-4)
            assert float(rows[f"{name}.png"]["sr_lpips"]) == pytest.approx(float(direct[1]), rel=1e-4)
            assert float(rows[f"{name}.png"]["sr_lpips"]) > 0
        assert float(lpips(x[2:], x[2:].clone())) == 0.0  # LPIPS(x, x)
    inception = InceptionV3FID()
    load_fid_inception_weights(inception, files["inception"])
    with torch.no_grad():
        features = {kind: inception(torch.from_numpy(np.stack(list(images.values()))).permute(0, 3, 1, 2) / 255.0)
                    .double().numpy() for kind, images in (("hr", hrs), ("sr", srs), ("bicubic", bicubics))}
    printed = _fid_column(result.stdout)
    expected = _frechet_by_eigenvalues(features["hr"], {kind: features[kind] for kind in ("sr", "bicubic")})
    for kind in ("sr", "bicubic"):
        assert printed[kind] == pytest.approx(expected[kind], abs=1e-3)  # printed with 3 decimals
        # the eigenvalue route adds the square roots of ~2000 rounding-noise eigenvalues: 1e-5 relative
        assert fid_from_features(features[kind], features["hr"]) == pytest.approx(expected[kind], rel=1e-4)
    assert printed["sr"] > 1e-2 and printed["bicubic"] > 1e-2
    assert abs(fid_from_features(features["hr"], features["hr"])) < 1e-9  # a set against itself


def test_lpips_vgg_through_the_cli(files, tmp_path):
    hr_dir = tmp_path / "hr"
    hr_dir.mkdir()
    hr = np.asarray(Image.open(files["hr"] / "chelsea.png"))
    Image.fromarray(hr).save(hr_dir / "chelsea.png")
    result = _eval([hr_dir, "--weights", files["weights"], "--lpips", "vgg", files["vgg"], files["vgg_lin"],
                    "--csv", tmp_path / "m.csv"])
    assert result.returncode == 0, result.stderr
    row = next(r for r in csv.DictReader(open(tmp_path / "m.csv")) if r["image"] == "chelsea.png")
    bicubic = imresize(imresize(hr, scale=1 / 8), output_shape=(128, 128))
    with torch.no_grad():
        direct = LPIPS("vgg", files["vgg"], files["vgg_lin"])(uint8_to_tensor(bicubic)[None], uint8_to_tensor(hr)[None])
    assert float(row["bicubic_lpips"]) == pytest.approx(float(direct), rel=1e-4) and float(direct) > 0


def test_bad_perceptual_files_are_one_line_errors(files, capsys):
    base = ["eval", str(files["hr"]), "--weights", str(files["weights"]), "--device", "cpu"]
    assert main([*base, "--fid", str(files["alex_lin"])]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gleansr: error:") and "FID Inception" in err and err.count("\n") == 1
    assert main([*base, "--lpips", "squeeze", str(files["alex"]), str(files["alex_lin"])]) == 2
    assert "--lpips takes alex or vgg" in capsys.readouterr().err
    assert main([*base, "--lpips", "alex", str(files["vgg"]), str(files["alex_lin"])]) == 2
    assert "AlexNet" in capsys.readouterr().err
