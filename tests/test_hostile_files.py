"""Issue 23, items 11, 13 and 14: files the operating system refuses, full disks, killed saves,
and hostile names and values, each answered with one line (never a traceback) and no partial file.

Faults are real where the OS can give them to root (a file where a folder should be, a folder
where the file should be, a folder read-only to a process without CAP_DAC_OVERRIDE) and
injected in-process where it cannot (a full disk: :mod:`disk_faults`).
"""
from __future__ import annotations

import ctypes
import errno
import os
import pickle
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO, TINY_GLEAN
from disk_faults import faulty_opener
from gleansr import atomic
from gleansr.atomic import atomic_path, atomic_torch_save, atomic_write_bytes, remove_stale_temp_files
from gleansr.cli import main
from gleansr.errors import GleanError, OutputError, describe_os_error
from gleansr.loading import save_safetensors
from gleansr.models import StyleGAN2Discriminator
from gleansr.models.glean import GLEANConfig, GLEANStyleGANv2
from gleansr.pipeline.files import gather_inputs, output_path
from gleansr.train.config import TrainConfig
from gleansr.train.overrides import with_overrides
from gleansr.train.state import save_training_checkpoint

sys.path.insert(0, str(Path(__file__).parent / "train"))
from train_helpers import cli_args, one_torch_thread, setup_run  # noqa: E402,F401 (an autouse fixture)

TIMEOUT = 240  # seconds for one CLI run on a loaded 2-core machine
FAULTS = Path(__file__).parent / "disk_faults.py"
DEMO_SIZES = GLEANConfig(in_size=16, out_size=128, rrdb_channels=4, num_rrdbs=1, style_channels=8, num_mlps=1,
                         channel_multiplier=0.5, channel_max=8)  # fits the bundled 16 -> 128 samples


def temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*.tmp"))


def env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1", **extra}


def gleansr(*args: str, faults: dict[str, str] | None = None, drop_dac: bool = False
            ) -> subprocess.CompletedProcess:
    """Run the CLI in a subprocess (through :mod:`disk_faults` when ``faults`` are given; without
    the capability that lets root write into read-only folders when ``drop_dac``)."""
    command = [sys.executable, str(FAULTS)] if faults else [sys.executable, "-m", "gleansr.cli"]
    return subprocess.run([*command, *args], env=env(**(faults or {})), capture_output=True, text=True,
                          timeout=TIMEOUT, preexec_fn=_drop_dac_override if drop_dac else None)


def _drop_dac_override() -> None:
    """In the child: give up CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH, so that root obeys file modes."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP: gone after exec
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def one_line_error(proc: subprocess.CompletedProcess, code: int = 1) -> str:
    """The error line of a run that failed cleanly: exit ``code``, no traceback."""
    assert proc.returncode == code, (proc.returncode, proc.stderr[-2000:])
    return _the_error(proc.stderr)


def cli_error(args: list[str], capsys, code: int = 1) -> str:
    """:func:`one_line_error` for the CLI run in this process (faster than a subprocess)."""
    capsys.readouterr()
    assert main(args) == code
    return _the_error(capsys.readouterr().err)


def _the_error(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr[-2000:]
    errors = [line for line in stderr.splitlines() if line.startswith("gleansr: error:")]
    assert len(errors) == 1, stderr[-2000:]
    return errors[0]


@pytest.fixture
def full_disk(monkeypatch):
    """In this process: outputs share ``budget`` free bytes, then the disk is full."""
    def fill(budget: int, match: str = "") -> dict:
        opener, state = faulty_opener(budget, match)
        monkeypatch.setattr(atomic, "_open_for_writing", opener)
        return state
    return fill


@pytest.fixture(scope="module")
def read_only(tmp_path_factory) -> Path:
    """A folder this test's CLI subprocesses cannot write into (mode 0555, and no DAC override)."""
    folder = tmp_path_factory.mktemp("ro") / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    probe = subprocess.run([sys.executable, "-c", f"open({str(folder / 'x')!r}, 'w')"], capture_output=True,
                           timeout=60, preexec_fn=_drop_dac_override)
    if probe.returncode == 0:
        pytest.skip("this system lets the test process write into a read-only folder")
    yield folder
    folder.chmod(0o755)


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    """A GLEAN run folder (tiny model) whose last.pt gleansr export reads."""
    folder = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    glean = GLEANStyleGANv2(**TINY_GLEAN)
    config = TrainConfig(model=glean.config, batch_size=2)
    discriminator = StyleGAN2Discriminator.from_config(config.discriminator_config)
    save_training_checkpoint(folder, {"kind": "glean", "iteration": 3, "generator": glean.state_dict(),
                                      "discriminator": discriminator.state_dict(), "config": config.to_dict()})
    return folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[dict[str, Path], Path]:
    """Training inputs and a run folder trained for 2 iterations (copied by each test that resumes it)."""
    root = tmp_path_factory.mktemp("trained")
    files = setup_run(root)
    torch.set_num_threads(1)
    assert main(cli_args(files, root / "run", "--max-iters", "2", "--set", "val_every=100")) == 0
    return files, root / "run"


