"""The Ray Data engine: inputs -> a dataset of paths -> ``map_batches`` over actors that each hold
one :class:`~gleansr.pipeline.upscaler.Upscaler` -> one manifest row per input.

What a failure does:

- a bad image is a row (refused / failed, with the sentence ``gleansr upscale`` prints); the
  actor's batch still succeeds, so Ray never retries it;
- an actor that dies (OOM, a lost node) is restarted by Ray (``max_restarts``) and its batch
  rerun (``max_task_retries``): outputs are written atomically, so nothing partial is left, and
  the rerun skips what the dead actor had finished (those rows say ``output_exists``);
- rerunning the same command skips every finished output.

A local instance (no address) is kept on 127.0.0.1: Ray binds its servers to every interface
unless it believes it runs on a laptop, which ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (read when
``ray`` is imported) makes it do; clusters found open on a network have been attacked.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..atomic import atomic_write_bytes
from ..errors import GleanError

LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
# Test-only: "K:MARKER" makes the first actor that creates MARKER exit after its K-th written image.
DIE_AFTER_ENV = "GLEANSR_TEST_RAY_EXIT_AFTER"
COLUMNS = ("source", "output", "status", "code", "message", "ms", "worker")
# Bounded: a worker that dies on every batch (a model too large for the GPU) ends the run.
MAX_RESTARTS = 3
TABLE_SUFFIXES = (".parquet", ".csv")
LIST_SUFFIXES = (".txt", ".lst")


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide: ``address`` None starts a local instance on 127.0.0.1 ("auto" or
    "HOST:PORT" joins a cluster); ``workers`` actors, each with ``gpus_per_worker`` GPUs and
    ``cpus_per_worker`` CPUs (None: this machine's cores shared out, or 1 on a cluster)."""

    workers: int = 1
    gpus_per_worker: float = 0.0
    cpus_per_worker: int | None = None
    address: str | None = None
    quiet: bool = False

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise GleanError(f"--ray-workers must be at least 1, got {self.workers}")
        if self.gpus_per_worker < 0:
            raise GleanError(f"--ray-gpus-per-worker must be 0 or more, got {self.gpus_per_worker}")
        if self.cpus_per_worker is not None and self.cpus_per_worker < 1:
            raise GleanError(f"--ray-cpus-per-worker must be at least 1, got {self.cpus_per_worker}")

    def worker_cpus(self) -> int:
        if self.cpus_per_worker is not None:
            return self.cpus_per_worker
        return max(1, (os.cpu_count() or 1) // self.workers) if self.address is None else 1


def expand_path_lists(specs: Sequence[str], column: str = "path") -> list[str]:
    """Input specs with every list file (``.txt``/``.lst``: one path a line, ``#`` comments) and
    table (``.parquet``/``.csv``: the ``column`` of paths) replaced by the paths it holds; a
    relative path in a list is relative to the list's folder."""
    out: list[str] = []
    for spec in specs:
        path = Path(spec)
        suffix = path.suffix.lower()
        if suffix in LIST_SUFFIXES and path.is_file():
            lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
            out += [str(path.parent / line) for line in lines if line and not line.startswith("#")]
        elif suffix in TABLE_SUFFIXES and path.is_file():
            out += [str(path.parent / p) for p in _table_column(path, column)]
        else:
            out.append(spec)
    return out


def _table_column(path: Path, column: str) -> list[str]:
    import pyarrow.csv
    import pyarrow.parquet

    table = pyarrow.parquet.read_table(path) if path.suffix.lower() == ".parquet" else pyarrow.csv.read_csv(path)
    if column not in table.column_names:
        raise GleanError(f"{path} has no column {column!r} (columns: {', '.join(table.column_names)}); "
                         "name the one with the image paths with --ray-column")
    return [str(value) for value in table.column(column).to_pylist() if value]


def _import_ray(local: bool) -> Any:
    """``ray``, imported so that a local instance stays on loopback (see the module docstring)."""
    if local:
        if "ray" in sys.modules and sys.modules["ray"]._private.ray_constants.ENABLE_RAY_CLUSTER:
            raise GleanError(f"ray was imported before gleansr could keep its local instance on 127.0.0.1: set "
                             f"{LOOPBACK_ENV}=0 before importing ray, or start a cluster (`ray start --head`) and "
                             "pass its address")
        os.environ[LOOPBACK_ENV] = "0"
    try:
        import ray
    except ImportError:
        raise GleanError("the Ray engine needs Ray: pip install 'gleansr[ray]'") from None
    return ray


def connect(options: RayOptions) -> tuple[Any, bool]:
    """(ray, whether this call started the instance): joins ``options.address`` or starts a
    local instance on 127.0.0.1 with just the CPUs the workers take."""
    ray = _import_ray(options.address is None)
    if ray.is_initialized():
        return ray, False
    common = dict(include_dashboard=False, log_to_driver=not options.quiet, logging_level="WARNING")
    if options.address is None:
        cpus = options.workers * options.worker_cpus()
        gpus = options.workers * options.gpus_per_worker
        ray.init(num_cpus=cpus, num_gpus=int(gpus + 0.999) if gpus else None, **common)
    else:
        ray.init(address=options.address, **common)
    return ray, True


class UpscaleWorker:
    """One Ray actor: builds its Upscaler once, then runs batches of paths through
    :func:`~gleansr.pipeline.batch.run_items` and returns their reports as columns."""

    def __init__(self, model: str, upscaler_options: dict[str, Any], naming: Any, overwrite: bool,
                 batch_size: int, faces: Any, threads: int) -> None:
        import torch

        from ..pipeline.upscaler import Upscaler

        torch.set_num_threads(threads)
        self.upscaler = Upscaler(model, **upscaler_options)
        self.naming, self.overwrite, self.batch_size, self.faces = naming, overwrite, batch_size, faces
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.written = 0
        self.die_after, self.die_marker = _die_hook()

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        from ..pipeline.batch import run_items
        from ..pipeline.files import InputFile

        items = [InputFile(Path(p), Path(b) if b else None) for p, b in zip(batch["path"], batch["base"])]
        report = run_items(items, self.upscaler, self.naming, overwrite=self.overwrite, batch_size=self.batch_size,
                           faces=self.faces, on_item=self._on_item, worker=self.worker)
        rows = [item.to_row() for item in report.items]
        return {key: [row[key] for row in rows] for key in COLUMNS}

    def _on_item(self, item: Any) -> None:
        if self.die_after is None or item.status.value != "done":
            return
        self.written += 1
        if self.written >= self.die_after:
            try:
                os.close(os.open(self.die_marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:  # another actor died already: this one lives
                self.die_after = None
                return
            os._exit(1)


def _die_hook() -> tuple[int | None, str | None]:
    value = os.environ.get(DIE_AFTER_ENV)
    if not value:
        return None, None
    count, marker = value.split(":", 1)
    return int(count), marker


@dataclass
class RayRun:
    """What :func:`upscale_dataset` did: every input's row, the time, where the manifest went."""

    report: Any  # gleansr.pipeline.batch.BatchReport
    manifest: Path
    startup_s: float
    notes: list[str] = field(default_factory=list)


def upscale_dataset(inputs: Sequence[str], model: str, naming: Any, *, manifest: str | os.PathLike,
                    upscaler_options: dict[str, Any] | None = None, options: RayOptions | None = None,
                    recursive: bool = False, overwrite: bool = False, batch_size: int | None = None,
                    faces: Any = None, column: str = "path") -> RayRun:
    """Super-resolve files, folders, globs, list files and tables of paths on Ray.

    ``model``: a zoo name or a weights file, built on every actor as
    ``Upscaler(model, **upscaler_options)``; ``naming``: a :class:`~gleansr.pipeline.batch.Naming`.
    The manifest (``.jsonl`` or ``.parquet``) gets one row per input: ``source, output, status,
    code, message, ms, worker``. Nothing can start (no inputs, output collisions): GleanError.
    """
    from ..pipeline.batch import DEFAULT_BATCH_SIZE, BatchReport, plan

    options = options or RayOptions()
    batch_size = batch_size or DEFAULT_BATCH_SIZE
    manifest = Path(manifest)
    if manifest.suffix.lower() not in (".jsonl", ".parquet"):
        raise GleanError(f"the manifest {manifest} must end in .jsonl or .parquet")
    start = time.perf_counter()
    found = plan(expand_path_lists(inputs, column), naming, recursive=recursive)
    ray, started = connect(options)
    try:
        from ray.data import DataContext

        DataContext.get_current().enable_progress_bars = not options.quiet
        if options.quiet:
            logging.getLogger("ray.data").setLevel(logging.WARNING)
        records = [{"path": str(i.path), "base": str(i.base) if i.base is not None else ""} for i in found.items]
        # Blocks of one actor batch each: an actor that dies loses one batch, not a share.
        dataset = ray.data.from_items(records, override_num_blocks=max(1, -(-len(records) // batch_size)))
        startup_s = time.perf_counter() - start
        hook = {DIE_AFTER_ENV: os.environ[DIE_AFTER_ENV]} if os.environ.get(DIE_AFTER_ENV) else {}
        with warnings.catch_warnings():  # Ray 2.60 deprecates these actor options but names no other way
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
            mapped = dataset.map_batches(
                UpscaleWorker, batch_size=batch_size, compute=ray.data.ActorPoolStrategy(size=options.workers),
                num_gpus=options.gpus_per_worker, num_cpus=options.worker_cpus(),
                runtime_env={"env_vars": hook} if hook else None,
                max_restarts=MAX_RESTARTS, max_task_retries=MAX_RESTARTS,
                fn_constructor_kwargs=dict(model=model, upscaler_options=upscaler_options or {}, naming=naming,
                                           overwrite=overwrite, batch_size=batch_size, faces=faces,
                                           threads=options.worker_cpus()))
        rows = mapped.take_all()
    finally:
        if started:
            ray.shutdown()
    items = found.problems + [_item(row) for row in sorted(rows, key=lambda r: r["source"])]
    report = BatchReport(items, time.perf_counter() - start)
    write_manifest(manifest, (item.to_row() for item in items))
    return RayRun(report, manifest, startup_s, list(found.notes))


def _item(row: dict[str, Any]) -> Any:
    from ..pipeline.batch import ItemReport
    from ..pipeline.policy import Status

    return ItemReport(row["source"], row["output"] or None, Status(row["status"]), row["code"], row["message"] or "",
                      float(row["ms"]), row["worker"])


def write_manifest(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """The rows as JSON lines or Parquet, written atomically (a rerun writes its own)."""
    rows = [{key: row[key] for key in COLUMNS} for row in rows]
    if path.suffix.lower() == ".parquet":
        import io

        import pyarrow
        import pyarrow.parquet

        table = pyarrow.Table.from_pylist(rows, schema=pyarrow.schema(
            [(key, pyarrow.float64() if key == "ms" else pyarrow.string()) for key in COLUMNS]))
        buffer = io.BytesIO()
        pyarrow.parquet.write_table(table, buffer)
        data = buffer.getvalue()
    else:
        data = "".join(json.dumps(row) + "\n" for row in rows).encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data, overwrite=True)
