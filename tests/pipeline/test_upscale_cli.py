"""`gleansr upscale` end to end: folders, naming, never overwriting, bad files, sharding."""
import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from skimage import data

from gleansr.loading import save_safetensors
from gleansr.cli import main
from gleansr.pipeline.images import load_image


@pytest.fixture
def weights(tmp_path, tiny_glean):
    return str(save_safetensors(tiny_glean, tmp_path / "tiny.safetensors", config=tiny_glean.config.to_dict()))


@pytest.fixture
def inputs(tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    Image.fromarray(data.chelsea()).save(src / "cat.jpg")
    Image.fromarray(data.astronaut()[:8, :8]).save(src / "exact.bmp")
    Image.fromarray(data.camera()).save(src / "sub" / "gray.png")
    rgba = np.dstack([data.astronaut()[:64, :64], np.full((64, 64), 200, np.uint8)])
    Image.fromarray(rgba).save(src / "sub" / "alpha.webp", lossless=True)
    Image.fromarray((data.astronaut()[:16, :16, 0].astype(np.uint16) * 257)).save(src / "deep.png")
    (src / "notes.txt").write_text("not an image, skipped inside folders")
    return src


def digest(folder):
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_folder_recursive_outputs_and_inputs_untouched(tmp_path, inputs, weights, capsys):
    before = digest(inputs)
    rc = main(["upscale", str(inputs), "-r", "-o", str(tmp_path / "out"), "--weights", weights, "--quiet", "--resize"])
    assert rc == 0
    assert digest(inputs) == before
    out = tmp_path / "out"
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert names == ["cat_x4.jpg", "deep_x4.png", "exact_x4.bmp", "sub/alpha_x4.webp", "sub/gray_x4.png"]
    cat = load_image(out / "cat_x4.jpg")
    assert cat.rgb.shape == (32, 32, 3) and 0 <= cat.rgb.min() and cat.rgb.max() <= 1
    gray = load_image(out / "sub" / "gray_x4.png")
    assert gray.grayscale and gray.mode == "L"
    alpha = load_image(out / "sub" / "alpha_x4.webp")
    assert alpha.alpha is not None and abs(float(alpha.alpha.mean()) - 200 / 255) < 0.01
    deep = load_image(out / "deep_x4.png")
    assert deep.bit_depth == 16 and deep.grayscale
    err = capsys.readouterr().err
    assert "5 written, 0 skipped (exist), 0 refused, 0 failed" in err
    assert err.count("centre-cropped") == 1 and err.count("MATLAB bicubic") == 1  # said once


def test_existing_outputs_are_kept_unless_overwrite(tmp_path, inputs, weights, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "exact_x4.bmp").write_bytes(b"precious")
    assert main(["upscale", str(inputs / "exact.bmp"), "-o", str(out), "--weights", weights, "--quiet"]) == 0
    assert (out / "exact_x4.bmp").read_bytes() == b"precious"
    assert "1 skipped" in capsys.readouterr().err
    assert main(["upscale", str(inputs / "exact.bmp"), "-o", str(out), "--weights", weights, "--quiet", "--overwrite"]) == 0
    assert load_image(out / "exact_x4.bmp").rgb.shape == (32, 32, 3)


def test_bad_files_are_reported_and_the_rest_go_on(tmp_path, inputs, weights, capsys):
    (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    good = (inputs / "cat.jpg").read_bytes()
    (inputs / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (inputs / "empty.png").write_bytes(b"")
    rc = main(["upscale", str(inputs), "-o", str(tmp_path / "out"), "--weights", weights, "--quiet", "--resize"])
    err = capsys.readouterr().err
    assert rc == 1
    for name in ("broken.png", "truncated.jpg", "empty.png"):
        assert name in err
    assert "3 written, 0 skipped (exist), 0 refused, 3 failed" in err
    assert "Traceback" not in err


def test_no_resize_and_missing_inputs(tmp_path, inputs, weights, capsys):
    rc = main(["upscale", str(inputs / "cat.jpg"), "-o", str(tmp_path / "o"), "--weights", weights, "--no-resize", "--quiet"])
    assert rc == 1 and "tiny.safetensors takes exactly 8x8" in capsys.readouterr().err
    assert main(["upscale", str(tmp_path / "nope.png"), "--weights", weights]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_default_output_is_next_to_the_input(tmp_path, inputs, weights):
    assert main(["upscale", str(inputs / "exact.bmp"), "--weights", weights, "--quiet", "--ext", "png"]) == 0
    assert load_image(inputs / "exact_x4.png").rgb.shape == (32, 32, 3)


def test_torchrun_shards_inputs_exactly_once(tmp_path, weights):
    src = tmp_path / "many"
    src.mkdir()
    photo = data.astronaut()
    for i in range(7):
        Image.fromarray(photo[i * 8:i * 8 + 8, :8]).save(src / f"im{i}.png")
    out = tmp_path / "out"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(_free_port()),
           "-m", "gleansr.cli", "upscale", str(src), "-o", str(out), "--weights", weights, "--quiet"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == [f"im{i}_x4.png" for i in range(7)]
    assert "[rank 0/2] 4 written" in proc.stderr and "[rank 1/2] 3 written" in proc.stderr


def _free_port() -> int:
    """A port nobody listens on now (a fixed one collides with other runs on the machine)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