def resumable(trained: tuple[dict[str, Path], Path], tmp_path: Path) -> tuple[dict[str, Path], Path]:
    files, run = trained
    shutil.copytree(run, tmp_path / "run")
    return files, tmp_path / "run"


@pytest.fixture(scope="module")
def demo_weights(tmp_path_factory) -> Path:
    """A tiny random GLEAN with the bundled samples' sizes, so that ``demo --weights`` is fast."""
    torch.manual_seed(0)
    model = GLEANStyleGANv2(**DEMO_SIZES.to_dict())
    return save_safetensors(model, tmp_path_factory.mktemp("w") / "tiny.safetensors", config=model.config.to_dict())


# -- the sentence and the typed error ---------------------------------------------------------

@pytest.mark.parametrize("code, reason", [
    (errno.ENOSPC, "no space left on the disk"), (errno.EROFS, "read-only"), (errno.EACCES, "permission denied"),
    (errno.EISDIR, "it is a folder"), (errno.EFBIG, "too large"), (errno.EIO, "input/output error"),
])
def test_os_errors_are_one_sentence_naming_the_file(code, reason):
    text = describe_os_error(OSError(code, os.strerror(code), "/data/out/a.png"), action="write")
    assert text.startswith("cannot write /data/out/a.png: ") and reason in text and "\n" not in text
    error = OutputError.from_os_error(OSError(code, os.strerror(code)), "/data/out/a.png")
    assert error.path == Path("/data/out/a.png") and error.errno == code and error.filename == "/data/out/a.png"
    assert error.no_space == (code == errno.ENOSPC) and str(error) == text and reason in error.strerror
    assert isinstance(error, OSError)  # code that handles OS errors (and their errno) keeps working
    copy = pickle.loads(pickle.dumps(error))  # e.g. from a worker process
    assert (str(copy), copy.path, copy.errno, copy.no_space) == (text, error.path, code, error.no_space)


def test_a_file_in_the_way_of_a_folder_is_named(tmp_path):
    (tmp_path / "plain").write_text("x")
    target = tmp_path / "plain" / "deeper" / "a.png"
    with pytest.raises(OutputError, match=f"cannot write {target}: {tmp_path / 'plain'} is a file, not a folder"):
        atomic_write_bytes(target, b"data")


# -- item 11: OS errors in the writers and at the CLI's top level ------------------------------

def test_a_full_disk_leaves_no_partial_file_and_keeps_what_was_there(tmp_path, monkeypatch):
    opener, fault = faulty_opener(budget=1000)
    monkeypatch.setattr(atomic, "_open_for_writing", opener)
    (tmp_path / "kept.bin").write_bytes(b"before")
    with pytest.raises(OutputError, match="kept.bin: no space left on the disk") as caught:
        atomic_write_bytes(tmp_path / "kept.bin", b"x" * 5000, overwrite=True)
    assert caught.value.no_space and caught.value.path == tmp_path / "kept.bin" and fault["hits"] == 1
    assert (tmp_path / "kept.bin").read_bytes() == b"before"
    with pytest.raises(OutputError) as caught:  # torch.save's own "unexpected pos" becomes the OS's reason
        atomic_torch_save({"w": torch.zeros(10_000)}, tmp_path / "model.pt")
    assert caught.value.no_space and "no space left" in str(caught.value)
    assert not (tmp_path / "model.pt").exists() and temp_files(tmp_path) == []


