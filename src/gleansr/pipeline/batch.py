"""The one batch pipeline: image files in, super-resolved files out, a typed report back.

``gleansr upscale``, the Ray engine's workers and a notebook all run folders through here:

- :func:`plan` turns files, folders and globs into the inputs to do (earlier outputs of the same
  command left out, output collisions refused before any work);
- :func:`run_items` is the per-item code: decode, skip a finished output, ask the input policy,
  run the model ``batch_size`` images at a time, write atomically. A bad input never stops the
  others; a full disk stops the run with what was written kept and nothing partial left;
- :func:`upscale_files` is both, for one process's share (``shard``, e.g. a torchrun rank).

Every input ends as one :class:`ItemReport` (done / skipped / refused / failed, a stable ``code``
and the sentence); :class:`BatchReport` adds them up and gives the exit code the README promises.
"""
from __future__ import annotations

import errno
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ..errors import GleanError, ImageError, OutOfMemory, describe_os_error
from .files import InputFile, check_outputs, drop_own_outputs, gather_inputs, output_path, shard
from .images import LoadedImage, load_image, save_image, save_loaded
from .limits import DEFAULT_LIMITS, Limits, TooManyPixels
from .policy import Refusal, Status

if TYPE_CHECKING:
    from .upscaler import Prepared, Upscaler

# Images per model run on the CPU; a GPU may take more (``--batch-size``).
DEFAULT_BATCH_SIZE = 4


@dataclass(frozen=True)
class Naming:
    """Where results go: ``output`` folder (None: beside each input), ``suffix``, ``ext`` (None:
    the input's own); the rule itself is :func:`gleansr.pipeline.files.output_path`."""

    suffix: str
    output: Path | None = None
    ext: str | None = None

    def target(self, item: InputFile, image: LoadedImage | None = None, *, alpha: bool = False,
               bit_depth: int = 8) -> Path:
        """The output path of ``item`` (for ``image``'s alpha and bit depth once it is decoded)."""
        if image is not None:
            alpha, bit_depth = image.alpha is not None, image.bit_depth
        return output_path(item.path, self.output or item.path.parent, suffix=self.suffix, ext=self.ext,
                           base=item.base if self.output else None, alpha=alpha, bit_depth=bit_depth)

    def format_note(self, out: Path) -> list[tuple[str, str]]:
        """A note when the asked-for format could not hold the result (``--ext jpg`` for an RGBA or
        16-bit image is written as PNG): ``[("format", sentence)]`` or ``[]``."""
        if self.ext is None or out.suffix.lower() == "." + self.ext.lstrip(".").lower():
            return []
        return [("format", f"written as {out.suffix} since .{self.ext.lstrip('.').lower()} cannot hold its "
                           "alpha channel or 16-bit depth")]

    def candidates(self, item: InputFile) -> set[Path]:
        """Every path ``item``'s output may take, whatever the image turns out to hold."""
        return {self.target(item), self.target(item, alpha=True, bit_depth=16)}


@dataclass(frozen=True)
class ItemReport:
    """What became of one input. ``code`` is stable: ``done``, ``faces`` (done), ``output_exists``
    (skipped), the policy's refusal codes (refused), ``missing_input``, ``unreadable``,
    ``bad_output``, ``model_failed``, ``out_of_memory``, ``write_failed``, ``no_space``, ``not_run``
    (failed); ``too_many_pixels`` (refused from the header, nothing decoded).
    ``message``: the sentence; ``notes``: ``(kind, sentence)`` of what was done to a done input
    (kinds ``cropped``, ``resized``, ``format``, ``faces``)."""

    source: str
    output: str | None
    status: Status
    code: str
    message: str = ""
    ms: float = 0.0
    worker: str = ""
    notes: tuple[tuple[str, str], ...] = ()

    def to_row(self) -> dict[str, Any]:
        """A manifest row (JSON/Parquet-ready): the notes' sentences joined into ``message``."""
        row = {**asdict(self), "status": self.status.value}
        row["message"] = row["message"] or "; ".join(sentence for _, sentence in self.notes)
        del row["notes"]
        return row


@dataclass
class BatchReport:
    """Every input's :class:`ItemReport`, the time taken, and why the run stopped early (if it did)."""

    items: list[ItemReport] = field(default_factory=list)
    elapsed_s: float = 0.0
    stopped: str | None = None

    def count(self, status: Status) -> int:
        return sum(item.status is status for item in self.items)

    @property
    def exit_code(self) -> int:
        """0: everything done or skipped; 1: something refused or failed (README, "Bad input")."""
        return 1 if self.count(Status.REFUSED) or self.count(Status.FAILED) else 0

    def summary(self) -> str:
        """One line: the counts and the rate."""
        done = self.count(Status.DONE)
        rate = done / self.elapsed_s if self.elapsed_s > 0 else 0.0
        return (f"{done} written, {self.count(Status.SKIPPED)} skipped (exist), {self.count(Status.REFUSED)} "
                f"refused, {self.count(Status.FAILED)} failed, {self.elapsed_s:.1f} s ({rate:.2f} images/s)")


