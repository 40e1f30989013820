"""What a user meets, second pass (issue 25): fine-tuning, an own config, and commands that take
what users give, walked as a user would: the command line in a subprocess, exit codes, messages,
the files left on disk. Each test names the problem of issue 25 it covers.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from skimage import data

from conftest import REPO

ASSETS = files("gleansr") / "assets"
BUNDLED = Path(str(ASSETS / "glean_glyphs_8x.safetensors"))
SAMPLES_HR = Path(str(ASSETS / "samples" / "hr"))
README = REPO / "README.md"
EXAMPLE_CONFIG = REPO / "configs" / "example_own_category.toml"
HAS_TENSORBOARD = __import__("importlib").util.find_spec("tensorboard") is not None


def gleansr(*args, cwd, env=None, timeout=600) -> subprocess.CompletedProcess:
    environ = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "gleansr.cli", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=environ)


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The one ``gleansr: error:`` line (exactly one, no traceback)."""
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("gleansr: error:")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


def glyph_folder(root: Path) -> Path:
    """my_glyphs/{train,test}/FONT/*.png as `gleansr data glyphs` lays them out: the bundled
    128x128 HR glyphs (6 to train on, 2 held out), each under its font's folder."""
    names = sorted(p.name for p in SAMPLES_HR.iterdir())
    for split, chosen in (("train", names[:6]), ("test", names[6:])):
        for name in chosen:
            font = root / split / name.rsplit("_u", 1)[0]
            font.mkdir(parents=True, exist_ok=True)
            shutil.copy(SAMPLES_HR / name, font / name)
    return root


