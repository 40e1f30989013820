"""Elastic training: torchrun restarts the group after a worker is SIGKILLed, the run resumes from its
last checkpoint and ends where an uninterrupted run ends, with the same weights (CPU, gloo)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import torch

from gleansr.loading import read_training_checkpoint
from gleansr.train.distributed import SHARED_STORE_FIX
from train_helpers import PYTHON, cli_args, read_metrics, setup_run, subprocess_env

MAX_ITERS, SAVE_EVERY, KILL_AFTER = 10, 2, 3  # the kill loses iteration 3 (saved: 2)
TIMEOUT_S = 240


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _elastic(files: dict, out: Path, marker: str, log: Path) -> subprocess.Popen:
    """The documented elastic command (one node of 1-2, 2 workers, 3 restarts), on loopback."""
    command = [PYTHON, "-m", "torch.distributed.run", "--nnodes", "1:2", "--nproc-per-node", "2",
               "--max-restarts", "3", "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{_free_port()}",
               "--rdzv-conf", "last_call_timeout=1", "--local-addr", "127.0.0.1",
               "-m", "gleansr.cli", *cli_args(files, out, "--max-iters", str(MAX_ITERS),
                                              "--save-every", str(SAVE_EVERY))]
    env = {**subprocess_env(), "GLEANSR_ELASTIC_TEST": marker, **dict([SHARED_STORE_FIX.split("=")])}
    with open(log, "w") as handle:
        return subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)


def _environ(pid: str) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:  # gone, or not ours
        return {}
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def _worker_pid(marker: str, rank: int) -> int | None:
    """The first-generation worker of ``rank`` started under ``marker``."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        env = _environ(pid)
        if (env.get("GLEANSR_ELASTIC_TEST") == marker and env.get("RANK") == str(rank)
                and env.get("TORCHELASTIC_RESTART_COUNT") == "0"):
            return int(pid)
    return None


def _finish(process: subprocess.Popen, log: Path) -> str:
    try:
        process.wait(timeout=TIMEOUT_S)
    finally:
        if process.poll() is None:  # torchrun and its workers: nothing left behind
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    text = log.read_text()
    assert process.returncode == 0, text[-4000:]
    return text


def _last_iteration(run: Path) -> int:
    try:
        return max((r["iter"] for r in read_metrics(run)), default=0)
    except (OSError, ValueError):  # not written yet, or a line being written
        return 0


def test_killed_worker_is_restarted_and_the_run_matches_an_uninterrupted_one(tmp_path):
    files = setup_run(tmp_path)
    marker = str(tmp_path)
    killed_run, whole_run = tmp_path / "killed", tmp_path / "whole"
    process = _elastic(files, killed_run, marker, tmp_path / "killed.log")
    deadline = time.monotonic() + TIMEOUT_S
    while _last_iteration(killed_run) < KILL_AFTER:
        assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "killed.log").read_text()[-4000:]
        time.sleep(0.05)
    victim = _worker_pid(marker, rank=1)
    assert victim is not None
    assert _environ(str(victim)).get("MASTER_ADDR") == "127.0.0.1"  # the workers' store is on loopback
    os.kill(victim, signal.SIGKILL)
    assert _last_iteration(killed_run) < MAX_ITERS  # the kill came before the end
    log = _finish(process, tmp_path / "killed.log")
    assert "restart" in log.lower() and f"resuming {killed_run / 'last.pt'}" in log, log[-4000:]

    _finish(_elastic(files, whole_run, marker + "-whole", tmp_path / "whole.log"), tmp_path / "whole.log")
    killed, whole = read_metrics(killed_run), read_metrics(whole_run)
    assert [r["iter"] for r in killed] == list(range(1, MAX_ITERS + 1))  # continuous: no gap, no repeat
    for a, b in zip(killed, whole):
        assert {k: v for k, v in a.items() if k not in ("time", "elapsed")} == \
            {k: v for k, v in b.items() if k not in ("time", "elapsed")}
    a, b = read_training_checkpoint(killed_run / "last.pt"), read_training_checkpoint(whole_run / "last.pt")
    assert a["iteration"] == b["iteration"] == MAX_ITERS
    for net in ("generator", "discriminator"):
        for key in b[net]:
            assert torch.equal(a[net][key], b[net][key]), f"{net}.{key}"


def test_restarts_with_the_shared_store_are_refused_with_the_fix(monkeypatch):
    from gleansr.errors import GleanError
    from gleansr.train.distributed import check_elastic_store

    monkeypatch.setenv("TORCHELASTIC_USE_AGENT_STORE", "True")
    monkeypatch.setenv("TORCHELASTIC_MAX_RESTARTS", "0")
    check_elastic_store()  # no restarts: nothing to refuse
    monkeypatch.setenv("TORCHELASTIC_MAX_RESTARTS", "3")
    try:
        check_elastic_store()
    except GleanError as error:
        assert SHARED_STORE_FIX in str(error)
    else:
        raise AssertionError("a run that could not restart was not refused")