@dataclass(frozen=True)
class Plan:
    """The inputs to do, a report for each input spec that yields nothing, and notes to show."""

    items: list[InputFile]
    problems: list[ItemReport]
    notes: list[str]


@dataclass(frozen=True)
class FaceJob:
    """Whole photos instead of model-sized images: faces restored, the rest bicubic (``scale``);
    ``options`` go to :class:`~gleansr.pipeline.faces.FaceEnhancer`."""

    scale: int
    options: dict = field(default_factory=dict)
    draw_boxes: bool = False
    save_crops: Path | None = None


OnItem = Callable[[ItemReport], None]


def plan(inputs: Sequence[str], naming: Naming, *, recursive: bool = False) -> Plan:
    """The inputs of ``inputs`` (files, folders, globs) to process; GleanError when none is
    found or two inputs would write one output (nothing can start)."""
    items, problems = gather_inputs(inputs, recursive=recursive)
    if not items:
        raise GleanError("; ".join(message for _, message in problems))
    items, earlier = drop_own_outputs(items, naming.candidates)
    notes = []
    if earlier:
        notes.append(f"left out {len(earlier)} earlier output(s) of this command among the inputs (e.g. "
                     f"{earlier[0].path}); their inputs are skipped or, with --overwrite, redone")
    check_outputs([i.path for i in items], [naming.target(i) for i in items])
    missing = [ItemReport(spec, None, Status.FAILED, "missing_input", message) for spec, message in problems]
    return Plan(items, missing, notes)


def upscale_files(inputs: Sequence[str], upscaler: Upscaler, naming: Naming | None = None, *,
                  recursive: bool = False, overwrite: bool = False, batch_size: int = DEFAULT_BATCH_SIZE,
                  shard_of: tuple[int, int] = (0, 1), faces: FaceJob | None = None, limits: Limits = DEFAULT_LIMITS,
                  on_item: OnItem | None = None, on_plan: Callable[[Plan], None] | None = None) -> BatchReport:
    """Super-resolve files, folders and globs: this process's share (``shard_of``: rank, world
    size; every input is one rank's) of :func:`plan`'s inputs through :func:`run_items`."""
    start = time.perf_counter()
    naming = naming or Naming(f"_x{faces.scale if faces else upscaler.scale}")
    found = plan(inputs, naming, recursive=recursive)
    if on_plan:
        on_plan(found)
    rank, world = shard_of
    mine = shard(found.items, rank, world)
    missing = found.problems if rank == 0 else []
    for item in missing:
        if on_item:
            on_item(item)
    report = run_items(mine, upscaler, naming, overwrite=overwrite, batch_size=batch_size, faces=faces,
                       limits=limits, on_item=on_item)
    report.items[:0] = missing
    report.elapsed_s = time.perf_counter() - start
    return report


def run_items(items: Sequence[InputFile], upscaler: Upscaler, naming: Naming, *, overwrite: bool = False,
              batch_size: int = DEFAULT_BATCH_SIZE, faces: FaceJob | None = None, limits: Limits = DEFAULT_LIMITS,
              on_item: OnItem | None = None, worker: str = "") -> BatchReport:
    """The per-item work for ``items`` (one file or many; a cluster worker calls it for its
    batch): see the module docstring. Reports arrive through ``on_item`` as they are decided."""
    if batch_size < 1:
        raise GleanError(f"batch size must be at least 1, got {batch_size}")
    run = _Run(upscaler, naming, overwrite, batch_size, faces, limits, on_item, worker)
    start = time.perf_counter()
    for index, item in enumerate(items):
        if run.stopped:
            run.not_run(items[index:])
            break
        run.take(item)
    run.flush()
    return BatchReport(run.reports, time.perf_counter() - start, run.stopped)


