"""``gleansr make-lr``: LR PNGs equal to imresize, same relative paths, no silent overwrite, bad files reported."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

from gleansr.cli import main
from gleansr.pipeline.images import read_rgb_uint8 as read_rgb
from gleansr.imaging.imresize import imresize


@pytest.fixture
def hr_dir(tmp_path: Path) -> Path:
    root = tmp_path / "GT"
    (root / "cats").mkdir(parents=True)
    Image.fromarray(skimage.data.chelsea()[:64, :96]).save(root / "cats" / "chelsea.png")
    Image.fromarray(skimage.data.coffee()[:32, :64]).save(root / "coffee.jpg", quality=95)
    return root


def test_writes_imresize_of_every_image(hr_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "BIx8"
    assert main(["make-lr", str(hr_dir), "-o", str(out), "--scale", "8"]) == 0
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == ["cats/chelsea.png", "coffee.png"]  # no temporary files left behind
    for rel, source in (("cats/chelsea.png", "cats/chelsea.png"), ("coffee.png", "coffee.jpg")):
        lr = np.asarray(Image.open(out / rel))
        np.testing.assert_array_equal(lr, imresize(read_rgb(hr_dir / source), 1 / 8))
    assert lr.shape == (4, 8, 3)
    assert "wrote 2" in capsys.readouterr().out


def test_existing_outputs_are_kept_unless_overwrite(hr_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "LR"
    assert main(["make-lr", str(hr_dir), "-o", str(out), "--scale", "4"]) == 0
    target = out / "coffee.png"
    Image.fromarray(np.zeros((8, 16, 3), np.uint8)).save(target)  # a user's file
    capsys.readouterr()
    assert main(["make-lr", str(hr_dir), "-o", str(out), "--scale", "4"]) == 0
    assert "skipped 2" in capsys.readouterr().out
    assert not np.asarray(Image.open(target)).any()
    assert main(["make-lr", str(hr_dir), "-o", str(out), "--scale", "4", "--overwrite"]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(target)), imresize(read_rgb(hr_dir / "coffee.jpg"), 1 / 4))


def test_bad_files_are_reported_and_the_rest_written(hr_dir: Path, tmp_path: Path, capsys) -> None:
    (hr_dir / "broken.png").write_bytes(b"garbage")
    Image.fromarray(np.zeros((30, 32, 3), np.uint8)).save(hr_dir / "odd.png")
    out = tmp_path / "LR"
    assert main(["make-lr", str(hr_dir), "-o", str(out), "--scale", "8"]) == 1
    err = capsys.readouterr().err
    assert "broken.png" in err and "odd.png is 32x30, not a multiple of the scale 8" in err
    assert (out / "cats" / "chelsea.png").is_file() and (out / "coffee.png").is_file()
    assert not (out / "broken.png").exists() and not (out / "odd.png").exists()


def test_user_errors_exit_2(hr_dir: Path, tmp_path: Path, capsys) -> None:
    assert main(["make-lr", str(tmp_path / "nowhere"), "-o", str(tmp_path / "o"), "--scale", "8"]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert main(["make-lr", str(hr_dir), "-o", str(tmp_path / "o"), "--scale", "1"]) == 2
    assert main(["make-lr", str(hr_dir), "-o", str(hr_dir), "--scale", "8"]) == 2
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(hr_dir / "coffee.png")  # clashes with coffee.jpg
    assert main(["make-lr", str(hr_dir), "-o", str(tmp_path / "o"), "--scale", "8"]) == 2
    assert "coffee" in capsys.readouterr().err


def test_output_folder_inside_input_is_not_read_back(hr_dir: Path, capsys) -> None:
    out = hr_dir / "BIx4"
    assert main(["make-lr", str(hr_dir), "-o", str(out), "--scale", "4"]) == 0
    assert main(["make-lr", str(hr_dir), "-o", str(out), "--scale", "4"]) == 0
    assert sorted(p.name for p in out.rglob("*.png")) == ["chelsea.png", "coffee.png"]