def readme_block(heading: str) -> list[str]:
    """The commands of the first ```bash block under ``heading`` (continuations joined)."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index(heading):]
    block = re.search(r"^```bash\n(.*?)^```", section, flags=re.S | re.M).group(1)
    lines = block.replace("\\\n", " ").splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    """The README's fine-tuning example run as written, but for its data step (a folder made
    here: this machine's fonts are not the test's) and 2 iterations of batch 2."""
    work = tmp_path_factory.mktemp("readme_finetune")
    results = []
    for line in readme_block("### Fine-tuning a model on your own data"):
        words = shlex.split(line)
        assert words[0] == "gleansr", line
        if words[1:3] == ["data", "glyphs"]:
            glyph_folder(work / words[words.index("-o") + 1])
            continue
        if words[1] == "train":
            words[words.index("--max-iters") + 1] = "2"
            words += ["--batch-size", "2", "--num-workers", "0", "--device", "cpu"]
        results.append((words[1], gleansr(*words[1:], cwd=work)))
    return work, results


def test_25_1_the_readme_finetuning_example_runs_and_improves_nothing_away(finetuned):
    from gleansr.train.config import FINETUNE_SETTINGS

    work, results = finetuned
    for command, proc in results:
        assert proc.returncode == 0, (command, proc.stderr)
    train = dict(results)["train"]
    assert "not GLEAN's recipe" not in train.stderr and "random" not in train.stderr.split("fine-tuning")[0]
    assert "bank: the one inside glean_glyphs_8x (--init)" in train.stderr
    assert "fine-tuning from glean_glyphs_8x" in train.stderr
    config = json.loads((work / "runs" / "my_glyphs" / "config.json").read_text())
    assert config["bank"] == "init" and config["init"] == "glean_glyphs_8x"
    assert {key: config[key] for key, _ in FINETUNE_SETTINGS} == dict(FINETUNE_SETTINGS)
    evals = [proc.stdout for command, proc in results if command == "eval"]
    assert len(evals) == 2 and all("GLEAN" in out for out in evals)
    assert sorted(p.name for p in (work / "my_sr").rglob("*.png")) == sorted(
        p.stem + "_x8.png" for p in (work / "my_glyphs" / "test").rglob("*.png"))
    assert Image.open(next((work / "my_sr").rglob("*.png"))).size == (128, 128)
    assert (work / "my_glyphs.safetensors").is_file()


def test_25_2_a_glean_file_is_its_own_bank_and_lr_0_gives_the_model_back(tmp_path):
    """--init with a file, --bank with a GLEAN file: accepted; at learning rate 0 the exported
    generator is the bundled one bit for bit (the bank used is the file's own)."""
    glyph_folder(tmp_path / "g")
    proc = gleansr("train", "glean_glyphs_8x", "--init", BUNDLED, "--bank", BUNDLED, "--data", "g/train",
                   "--out", "run", "--max-iters", "1", "--batch-size", "2", "--num-workers", "0", "--device", "cpu",
                   "--quiet", "--set", "lr_g=0", "lr_d=0", "lr_min=0", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "not GLEAN's recipe" not in proc.stderr and "TensorBoard" not in proc.stderr  # --quiet: no note
    assert "fine-tuning from" in proc.stderr and "lr_g" not in proc.stderr.split("fine-tuning from")[1].split("\n")[0]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["bank"] == str(BUNDLED)
    assert gleansr("export", "run", "-o", "out.safetensors", cwd=tmp_path).returncode == 0
    got, want = load_file(tmp_path / "out.safetensors"), load_file(BUNDLED)
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    proc = gleansr("train", "glean_glyphs_8x", "--init", "glean_glyphs_8", "--data", "g/train", "--out", "run2",
                   "--max-iters", "1", cwd=tmp_path)
    assert proc.returncode == 2 and "--init glean_glyphs_8: no such file or folder, and not a zoo model" in \
        error_line(proc)


def _bank_file(folder: Path) -> Path:
    """A StyleGAN2 bank (generator and discriminator, random weights) shaped for the example config,
    written as `gleansr bank train` writes it."""
    from gleansr.loading.save import export_bank_run
    from gleansr.models.discriminator import StyleGAN2Discriminator
    from gleansr.models.stylegan2 import StyleGAN2Generator
    from gleansr.train.config import load_config

    model = load_config(EXAMPLE_CONFIG).model
    bank, disc = model.bank, model.discriminator()
    torch.manual_seed(0)
    generator = StyleGAN2Generator.from_config(bank)
    return export_bank_run(folder, 0, generator, generator, StyleGAN2Discriminator.from_config(disc), bank, disc)

def test_25_3_the_example_config_trains_offline_and_the_vgg_error_names_both_ways(tmp_path):
    glyph_folder(tmp_path / "g")
    bank = _bank_file(tmp_path / "bank")
    common = [EXAMPLE_CONFIG, "--data", "g/train", "--bank", bank, "--batch-size", "2", "--num-workers", "0",
              "--device", "cpu"]
    offline = {"GLEANSR_HOME": str(tmp_path / "empty_cache"), "https_proxy": "http://127.0.0.1:9",
               "http_proxy": "http://127.0.0.1:9", "no_proxy": ""}  # a download fails here, never leaves
    proc = gleansr("train", *common, "--out", "vgg_run", "--max-iters", "1", "--quiet", cwd=tmp_path, env=offline)
    assert proc.returncode == 2
    line = error_line(proc)
    assert "vgg16-397923af.pth" in line and "save it as" in line and "--set perceptual_weight=0" in line
    proc = gleansr("train", *common, "--out", "run", "--max-iters", "1", "--set", "perceptual_weight=0",
                   cwd=tmp_path, env=offline)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "run" / "last.pt").is_file()
    assert json.loads((tmp_path / "run" / "config.json").read_text())["model"]["out_size"] == 128
    notes = proc.stderr.count("TensorBoard is not installed")
    assert notes == (0 if HAS_TENSORBOARD else 1)
    proc = gleansr("train", *common, "--out", "run", "--max-iters", "2", "--set", "perceptual_weight=0",
                   cwd=tmp_path, env=offline)  # resumed: said once per run folder, not again
    assert proc.returncode == 0, proc.stderr
    assert "TensorBoard" not in proc.stderr


def test_25_4_onnx_export_takes_a_run_folder_and_names_the_model_after_the_run(finetuned, tmp_path):
    pytest.importorskip("onnxscript")
    from gleansr.onnx.export import resolve_source

    work, _ = finetuned
    run = work / "runs" / "my_glyphs"
    proc = gleansr("export", run, "-o", "m.onnx", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "(my_glyphs, fp32" in proc.stdout and (tmp_path / "m.onnx").is_file()
    assert resolve_source(run / "last.pt").name == "my_glyphs"


def test_25_5_verify_finds_the_fixture_in_a_fresh_clone_or_says_how_to_get_it(tmp_path):
    from gleansr.parity import FIXTURE, find_fixture

    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{REPO}", str(clone)], check=True, timeout=120,
                   capture_output=True)
    subprocess.run(["git", "-C", str(clone), "remote", "set-url", "origin", str(REPO)], check=True, timeout=30)
    env = {k: v for k, v in os.environ.items() if k != "GLEANSR_SHARED"}
    probe = "from gleansr.parity import find_fixture; print(find_fixture())"
    found = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                           env={**env, "PYTHONPATH": str(clone / "src")})
    assert found.returncode == 0, found.stderr
    expected = find_fixture(REPO)
    assert expected is not None and Path(found.stdout.strip()) == expected
    proc = gleansr("verify", cwd=tmp_path, env={"GLEANSR_SHARED": str(tmp_path / "nowhere")})
    line = error_line(proc)
    assert proc.returncode == 2 and str(tmp_path / "nowhere" / FIXTURE) in line
    assert "--fixture" in line and "GLEANSR_SHARED" in line and "not part of the package" in line