def test_other_errors_inside_a_write_are_left_as_they_are(tmp_path):
    """An error about another file (e.g. an input read while writing) is not blamed on the output."""
    with pytest.raises(FileNotFoundError):
        with atomic_path(tmp_path / "out.bin") as temp:
            temp.write_bytes(b"partial")
            open(tmp_path / "missing-input.png", "rb")
    assert temp_files(tmp_path) == [] and not (tmp_path / "out.bin").exists()


def test_cli_top_level_turns_any_os_error_into_one_line(monkeypatch, capsys):
    from gleansr.commands import models

    def refused(args):
        raise PermissionError(errno.EACCES, "Permission denied", "/srv/cache/weights")

    monkeypatch.setattr(models, "run", refused)
    assert main(["models"]) == 1
    err = capsys.readouterr().err
    assert err == "gleansr: error: /srv/cache/weights: permission denied (the folder or file is read-only for " \
                  "this user)\n"


def test_export_to_a_folder_a_file_path_and_a_read_only_folder(tmp_path, run_folder, read_only, capsys):
    folder = tmp_path / "a_folder"
    folder.mkdir()
    for overwrite in ([], ["--overwrite"]):
        line = cli_error(["export", str(run_folder), "-o", str(folder), *overwrite], capsys)
        assert line.endswith(f"cannot write {folder}: it is a folder, not a file") and not any(folder.iterdir())
    plain = tmp_path / "plain.txt"
    plain.write_text("mine")
    line = cli_error(["export", str(run_folder), "-o", str(plain / "model.safetensors")], capsys)
    assert f"{plain} is a file, not a folder" in line and plain.read_text() == "mine"
    line = one_line_error(gleansr("export", str(run_folder), "-o", str(read_only / "model.pth"), drop_dac=True))
    assert f"cannot write {read_only / 'model.pth'}: permission denied" in line and not any(read_only.iterdir())


def test_export_on_a_full_disk(tmp_path, run_folder, full_disk, capsys):
    line = one_line_error(gleansr("export", str(run_folder), "-o", str(tmp_path / "model.pth"),
                                  faults={"GLEANSR_FAULT_BYTES": "4096"}))
    assert line.endswith(f"cannot write {tmp_path / 'model.pth'}: no space left on the disk")
    full_disk(4096)
    line = cli_error(["export", str(run_folder), "-o", str(tmp_path / "model.safetensors")], capsys)
    assert line.endswith(f"cannot write {tmp_path / 'model.safetensors'}: no space left on the disk")
    assert list(tmp_path.iterdir()) == []


def test_demo_output_read_only_a_file_or_a_full_disk(tmp_path, demo_weights, read_only, full_disk, capsys):
    weights = ["--weights", str(demo_weights), "--device", "cpu"]
    line = one_line_error(gleansr("demo", "-o", str(read_only), *weights, drop_dac=True))
    assert f"cannot write {read_only}" in line and "permission denied" in line
    plain = tmp_path / "plain.txt"
    plain.write_text("mine")
    assert f"{plain} is a file, not a folder" in cli_error(["demo", "-o", str(plain), *weights], capsys)
    out = tmp_path / "full"
    full_disk(20000)
    line = cli_error(["demo", "-o", str(out), *weights], capsys)
    assert line.startswith(f"gleansr: error: cannot write {out}/") and line.endswith(": no space left on the disk")
    assert temp_files(out) == [] and all(Image.open(p).size for p in out.glob("*.png"))  # whole files only


