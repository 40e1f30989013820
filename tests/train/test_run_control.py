"""The runtime never hangs on a worker's error, fits its workers to the machine, and says when it
resumes or has nothing left to do."""
from __future__ import annotations

import argparse
import os
import subprocess
from pathlib import Path

import pytest

from gleansr.cli import main
from gleansr.commands import bank as bank_command
from gleansr.commands import train as train_command
from gleansr.train import config as train_config
from train_helpers import one_torch_thread  # noqa: F401 - autouse fixture
from train_helpers import PYTHON, REPO, cli_args, setup_run, subprocess_env, write_config, write_images


def _processes_mentioning(marker: str) -> list[int]:
    """Live processes whose command line contains ``marker`` (forked workers share their parent's)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _run_cli(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "gleansr.cli", *args], env=subprocess_env(), capture_output=True, text=True,
                          timeout=120, cwd=REPO)


def test_a_worker_error_ends_glean_training_with_one_line_and_no_process_left(tmp_path):
    files = setup_run(tmp_path)
    write_images(tmp_path / "small", 8, seed=3, size=16)  # the model wants 32 x 32
    write_config(files["config"], num_workers=2)
    out = tmp_path / "run_with_workers"
    done = _run_cli(["train", str(files["config"]), "--data", str(tmp_path / "small"), "--vgg", str(files["vgg"]),
                     "--out", str(out), "--quiet", "--device", "cpu"])
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("gleansr: error: ") and "img_0" in last and "is 16x16 (HxW), expected 32x32" in last
    assert "Traceback" not in done.stderr
    assert _processes_mentioning(str(out)) == []


def test_a_worker_error_ends_bank_training_the_same_way(tmp_path):
    data = write_images(tmp_path / "images", 6, seed=1)
    (data / "img_03.png").write_bytes(b"not a png")
    out = tmp_path / "bank_with_workers"
    done = _run_cli(["bank", "train", "--data", str(data), "--out", str(out), "--set", "size=32", "channel_max=16",
                     "style_channels=16", "num_mlps=2", "--batch-size", "2", "--num-workers", "2", "--device", "cpu",
                     "--quiet"])
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("gleansr: error: cannot read image ") and "img_03.png" in last
    assert "Traceback" not in done.stderr
    assert _processes_mentioning(str(out)) == []


@pytest.mark.parametrize("cores, workers", [(1, 0), (2, 0), (3, 2), (8, 4)])
def test_default_workers_fit_the_machine(monkeypatch, cores, workers):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    assert train_config.default_num_workers() == workers


def test_says_when_it_resumes_and_when_the_run_is_complete(tmp_path, capsys):
    files = setup_run(tmp_path)
    run = tmp_path / "run"
    assert main(cli_args(files, run, "--max-iters", "2")) == 0
    capsys.readouterr()
    assert main(cli_args(files, run, "--max-iters", "2")) == 0
    assert f"gleansr: run {run / 'last.pt'}: iteration 2 of 2 is already complete" in capsys.readouterr().err
    assert main(cli_args(files, run, "--max-iters", "3")) == 0
    assert f"gleansr: resuming {run / 'last.pt'}: iteration 2 of 3" in capsys.readouterr().err


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {option for action in parser._actions for option in action.option_strings} - {"-h", "--help"}


def test_both_training_commands_take_the_same_common_flags_and_typed_set(tmp_path, capsys):
    glean_parser, bank_parser = argparse.ArgumentParser(), argparse.ArgumentParser()
    train_command.add_arguments(glean_parser)
    bank_command.add_arguments(bank_parser)
    bank_train = bank_parser._subparsers._group_actions[0].choices["train"]
    common = {"--data", "--out", "--set", "--max-iters", "--batch-size", "--num-workers", "--save-every",
              "--log-every", "--seed", "--precision", "--device", "--resume", "--quiet"}
    assert _options(bank_train) == common
    assert _options(glean_parser) - common == {"--lr-data", "--val-data", "--val-lr-data", "--val-every", "--bank",
                                               "--init", "--vgg", "--allow-nonfinite"}
    data = write_images(tmp_path / "images", 2, seed=1)
    for command, needed in ((["train", "glean_cat_8x"], []), (["bank", "train"], ["size=32"])):
        assert main([*command, "--data", str(data), "--out", str(tmp_path / "run"), "--set", "max_iter=3"]) == 2
        assert "gleansr: error: unknown config key 'max_iter' (known: " in capsys.readouterr().err
        assert main([*command, "--data", str(data), "--out", str(tmp_path / "run"), "--set", *needed, "seed=x"]) == 2
        assert "gleansr: error: --set: config key 'seed': expected int, got 'x'" in capsys.readouterr().err