def test_25_6_make_lr_takes_files_says_wxh_and_crops_when_asked(tmp_path):
    Image.fromarray(data.chelsea()).save(tmp_path / "photo.png")  # 451x300
    proc = gleansr("make-lr", "photo.png", "-o", "x", "--scale", "8", cwd=tmp_path)
    assert proc.returncode == 1
    assert "photo.png is 451x300, not a multiple of the scale 8; pass --crop to centre-crop it to 448x296" in \
        proc.stderr
    upscale = gleansr("upscale", "photo.png", cwd=tmp_path)  # the same size, said the same way
    assert "451x300" in upscale.stderr
    proc = gleansr("make-lr", "photo.png", "-o", "x", "--scale", "8", "--crop", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert Image.open(tmp_path / "x" / "photo.png").size == (56, 37)
    (tmp_path / "more").mkdir()
    Image.fromarray(data.coffee()[:64, :64]).save(tmp_path / "more" / "cup.png")
    proc = gleansr("make-lr", "more", "photo.png", "-o", "y", "--scale", "8", "--crop", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "y").iterdir()) == ["cup.png", "photo.png"]
    proc = gleansr("make-lr", "nothere.png", "-o", "z", "--scale", "8", cwd=tmp_path)
    assert proc.returncode == 2 and "HR input not found: nothere.png" in error_line(proc)


def test_25_8_version_models_width_and_eval_default(tmp_path):
    from gleansr import __version__
    from gleansr.zoo import ZOO

    proc = gleansr("--version", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == f"gleansr {__version__}"
    proc = gleansr("models", cwd=tmp_path)
    assert proc.returncode == 0 and max(map(len, proc.stdout.splitlines())) <= 100
    assert all(any(line.startswith(name + " ") for line in proc.stdout.splitlines()) for name in ZOO)
    proc = gleansr("models", "glean_cat_8x", cwd=tmp_path)
    assert proc.returncode == 0  # every line fits, but for the weights' URL (one word, never broken)
    assert max(len(line) for line in proc.stdout.splitlines() if "https://" not in line) <= 100
    assert ZOO["glean_cat_8x"].input_kind in proc.stdout and "Cat100" in proc.stdout
    assert "glean_ffhq_16x" not in proc.stdout
    proc = gleansr("eval", SAMPLES_HR, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "using the default glean_glyphs_8x (glyphs" in proc.stderr
    assert np.isfinite(float(re.search(r"^GLEAN\s+(\S+)", proc.stdout, re.M).group(1)))
