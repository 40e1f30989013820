"""``gleansr verify``: found fixture from any folder, cache outside it, the snapshot checked."""
import os

import pytest

import gleansr.models.fused as fused
from gleansr.cli import main
from gleansr.commands import verify
from gleansr.parity import checkout, shared_candidates
from conftest import SHARED


@pytest.fixture
def elsewhere(tmp_path, monkeypatch, fixture_ckpt):
    """A current folder unrelated to the checkout, a cache holding the regenerated checkpoint."""
    cwd = tmp_path / "somewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    cache = tmp_path / "cache"
    cache.mkdir()
    os.symlink(fixture_ckpt, cache / "glean_fixture.pth")
    # the fixture as the test session found it (a clean clone may sit anywhere; the search order
    # beside the checkout is tested on its own below)
    monkeypatch.setenv("GLEANSR_SHARED", str(SHARED))
    return cwd, cache


def test_verify_checks_the_snapshot_from_any_folder(elsewhere, monkeypatch, capsys):
    cwd, cache = elsewhere
    assert main(["verify", "--cache", str(cache)]) == 0
    out = capsys.readouterr().out
    for dtype in ("float64", "float32"):
        for path in ("ref ops", "fast ops", "snapshot"):
            assert any(line.strip().startswith(f"{dtype} {path}") and line.endswith("OK") for line in out.splitlines()), \
                (dtype, path, out)
    assert list(cwd.iterdir()) == [], "verify writes nothing into the current folder"


def test_verify_fails_when_only_the_snapshot_is_wrong(elsewhere, monkeypatch, capsys):
    _, cache = elsewhere
    monkeypatch.setattr(fused, "SQRT2", fused.SQRT2 * (1 + 1e-2))  # a fused-form bug, ops untouched
    assert main(["verify", "--cache", str(cache)]) == 1
    lines = [line for line in capsys.readouterr().out.splitlines() if "max |diff|" in line]
    assert [line.split(":")[0].strip() for line in lines if line.endswith("FAIL")] == \
        ["float64 snapshot  vs upstream", "float32 snapshot  vs upstream"]


def test_default_cache_is_the_user_cache_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("GLEANSR_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert verify._cache_default() == tmp_path / "gleansr" / "verify"
    monkeypatch.setenv("GLEANSR_HOME", str(tmp_path / "home"))
    assert verify._cache_default() == tmp_path / "home" / "verify"


def test_fixture_search_order(monkeypatch, tmp_path):
    monkeypatch.setenv("GLEANSR_SHARED", str(tmp_path))
    assert shared_candidates() == [tmp_path]
    monkeypatch.delenv("GLEANSR_SHARED")
    monkeypatch.chdir(tmp_path)
    found = shared_candidates()
    assert found[0] == checkout().parent / "shared" and found[-1] == tmp_path.parent / "shared"


def test_missing_fixture_is_one_line(tmp_path, capsys):
    assert main(["verify", "--fixture", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gleansr: error: no parity fixture found") and "\n" not in err and "nope" in err