class _Run:
    """One :func:`run_items` call: the batch being filled and the reports so far."""

    def __init__(self, upscaler: Upscaler, naming: Naming, overwrite: bool, batch_size: int,
                 faces: FaceJob | None, limits: Limits, on_item: OnItem | None, worker: str):
        self.upscaler, self.naming, self.overwrite, self.batch_size = upscaler, naming, overwrite, batch_size
        self.faces, self.limits, self.on_item, self.worker = faces, limits, on_item, worker
        self.reports: list[ItemReport] = []
        self.batch: list[tuple[InputFile, Path, Prepared, float]] = []
        self.stopped: str | None = None

    def report(self, item: InputFile, output: Path | None, status: Status, code: str, message: str = "",
               started: float | None = None, notes: Sequence[tuple[str, str]] = ()) -> None:
        ms = (time.perf_counter() - started) * 1000 if started is not None else 0.0
        entry = ItemReport(str(item.path), None if output is None else str(output), status, code, message, ms,
                           self.worker, tuple(notes))
        self.reports.append(entry)
        if self.on_item:
            self.on_item(entry)

    def take(self, item: InputFile) -> None:
        """Decode, name, skip or check one input; queue it for the model (or run a whole photo)."""
        started = time.perf_counter()
        early = self.naming.candidates(item)
        if len(early) == 1 and not self.overwrite and next(iter(early)).exists():
            out = next(iter(early))  # known without decoding: reruns over large folders stay cheap
            self.report(item, out, Status.SKIPPED, "output_exists", f"{out} exists (use --overwrite)", started)
            return
        try:  # the decode limits, then the size rule (not for whole photos), from the header: no decode
            image = load_image(item.path, self.limits, None if self.faces else self.refuse_early(item))
            out = self.naming.target(item, image)
        except GleanError as exc:
            self.report(item, None, *_outcome(exc), started)
            return
        if out.exists() and not self.overwrite:
            self.report(item, out, Status.SKIPPED, "output_exists", f"{out} exists (use --overwrite)", started)
            return
        if self.faces:
            self.photo(item, image, out, started)
            return
        try:
            prepared = self.upscaler.prepare(image, name=str(item.path))
        except (Refusal, OutOfMemory) as exc:
            self.report(item, out, *_outcome(exc), started)
            return
        self.batch.append((item, out, prepared, started))
        if len(self.batch) >= self.batch_size:
            self.flush()

    def refuse_early(self, item: InputFile) -> Callable[[int, int], None]:
        """The size rule on the header's size, raising its Refusal: a refused 4096x4096 costs no decode."""
        return lambda width, height: self.upscaler.check((width, height), name=str(item.path)).refuse()

    def flush(self) -> None:
        """Run the queued inputs through the model and write each result."""
        batch, self.batch = self.batch, []
        if not batch:
            return
        try:
            results = self.upscaler.upscale_prepared([prepared for _, _, prepared, _ in batch])
        except Exception as exc:  # noqa: BLE001 - the batch's inputs fail, the run goes on
            for item, out, _, started in batch:
                self.report(item, out, Status.FAILED, "model_failed", f"{item.path}: the model run failed ({exc})",
                            started)
            return
        for index, ((item, out, prepared, started), result) in enumerate(zip(batch, results)):
            if self.stopped:
                self.not_run([entry[0] for entry in batch[index:]])
                return
            if self.write(item, out, result, started):
                notes = prepared.notes + self.naming.format_note(out)
                self.report(item, out, Status.DONE, "done", started=started, notes=notes)

    def photo(self, item: InputFile, image: LoadedImage, out: Path, started: float) -> None:
        """A whole photo: faces by the model, the rest bicubic, plus the optional extras."""
        from .faces import draw_faces, save_face_crops

        try:
            result = self.upscaler.upscale_photo(image, self.faces.scale, **self.faces.options)
        except Refusal as exc:
            self.report(item, out, Status.REFUSED, exc.code, exc.sentence, started)
            return
        except GleanError as exc:
            self.report(item, out, Status.FAILED, "model_failed", f"{item.path}: {exc}", started)
            return
        if not self.write(item, out, result.loaded, started):
            return
        try:
            if self.faces.draw_boxes:
                save_image(out.with_name(out.stem + "_faces.png"), draw_faces(image.rgb, result.faces),
                           overwrite=self.overwrite)
            if self.faces.save_crops:
                save_face_crops(result, self.faces.save_crops, item.path.stem, overwrite=self.overwrite)
        except (GleanError, OSError) as exc:
            self.report(item, out, Status.FAILED, "write_failed", f"{item.path}: {exc}", started)
            return
        notes = [("faces", message) for message in result.messages] + self.naming.format_note(out)
        self.report(item, out, Status.DONE, "faces", started=started, notes=notes)

    def write(self, item: InputFile, out: Path, result: LoadedImage, started: float) -> bool:
        """Write one result atomically; a full disk stops the run (nothing partial is left)."""
        try:
            save_loaded(out, result, self.overwrite)
            return True
        except GleanError as exc:
            self.report(item, out, Status.FAILED, "write_failed", str(exc), started)
        except OSError as exc:
            sentence = describe_os_error(exc, out, "write")
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                self.stopped = sentence
                self.report(item, out, Status.FAILED, "no_space", sentence, started)
            else:
                self.report(item, out, Status.FAILED, "write_failed", sentence, started)
        return False

    def not_run(self, items: Sequence[InputFile]) -> None:
        for item in items:
            self.report(item, None, Status.FAILED, "not_run", f"{item.path}: not processed ({self.stopped})")


def _outcome(exc: GleanError) -> tuple[Status, str, str]:
    """(status, code, sentence) of an input stopped by ``exc`` before its model run: the decode
    limits and the policy refuse, the rest fails (an output name that cannot be made: ``bad_output``)."""
    if isinstance(exc, TooManyPixels):
        return Status.REFUSED, "too_many_pixels", str(exc)
    if isinstance(exc, Refusal):
        return Status.REFUSED, exc.code, exc.sentence
    if isinstance(exc, OutOfMemory):
        return Status.FAILED, "out_of_memory", str(exc)
    if isinstance(exc, ImageError):
        return Status.FAILED, "unreadable", str(exc)
    return Status.FAILED, "bad_output", str(exc)
