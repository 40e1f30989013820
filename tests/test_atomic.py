import os
import stat

import pytest
import torch

from gleansr import atomic
from gleansr.atomic import atomic_path, atomic_torch_save, atomic_write_bytes
from gleansr.errors import GleanError


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_write_bytes_creates_file_and_parent_folders(tmp_path):
    target = tmp_path / "new" / "sub" / "out.bin"
    assert atomic_write_bytes(target, b"hello") == target
    assert target.read_bytes() == b"hello"
    assert leftovers(target.parent) == []


def test_existing_file_is_refused_and_kept(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"original")
    with pytest.raises(GleanError, match="out.bin.*already exists"):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"original"
    assert leftovers(tmp_path) == []


def test_overwrite_replaces(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"original")
    atomic_write_bytes(target, b"new", overwrite=True)
    assert target.read_bytes() == b"new"


def test_file_appearing_during_the_write_is_not_clobbered(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(GleanError, match="already exists"):
        with atomic_path(target) as temp:
            temp.write_bytes(b"ours")
            target.write_bytes(b"someone else's")
    assert target.read_bytes() == b"someone else's"
    assert leftovers(tmp_path) == []


def test_no_clobber_without_hard_links(tmp_path, monkeypatch):
    def no_links(src, dst):
        raise PermissionError("hard links not supported")

    monkeypatch.setattr(atomic.os, "link", no_links)
    atomic_write_bytes(tmp_path / "first.bin", b"first")
    assert (tmp_path / "first.bin").read_bytes() == b"first"
    target = tmp_path / "out.bin"
    with pytest.raises(GleanError, match="already exists"):
        with atomic_path(target) as temp:
            temp.write_bytes(b"second")
            target.write_bytes(b"raced")
    assert target.read_bytes() == b"raced"
    assert leftovers(tmp_path) == []


def test_failure_inside_the_block_leaves_nothing(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temp:
            temp.write_bytes(b"partial")
            assert temp.parent == tmp_path
            raise RuntimeError("encoder crashed")
    assert not target.exists()
    assert leftovers(tmp_path) == []


@pytest.mark.skipif(os.name != "posix", reason="umask is POSIX")
def test_permissions_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        target = atomic_write_bytes(tmp_path / "out.bin", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_torch_save_round_trip_and_no_clobber(tmp_path):
    target = tmp_path / "ckpt" / "latest.pth"
    state = {"step": 7, "w": torch.arange(6.0).reshape(2, 3)}
    atomic_torch_save(state, target)
    loaded = torch.load(target, weights_only=True)
    assert loaded["step"] == 7 and torch.equal(loaded["w"], state["w"])
    with pytest.raises(GleanError, match="latest.pth"):
        atomic_torch_save({"step": 8}, target)
    atomic_torch_save({"step": 8}, target, overwrite=True)
    assert torch.load(target, weights_only=True)["step"] == 8
