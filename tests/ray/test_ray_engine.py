"""The Ray engine against the local batch pipeline: same files, same sentences, a complete manifest,
restarts after a killed actor, and a local instance that listens on loopback only.

One local Ray instance (2 CPUs, started by the engine) serves the whole module.
"""
from __future__ import annotations

import importlib.util
import json
import os
import socket
from pathlib import Path

import pytest
from PIL import Image, ImageOps

if importlib.util.find_spec("ray") is None:  # not imported here: the engine imports it (loopback)
    pytest.skip("needs gleansr[ray]", allow_module_level=True)

from gleansr.pipeline.batch import Naming, upscale_files  # noqa: E402
from gleansr.pipeline.policy import Status  # noqa: E402
from gleansr.pipeline.upscaler import Upscaler  # noqa: E402
from gleansr.ray import engine  # noqa: E402
from gleansr.zoo import default_model  # noqa: E402

SAMPLES = Path(engine.__file__).resolve().parents[1] / "assets" / "samples" / "lr"
OPTIONS = {"device": "cpu", "precision": "fp32"}
WORKERS = engine.RayOptions(workers=2, cpus_per_worker=1, quiet=True)
BROKEN = ("broken_truncated.png", "broken_text.png", "broken_empty.png")


@pytest.fixture(scope="module")
def ray_instance():
    """The engine's local instance, kept for the module (the engine leaves a running one alone)."""
    ray, started = engine.connect(WORKERS)
    assert started
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def glyphs(tmp_path_factory):
    """40 glyph images (the bundled samples, mirrored, turned and inverted), 3 broken, 2 too large."""
    folder = tmp_path_factory.mktemp("glyphs")
    samples = sorted(SAMPLES.glob("*.png"))
    assert len(samples) >= 8
    for path in samples[:8]:
        image = Image.open(path).convert("RGB")
        variants = {"": image, "_mirror": ImageOps.mirror(image), "_flip": ImageOps.flip(image),
                    "_turn": image.rotate(90), "_invert": ImageOps.invert(image)}
        for tag, variant in variants.items():
            variant.save(folder / f"{path.stem}{tag}.png")
    good = (folder / f"{samples[0].stem}.png").read_bytes()
    (folder / BROKEN[0]).write_bytes(good[: len(good) // 2])
    (folder / BROKEN[1]).write_text("not an image")
    (folder / BROKEN[2]).write_bytes(b"")
    for i, path in enumerate(samples[:2]):
        image = Image.open(path).convert("RGB")
        image.resize((image.width * 4, image.height * 4)).save(folder / f"oversized_{i}.png")
    return folder


def _naming(out: Path) -> Naming:
    return Naming("_x8", out)


@pytest.fixture(scope="module")
def local_run(glyphs, tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    report = upscale_files([str(glyphs)], Upscaler(default_model().name, **OPTIONS), _naming(out))
    return out, report


def _ray(glyphs: Path, out: Path, **kwargs) -> engine.RayRun:
    return engine.upscale_dataset([str(glyphs)], default_model().name, _naming(out), manifest=out / "manifest.jsonl",
                                  upscaler_options=OPTIONS, options=WORKERS, **kwargs)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.suffix == ".png"}


def _pixels(path: Path):
    import numpy as np

    return np.asarray(Image.open(path), dtype=np.int16)


def _manifest(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_ray_matches_local_and_a_rerun_skips_everything(ray_instance, glyphs, local_run, tmp_path):
    local_out, local = local_run
    run = _ray(glyphs, tmp_path)
    assert _files(tmp_path) == _files(local_out)  # byte for byte, the same names
    assert len(_files(tmp_path)) == 40
    rows = _manifest(tmp_path / "manifest.jsonl")
    assert sorted(r["source"] for r in rows) == sorted(i.source for i in local.items)  # one row per input
    local_rows = {i.source: i for i in local.items}
    for row in rows:
        mine = local_rows[row["source"]]
        assert (row["status"], row["code"], row["message"]) == (mine.status.value, mine.code, mine.message)
        assert row["worker"]
    assert run.report.exit_code == local.exit_code == 1
    assert run.report.count(Status.DONE) == 40 and run.report.count(Status.REFUSED) == 2
    assert run.report.count(Status.FAILED) == 3
    assert len({row["worker"] for row in rows}) == 2  # both actors worked

    again = _ray(glyphs, tmp_path)
    assert again.report.count(Status.SKIPPED) == 40 and again.report.count(Status.DONE) == 0
    assert _files(tmp_path) == _files(local_out)


def test_a_killed_actor_is_restarted_and_every_image_done_once(ray_instance, glyphs, local_run, tmp_path,
                                                               monkeypatch):
    local_out, _ = local_run
    marker = tmp_path / "died"
    monkeypatch.setenv(engine.DIE_AFTER_ENV, f"3:{marker}")
    out = tmp_path / "out"
    run = _ray(glyphs, out)
    assert marker.exists()  # an actor did exit mid-batch
    # The retry puts the dead actor's unfinished images into smaller model batches, and the CPU
    # kernels round a batch of 1 and one of 4 differently: a pixel may move by one level. (The
    # first test is byte for byte: there every model batch holds the same images as locally.)
    ours, theirs = _files(out), _files(local_out)
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert abs(_pixels(out / name) - _pixels(local_out / name)).max() <= 1, name
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    rows = _manifest(out / "manifest.jsonl")
    assert len(rows) == len({r["source"] for r in rows}) == 45  # complete, no duplicate
    finished = [r for r in rows if r["status"] in ("done", "skipped")]
    assert len(finished) == 40  # what the dead actor wrote shows as skipped by its retry
    assert sum(r["status"] == "skipped" for r in rows) <= 3
    assert run.report.exit_code == 1


def test_lists_tables_and_parquet_manifest(ray_instance, glyphs, local_run, tmp_path):
    import pyarrow
    import pyarrow.parquet

    local_out, _ = local_run
    names = sorted(p.name for p in glyphs.glob("*.png") if not p.name.startswith(("broken", "oversized")))[:6]
    (tmp_path / "list.txt").write_text("# three glyphs\n" + "\n".join(str(glyphs / n) for n in names[:3]) + "\n")
    pyarrow.parquet.write_table(pyarrow.table({"file": [str(glyphs / n) for n in names[3:]]}), tmp_path / "t.parquet")
    out = tmp_path / "out"
    run = engine.upscale_dataset([str(tmp_path / "list.txt"), str(tmp_path / "t.parquet")], default_model().name,
                                 Naming("_x8", out), manifest=out / "m.parquet", upscaler_options=OPTIONS,
                                 options=WORKERS, column="file")
    assert run.report.count(Status.DONE) == 6
    assert len(_files(out)) == 6
    for name in _files(out):  # other model batches than the local run's: within one level
        assert abs(_pixels(out / name) - _pixels(local_out / name)).max() <= 1, name
    table = pyarrow.parquet.read_table(out / "m.parquet")
    assert table.column_names == list(engine.COLUMNS) and table.num_rows == 6


def _listening(pids: set[int]) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state owned by ``pids``."""
    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
        except OSError:  # gone, or a descriptor closed meanwhile
            continue
    found = []
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            address, port = fields[1].split(":")
            raw = bytes.fromhex(address)
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))  # little-endian words
            found.append((socket.inet_ntop(family, raw), int(port, 16)))
    return found


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        children.setdefault(parent, []).append(int(pid))
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo += children.get(pid, [])
    return found


def test_the_local_instance_listens_on_loopback_only(ray_instance):
    sockets = _listening(_descendants(os.getpid()))
    assert len(sockets) >= 3  # GCS, raylet, workers...
    loopback = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}
    assert [s for s in sockets if s[0] not in loopback] == []


def test_cli_engine_ray_prints_like_local_and_exits_as_local(ray_instance, glyphs, local_run, tmp_path, capsys):
    from gleansr.cli import main

    local_out, local = local_run
    out = tmp_path / "out"
    code = main(["upscale", str(glyphs), "-o", str(out), "--device", "cpu", "--precision", "fp32", "--quiet",
                 "--engine", "ray", "--ray-workers", "2", "--ray-cpus-per-worker", "1"])
    err = capsys.readouterr().err
    assert code == local.exit_code == 1
    assert _files(out) == _files(local_out)
    for item in local.items:
        if item.status in (Status.REFUSED, Status.FAILED):
            assert f"{item.status.value}: {item.message}" in err  # the local sentences
    summary = err.strip().splitlines()[-1]
    assert summary.startswith("40 written, 0 skipped (exist), 2 refused, 3 failed") and "on Ray (2 worker(s))" in summary
    assert len(_manifest(out / "gleansr-manifest.jsonl")) == 45
