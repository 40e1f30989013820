"""What a new user meets (issue 13), walked as they would: real photos from scikit-image, the
command line in a subprocess, exit codes, messages and the files left on disk.

Each test names the problem of issue 13 it covers; on the code before the fix each one fails.
"""
import subprocess
import sys
from importlib.resources import files

import numpy as np
import pytest
from PIL import Image
from skimage import data

BUNDLED_WEIGHTS = files("gleansr") / "assets" / "glean_glyphs_8x.safetensors"


def gleansr(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gleansr.cli", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The one ``gleansr: error:`` line (there must be exactly one, and no traceback)."""
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("gleansr: error:")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


@pytest.fixture
def photos(tmp_path):
    """astronaut.png (512x512, a face), chelsea.png (451x300, a cat), coffee.png (600x400)."""
    for name in ("astronaut", "chelsea", "coffee"):
        Image.fromarray(getattr(data, name)()).save(tmp_path / f"{name}.png")
    return tmp_path


@pytest.fixture
def small(tmp_path):
    """small/: three 16x16 crops of the photos, the default model's input size."""
    folder = tmp_path / "small"
    folder.mkdir()
    for name, (y, x) in {"astronaut": (180, 220), "chelsea": (120, 160), "coffee": (200, 300)}.items():
        Image.fromarray(getattr(data, name)()[y:y + 16, x:x + 16]).save(folder / f"{name}.png")
    return folder


def test_13_1_a_large_photo_is_refused_with_the_reason_and_what_to_do(photos):
    proc = gleansr("upscale", "astronaut.png", cwd=photos)
    assert proc.returncode == 1  # refused, as a bad input: the README's exit codes
    assert "default glean_glyphs_8x (glyphs: text glyphs, black on white" in proc.stderr  # the default, named
    (line,) = [line for line in proc.stderr.splitlines() if line.startswith("refused: ")]
    assert "astronaut.png is 512x512, larger than the 16x16 input of glean_glyphs_8x" in line
    for hint in ("--resize", "gleansr models"):
        assert hint in line
    assert "faces" not in line  # a glyph model: faces mode would not help
    assert sorted(p.name for p in photos.iterdir()) == ["astronaut.png", "chelsea.png", "coffee.png"]


def test_13_1_resize_forces_it_and_small_inputs_are_enlarged(photos, tmp_path):
    proc = gleansr("upscale", "chelsea.png", "--resize", "--quiet", cwd=photos)
    assert proc.returncode == 0, proc.stderr
    assert "resized 300x300 to 16x16" in proc.stderr
    assert Image.open(photos / "chelsea_x8.png").size == (128, 128)
    Image.fromarray(data.coffee()[200:210, 300:312]).save(tmp_path / "tiny.png")  # 12x10: under 16x16
    proc = gleansr("upscale", "tiny.png", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "centre-cropped 12x10 to 10x10" in proc.stderr and "resized 10x10 to 16x16" in proc.stderr
    assert Image.open(tmp_path / "tiny_x8.png").size == (128, 128)


def test_13_2_faces_takes_face_models_only(photos):
    proc = gleansr("upscale", "--faces", "astronaut.png", cwd=photos)
    assert proc.returncode == 2
    assert "glean_glyphs_8x (glyphs: text glyphs" in error_line(proc) and "glean_ffhq_16x" in error_line(proc)
    proc = gleansr("upscale", "--faces", "--model", "glean_cat_8x", "astronaut.png", cwd=photos)
    assert proc.returncode == 2
    assert "glean_cat_8x (cats: cat photos" in error_line(proc) and "is not a face model" in error_line(proc)
    proc = gleansr("upscale", "--faces", "--weights", BUNDLED_WEIGHTS, "astronaut.png", cwd=photos)
    assert proc.returncode == 2
    assert "glean_glyphs_8x.safetensors is a face model" in error_line(proc) and "--face-model-ok" in proc.stderr
    assert not list(photos.glob("*_x*"))


def test_13_5_a_second_run_over_a_folder_skips_its_own_outputs(small):
    first = gleansr("upscale", small, "--quiet", cwd=small.parent)
    assert first.returncode == 0, first.stderr
    assert "3 written, 0 skipped (exist), 0 refused, 0 failed" in first.stderr
    outputs = {p.name: p.read_bytes() for p in small.glob("*_x8.png")}
    assert sorted(outputs) == ["astronaut_x8.png", "chelsea_x8.png", "coffee_x8.png"]
    second = gleansr("upscale", small, "--quiet", cwd=small.parent)
    assert second.returncode == 0, second.stderr
    assert "left out 3 earlier output(s)" in second.stderr
    assert "0 written, 3 skipped (exist), 0 refused, 0 failed" in second.stderr
    assert {p.name: p.read_bytes() for p in small.glob("*_x8*.png")} == outputs  # nothing new, nothing changed


def test_13_5_a_missing_input_among_several_is_reported_and_the_rest_go_on(small, tmp_path):
    proc = gleansr("upscale", small / "astronaut.png", "missing.png", small / "coffee.png", "-o", "out", "--quiet",
                   cwd=tmp_path)
    assert proc.returncode == 1
    assert "failed: input missing.png does not exist" in proc.stderr
    assert "2 written, 0 skipped (exist), 0 refused, 1 failed" in proc.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["astronaut_x8.png", "coffee_x8.png"]


def test_13_6_the_readme_api_is_importable_from_the_top(tmp_path):
    code = """
import sys
import gleansr
assert "torch" not in sys.modules, "import gleansr loaded torch"
from gleansr import Upscaler, create_model, load_model
model = create_model("glean_glyphs_8x")
assert (model.in_size, model.out_size) == (16, 128)
assert type(load_model("glean_glyphs_8x")) is type(model)
print(Upscaler("glean_glyphs_8x", device="cpu").entry.domain)
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "glyphs"


def test_13_7_help_answers_without_importing_torch(tmp_path):
    for argv in (["--help"], ["upscale", "--help"], ["upscale"]):
        proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "gleansr.cli", *argv], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == (2 if argv == ["upscale"] else 0)
        assert "usage: gleansr" in proc.stdout + proc.stderr
        imported = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if "|" in line]
        assert "gleansr.errors" in imported and "torch" not in imported, argv


def test_13_8_messages_name_the_fix(tmp_path, small):
    proc = gleansr("upscale", "--model", "glean_glyph_8x", small, cwd=tmp_path)
    assert proc.returncode == 2
    assert "unknown model 'glean_glyph_8x'; did you mean 'glean_glyphs_8x'?" in error_line(proc)
    (tmp_path / "nested" / "inner").mkdir(parents=True)
    np.save(tmp_path / "nested" / "not_an_image.npy", np.zeros(3))
    Image.fromarray(data.coffee()[:16, :16]).save(tmp_path / "nested" / "inner" / "deep.png")
    proc = gleansr("upscale", "nested", cwd=tmp_path)
    assert proc.returncode == 2
    assert error_line(proc).endswith("(use -r to search its sub-folders)")
    assert gleansr("upscale", "nested", "-r", "--quiet", cwd=tmp_path).returncode == 0
    assert (tmp_path / "nested" / "inner" / "deep_x8.png").is_file()