def test_upscale_stops_on_a_full_disk_with_whole_files_only(tmp_path, full_disk, capsys):
    """The issue's run: the disk fills part-way through a folder; the rest is not attempted."""
    from gleansr.zoo import SAMPLES

    out = tmp_path / "out"
    full_disk(15_000)  # room for two or three of the eight glyphs
    assert main(["upscale", str(SAMPLES / "lr"), "-o", str(out), "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert "no space left" in err and "Traceback" not in err
    written = sorted(out.iterdir())
    assert 1 <= len(written) < 8 and temp_files(out) == []
    assert all(np.asarray(Image.open(p)).shape[:2] == (128, 128) for p in written)  # each decodes whole


def test_train_out_under_a_file_or_read_only_says_so_before_training(tmp_path, read_only, trained, capsys):
    files, _ = trained
    plain = tmp_path / "plain.txt"
    plain.write_text("mine")
    line = cli_error(cli_args(files, plain / "run"), capsys)
    assert line.endswith(f"cannot create the folder {plain / 'run'}: {plain} is a file, not a folder")
    line = one_line_error(gleansr(*cli_args(files, read_only / "run"), drop_dac=True))
    assert f"cannot create the folder {read_only / 'run'}: permission denied" in line


def test_checkpoint_on_a_full_disk_says_so_and_keeps_the_earlier_one(tmp_path, trained, full_disk, capsys):
    files, run = resumable(trained, tmp_path)
    saved = (run / "last.pt").read_bytes()
    full_disk(100_000, match="last.pt")
    line = cli_error(cli_args(files, run, "--max-iters", "4", "--set", "val_every=100"), capsys)
    assert line == (f"gleansr: error: cannot write {run / 'last.pt'}: no space left on the disk; iteration 4 was "
                    "not saved (earlier checkpoints kept: last.pt)")
    assert (run / "last.pt").read_bytes() == saved and temp_files(run) == []
    assert torch.load(run / "last.pt", weights_only=True)["iteration"] == 2


# -- item 13: a save killed mid-write ----------------------------------------------------------

def test_resume_removes_the_partial_checkpoint_of_a_killed_save(tmp_path, trained, capsys):
    files, run = resumable(trained, tmp_path)
    killed = gleansr(*cli_args(files, run, "--max-iters", "4", "--set", "val_every=100"),
                     faults={"GLEANSR_FAULT_BYTES": "100000", "GLEANSR_FAULT_MATCH": "last.pt",
                             "GLEANSR_FAULT_KILL": "1"})
    assert killed.returncode == -9
    partial = [p for p in run.iterdir() if p.name.startswith(".last.pt.") and p.name.endswith(".tmp")]
    assert len(partial) == 1 and partial[0].stat().st_size == 100_000
    others = [run / ".last.pt.tmp", run / "notes.last.pt.0123abcd.tmp", run / ".previous.pt.0123abcd.tmp"]
    for path in others:  # not this run's temporary files: left alone
        path.write_text("keep")
    capsys.readouterr()
    assert main(cli_args(files, run, "--max-iters", "4", "--set", "val_every=100")) == 0
    err = capsys.readouterr().err
    assert f"removed 1 partial checkpoint(s) left by an interrupted save: {partial[0].name}" in err
    assert not partial[0].exists() and all(p.read_text() == "keep" for p in others)
    assert torch.load(run / "last.pt", weights_only=True)["iteration"] == 4


def test_only_the_writers_own_temporary_names_are_removed(tmp_path):
    ours = tmp_path / ".last.pt.89abcdef.tmp"
    ours.write_bytes(b"partial")
    kept = [tmp_path / ".last.pt.89ABCDEF.tmp", tmp_path / ".last.pt.89abcdef.tmp.bak", tmp_path / "last.pt"]
    for path in kept:
        path.write_bytes(b"x")
    (tmp_path / ".last.pt.00000000.tmp").mkdir()  # a folder of that name is not a file we wrote
    assert remove_stale_temp_files(tmp_path, "last.pt") == [ours]
    assert all(p.exists() for p in kept) and (tmp_path / ".last.pt.00000000.tmp").is_dir()


# -- item 14: hostile values and names ---------------------------------------------------------

@pytest.mark.parametrize("setting, message", [
    ("lr_g=nan", "config key 'lr_g': expected a finite float, got 'nan'"),
    ("lr_d=inf", "config key 'lr_d': expected a finite float, got 'inf'"),
    ("gan_weight=-inf", "config key 'gan_weight': expected a finite float, got '-inf'"),
    ("lr_g=-0.1", "lr_g must be >= 0, got -0.1"),
    ("betas=-1,0.9", "betas must be in [0, 1), got (-1.0, 0.9)"),
])
def test_train_refuses_non_finite_and_negative_values_in_one_line(tmp_path, trained, capsys, setting, message):
    files, _ = trained
    assert main(cli_args(files, tmp_path / "run", "--set", setting)) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"gleansr: error: --set: {message}"
    assert not (tmp_path / "run").exists()  # refused before the run folder is made


def test_config_files_may_not_hold_non_finite_numbers_either():
    config = TrainConfig(model=GLEANConfig(in_size=8, out_size=32))
    with pytest.raises(GleanError, match="'lr_g': expected a finite float, got nan"):
        with_overrides(config, {"lr_g": float("nan")}, source="run.toml")


@pytest.mark.parametrize("suffix", ["/../../../X", "_x8/..", "..", "a/b", "_x8\\..\\..\\X" if os.sep == "\\" else
                                    "x\0y"])
def test_a_suffix_cannot_leave_the_output_folder(tmp_path, suffix):
    with pytest.raises(GleanError, match="may not contain a path separator or '..'"):
        output_path(tmp_path / "in" / "a.png", tmp_path / "out", suffix)
    assert output_path(tmp_path / "a.png", tmp_path / "out", "_x8.v2") == tmp_path / "out" / "a_x8.v2.png"


def test_upscale_with_a_hostile_suffix_writes_nothing(tmp_path, capsys):
    image = tmp_path / "in" / "a.png"
    image.parent.mkdir()
    Image.fromarray(np.full((16, 16, 3), 200, np.uint8)).save(image)
    out = tmp_path / "deep" / "er" / "out"
    assert main(["upscale", str(image), "-o", str(out), "--suffix", "/../../../X", "--device", "cpu"]) != 0
    assert "may not contain a path separator or '..'" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["a.png"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_named_pipe_input_is_called_what_it_is(tmp_path, capsys):
    pipe = tmp_path / "stream.png"
    os.mkfifo(pipe)
    items, problems = gather_inputs([str(pipe)])
    assert items == [] and problems == [(str(pipe), f"input {pipe} is a named pipe (FIFO), not an image file")]
    assert main(["upscale", str(pipe), "-o", str(tmp_path / "out"), "--device", "cpu"]) != 0
    assert "is a named pipe (FIFO), not an image file" in capsys.readouterr().err
    assert stat.S_ISFIFO(pipe.stat().st_mode)  # never opened: opening a FIFO blocks until a writer comes


def test_train_bank_given_a_folder_says_so_and_what_it_takes(tmp_path, trained, capsys):
    files, _ = trained
    folder = tmp_path / "banks"
    folder.mkdir()
    assert main(cli_args(files, tmp_path / "run", "--bank", str(folder))) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"gleansr: error: --bank {folder} is a folder, not a file; --bank takes a StyleGAN2 file")
    assert "a bank run folder (holding bank.safetensors), 'random' or 'pretrained'" in err


def test_convert_given_a_glean_file_says_it_already_is_one(tmp_path, run_folder, capsys):
    torch.manual_seed(0)
    glean = save_safetensors(GLEANStyleGANv2(**TINY_GLEAN), tmp_path / "glean.safetensors",
                             config=GLEANConfig(**TINY_GLEAN).to_dict())
    assert main(["convert", str(glean), "-o", str(tmp_path / "bank.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"gleansr: error: {glean} is already a GLEAN model file, not a StyleGAN2 bank: convert")
    assert "no rule maps" not in err and "--weights (upscale, eval, demo) or --init (train)" in err
    assert main(["convert", str(run_folder / "last.pt"), "-o", str(tmp_path / "bank.safetensors")]) == 2
    assert "is a GLEAN training checkpoint (gleansr export makes a release file of it)" in capsys.readouterr().err
    assert not (tmp_path / "bank.safetensors").exists()
