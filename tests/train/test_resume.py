"""Resuming continues exactly: after SIGKILL, from a damaged last.pt, and only with the same config."""
from __future__ import annotations

import subprocess

import pytest
import torch

from gleansr.cli import main
from gleansr.errors import CheckpointError, GleanError
from gleansr.train.glean import RunPaths, train
from gleansr.loading import read_training_checkpoint
from gleansr.train.state import load_latest
from train_helpers import one_torch_thread  # noqa: F401 - autouse fixture
from train_helpers import PYTHON, cli_args, read_metrics, setup_run, subprocess_env

# Runs the real CLI in a child process that SIGKILLs itself right after iteration 4 is saved:
# nothing (no handler, no atexit, no flush) runs after the kill.
KILLED_AFTER_4 = """
import os, signal, sys
from gleansr.train import runtime
from gleansr.cli import main

save = runtime.save_training_checkpoint
def save_then_die(run_dir, state):
    path = save(run_dir, state)
    if state["iteration"] == 4:
        os.kill(os.getpid(), signal.SIGKILL)
    return path
runtime.save_training_checkpoint = save_then_die
sys.exit(main(sys.argv[1:]))
"""


def _assert_same_training_state(a: dict, b: dict) -> None:
    """Weights and Adam moments identical, bit for bit (CPU, one thread in both processes)."""
    for part in ("generator", "discriminator"):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), f"{part}.{key}"
    for part in ("optimizer_g", "optimizer_d"):
        for index, state in a[part]["state"].items():
            for name, value in state.items():
                assert torch.equal(value, b[part]["state"][index][name]), f"{part} {index} {name}"


def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path):
    files = setup_run(tmp_path)
    killed = subprocess.run([PYTHON, "-c", KILLED_AFTER_4, *cli_args(files, tmp_path / "resumed")],
                            env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert killed.returncode == -9, killed.stderr
    assert read_training_checkpoint(tmp_path / "resumed" / "last.pt")["iteration"] == 4

    assert main(cli_args(files, tmp_path / "resumed")) == 0  # the same command continues the run
    assert main(cli_args(files, tmp_path / "straight")) == 0
    resumed = read_training_checkpoint(tmp_path / "resumed" / "last.pt")
    straight = read_training_checkpoint(tmp_path / "straight" / "last.pt")
    assert resumed["iteration"] == straight["iteration"] == 6
    _assert_same_training_state(resumed, straight)
    losses = [(r["iter"], r["loss_pix"], r["loss_d_fake"]) for r in read_metrics(tmp_path / "resumed")]
    expected = [(r["iter"], r["loss_pix"], r["loss_d_fake"]) for r in read_metrics(tmp_path / "straight")]
    assert [i for i, *_ in losses] == [1, 2, 3, 4, 5, 6]
    assert losses == expected  # bit for bit: same data order, same arithmetic


def test_damaged_last_checkpoint_falls_back_to_previous(tmp_path, capsys):
    files = setup_run(tmp_path)
    run = tmp_path / "run"
    assert main(cli_args(files, run, "--max-iters", "4")) == 0
    (run / "last.pt").write_bytes((run / "last.pt").read_bytes()[:1000])  # as if cut short
    path, state = load_latest(run)
    assert path.name == "previous.pt" and state["iteration"] == 2
    assert "last.pt is not a readable training checkpoint" in capsys.readouterr().err
    assert main(cli_args(files, run, "--max-iters", "4")) == 0  # redoes iterations 3-4
    assert read_training_checkpoint(run / "last.pt")["iteration"] == 4
    assert read_training_checkpoint(run / "previous.pt")["iteration"] == 2  # not replaced by the damaged file
    assert (run / "last.pt.damaged").stat().st_size == 1000
    (run / "previous.pt").write_bytes(b"")
    (run / "last.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="no readable checkpoint in"):
        load_latest(run)


def test_resume_keeps_the_config_and_allows_extending(tmp_path):
    files = setup_run(tmp_path)
    run = tmp_path / "run"
    paths = RunPaths(data=files["data"], out=run, vgg=files["vgg"])
    with pytest.raises(GleanError, match="no checkpoint"):
        train(None, paths, resume=True, progress=False)
    assert train(_config(files), paths, overrides={"max_iters": "2"}, progress=False).iteration == 2
    with pytest.raises(GleanError, match=r"config field lr_g \(0.0001 in the checkpoint, 0.001 now\) differs"):
        train(_config(files), paths, overrides={"lr_g": "1e-3", "max_iters": "2"}, progress=False)
    result = train(None, paths, overrides={"max_iters": "3"}, progress=False)  # config from the checkpoint
    assert result.iteration == 3 and read_training_checkpoint(run / "last.pt")["config"]["max_iters"] == 3


def _config(files):
    from gleansr.train.config import load_config

    return load_config(files["config"])
