"""The bundled model's declaration, its samples, and ``gleansr demo`` (with a tiny random GLEAN put in
place of the bundled weights), plus the real bundled weights wherever they are installed."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import load_script
from gleansr import zoo
from gleansr.loading import save_safetensors
from gleansr.cli import main
from gleansr.commands.demo import sample_pairs
from gleansr.imaging.imresize import imresize
from gleansr.errors import GleanError
from gleansr.metrics import psnr, ssim, stroke_f1
from gleansr.models.glean import GLEANConfig, GLEANStyleGANv2

TINY_16_128 = GLEANConfig(in_size=16, out_size=128, rrdb_channels=4, num_rrdbs=1, style_channels=8, num_mlps=1,
                          channel_multiplier=0.5, channel_max=8)
BUNDLED = [entry for entry in zoo.ZOO.values() if entry.weights.bundled]
COLUMNS = ["bicubic_psnr", "bicubic_ssim", "glean_psnr", "glean_ssim"]


@pytest.fixture
def tiny_bundle(tmp_path, monkeypatch):
    """A random tiny GLEAN installed as the bundled glean_glyphs_8x (declaration adjusted to it)."""
    assets = tmp_path / "assets"
    declared = zoo.ZOO["glean_glyphs_8x"]
    monkeypatch.setattr(zoo, "ASSETS", assets)
    monkeypatch.setitem(zoo.ZOO, declared.name, dataclasses.replace(declared, config=TINY_16_128))
    torch.manual_seed(0)
    model = GLEANStyleGANv2(**TINY_16_128.to_dict())
    save_safetensors(model, assets / declared.weights.filename, config=model.config.to_dict())
    return model


def _table(text: str) -> tuple[list[str], dict[str, list[float]]]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == ["sample"])
    header = lines[start].split()
    rows = {}
    for line in lines[start + 1:]:
        parts = line.split()
        if len(parts) != len(header):
            break
        rows[parts[0]] = [float(v) for v in parts[1:]]
    return header, rows


def _uint8(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_declarations_build_and_fit_the_samples():
    pairs = sample_pairs(zoo.SAMPLES)
    assert len(pairs) >= 4
    for model in BUNDLED:
        net = GLEANStyleGANv2(**model.config.to_dict()).eval()
        size_mb = sum(t.numel() * 4 for t in net.state_dict().values()) / 2**20
        assert size_mb < 30, f"{model.name} would ship {size_mb:.1f} MB of float32 weights"
        with torch.no_grad():
            out = net(torch.zeros(1, 3, model.config.in_size, model.config.in_size))
        assert out.shape == (1, 3, model.config.out_size, model.config.out_size)
        for _, lr, hr in pairs:
            assert Image.open(lr).size == (model.config.in_size,) * 2
            assert Image.open(hr).size == (model.config.out_size,) * 2


def test_samples_are_matlab_bicubic_downscales_of_their_originals():
    for _, lr, hr in sample_pairs(zoo.SAMPLES):
        assert np.array_equal(_uint8(lr), imresize(_uint8(hr), scale=1 / 8))


def test_demo_writes_results_and_a_parsable_table(tiny_bundle, tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out), "--device", "cpu"]) == 0
    header, rows = _table(capsys.readouterr().out)
    assert header == ["sample", *COLUMNS]
    pairs = sample_pairs(zoo.SAMPLES)
    assert set(rows) == {name for name, _, _ in pairs} | {"mean"}
    for column in range(len(COLUMNS)):
        assert math.isclose(rows["mean"][column], np.mean([rows[n][column] for n, _, _ in pairs]), abs_tol=1e-3)
    for name, lr_path, hr_path in pairs:
        lr, hr = _uint8(lr_path), _uint8(hr_path)
        bicubic = imresize(lr, output_shape=(128, 128))
        assert np.array_equal(_uint8(out / f"{name}_bicubic.png"), bicubic)
        assert rows[name][:2] == pytest.approx([psnr(bicubic, hr), ssim(bicubic, hr)], abs=1e-4)
        sr = _uint8(out / f"{name}_glean.png")
        assert sr.shape == (128, 128, 3)
        assert rows[name][2:] == pytest.approx([psnr(sr, hr), ssim(sr, hr)], abs=1e-4)
        compare = Image.open(out / f"{name}_compare.png")
        assert compare.size == (4 * 128 + 3 * 4, 128 + 18)
        panels = np.asarray(compare.convert("RGB"))[18:]
        assert np.array_equal(panels[:, 3 * 132:], hr) and np.array_equal(panels[:, 2 * 132:2 * 132 + 128], sr)
    assert sorted(p.name for p in out.iterdir()) == sorted([".gleansr-demo.json"] + [
        f"{name}_{kind}.png" for name, _, _ in pairs for kind in ("glean", "bicubic", "compare")])


def test_demo_reruns_replace_only_its_own_unchanged_outputs(tiny_bundle, tmp_path, capsys):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "notes.txt").write_text("the user's")  # a file the demo never names: never touched
    assert main(["demo", "-o", str(out), "--device", "cpu"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(["demo", "-o", str(out), "--device", "cpu"]) == 0  # the README command, run twice
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    edited = sorted(name for name in before if name.endswith(".png"))[0]
    (out / edited).write_bytes(b"user's file")  # changed since the demo wrote it: no longer the demo's
    assert main(["demo", "-o", str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "exists" in err and "--overwrite" in err
    assert (out / edited).read_bytes() == b"user's file"
    assert main(["demo", "-o", str(out), "--device", "cpu", "--overwrite"]) == 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_demo_refuses_a_same_named_file_it_did_not_write(tiny_bundle, tmp_path, capsys):
    out = tmp_path / "demo"
    name = sample_pairs(zoo.SAMPLES)[0][0]
    out.mkdir()
    (out / f"{name}_glean.png").write_bytes(b"user's file")
    assert main(["demo", "-o", str(out), "--device", "cpu"]) == 2
    assert f"{name}_glean.png exists" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [f"{name}_glean.png"]


@pytest.mark.skipif(not zoo.is_present(zoo.ZOO["glean_glyphs_8x"]), reason="bundled weights not installed")
def test_readme_demo_command_runs_twice(tmp_path):
    """`gleansr demo` as a user types it, twice in one folder: both runs exit 0 (issue 13.5)."""
    import subprocess
    import sys

    command = [sys.executable, "-c", "import sys; from gleansr.cli import main; sys.exit(main())", "demo",
               "--device", "cpu"]
    first = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    written = {p.name: p.read_bytes() for p in (tmp_path / "demo_out").iterdir()}
    second = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout and "mean" in second.stdout
    assert {p.name: p.read_bytes() for p in (tmp_path / "demo_out").iterdir()} == written


def test_demo_without_installed_weights_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(zoo, "ASSETS", tmp_path / "empty")
    assert main(["demo", "-o", str(tmp_path / "demo"), "--device", "cpu"]) == 2
    assert "no default model is installed" in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()


def test_a_mismatched_weights_file_is_refused(tiny_bundle, monkeypatch):
    declared = zoo.ZOO["glean_glyphs_8x"]
    monkeypatch.setitem(zoo.ZOO, declared.name, dataclasses.replace(declared, config=zoo.GLYPHS_8X_CONFIG))
    with pytest.raises(GleanError, match="not the glean_glyphs_8x declared in the zoo"):
        zoo.load_model("glean_glyphs_8x")


@pytest.mark.parametrize("model", BUNDLED, ids=lambda m: m.name)
def test_installed_bundled_weights_beat_bicubic(model):
    """Where the weights are installed, they load strictly and beat bicubic on the held-out samples;
    where they are not, the declaration claims no figures."""
    if not zoo.is_present(model):
        assert model.psnr is None and model.ssim is None
        return
    net = zoo.load_model(model.name)
    from gleansr.imaging.convert import tensor_to_uint8, uint8_to_tensor

    gains = []
    for _, lr_path, hr_path in sample_pairs(zoo.SAMPLES):
        lr, hr = _uint8(lr_path), _uint8(hr_path)
        with torch.no_grad():
            sr = tensor_to_uint8(net(uint8_to_tensor(lr)[None]))[0]
        gains.append(psnr(sr, hr) - psnr(imresize(lr, output_shape=hr.shape[:2]), hr))
    assert np.mean(gains) > 0, f"{model.name} loses to bicubic by {-np.mean(gains):.2f} dB on the samples"
    assert model.psnr is not None and model.bicubic_psnr is not None and model.psnr > model.bicubic_psnr


def test_ablation_evaluation_pairs_methods_image_by_image(tmp_path):
    """scripts/eval_ablation.py on the samples with two tiny models: figures match a direct computation."""
    import json

    from gleansr.imaging.convert import tensor_to_uint8, uint8_to_tensor

    script = load_script("eval_ablation")
    paths, nets = {}, {}
    for seed, name in enumerate(("glean", "ablation")):
        torch.manual_seed(seed)
        nets[name] = GLEANStyleGANv2(**TINY_16_128.to_dict()).eval()
        paths[name] = save_safetensors(nets[name], tmp_path / f"{name}.safetensors", config=TINY_16_128.to_dict())
    hr_dir = zoo.SAMPLES / "hr"
    assert script.main(["--hr", str(hr_dir), "--model", f"glean={paths['glean']}", "--model",
                        f"ablation={paths['ablation']}", "--device", "cpu", "--json", str(tmp_path / "r.json"),
                        "--markdown", str(tmp_path / "r.md")]) == 0
    result = json.loads((tmp_path / "r.json").read_text())
    expected = {(m, metric): [] for m in ("bicubic", "glean", "ablation") for metric in (psnr, stroke_f1)}
    for hr_path in sorted(hr_dir.glob("*.png")):
        hr = _uint8(hr_path)
        lr = imresize(hr, scale=1 / 8)
        outputs = {"bicubic": imresize(lr, output_shape=(128, 128))}
        for name, net in nets.items():
            with torch.no_grad():
                outputs[name] = tensor_to_uint8(net(uint8_to_tensor(lr)[None]))[0]
        for (name, metric), values in expected.items():
            values.append(metric(outputs[name], hr))
    assert result["images"] == len(expected["bicubic", psnr])
    for (method, metric), values in expected.items():
        assert result["methods"][method][metric.__name__] == pytest.approx(np.mean(values), abs=1e-4)
    paired = result["paired"]["ablation"]
    diffs = {metric: np.subtract(expected["glean", metric], expected["ablation", metric]) for metric in (psnr, stroke_f1)}
    assert paired["psnr_diff"] == pytest.approx(diffs[psnr].mean(), abs=1e-4)
    assert paired["ci95"][0] <= paired["psnr_diff"] <= paired["ci95"][1]
    assert paired["better_share"] == pytest.approx(np.mean(diffs[psnr] > 0))
    assert paired["stroke_f1_diff"] == pytest.approx(diffs[stroke_f1].mean(), abs=1e-4)
    assert paired["stroke_f1_ci95"][0] <= paired["stroke_f1_diff"] <= paired["stroke_f1_ci95"][1]
    assert "| bicubic |" in (tmp_path / "r.md").read_text()


def test_readme_figure_has_a_labelled_row_per_sample(tmp_path, capsys):
    torch.manual_seed(0)
    net = GLEANStyleGANv2(**TINY_16_128.to_dict()).eval()
    weights = save_safetensors(net, tmp_path / "tiny.safetensors", config=TINY_16_128.to_dict())
    out = tmp_path / "figure.png"
    assert load_script("glyph_figure").main(["--model", f"a={weights}", "--model", f"b={weights}",
                                         "--samples", "2", "-o", str(out)]) == 0
    figure = _uint8(out)
    hr_path = sample_pairs(zoo.SAMPLES)[1][2]
    row = figure.shape[0] // 2
    assert figure.shape[0] == 2 * row and figure.shape[1] > 5 * 128  # LR | bicubic | a | b | original
    assert (figure[-128:, -128:] == _uint8(hr_path)).all()  # the second row ends with its original
    assert "wrote" in capsys.readouterr().out
