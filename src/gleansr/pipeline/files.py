"""Which files to upscale, where each result goes, and which process handles which file.

Output naming rule (``output_path``): ``<out_dir>/<sub-folders>/<stem><suffix><ext>`` where the
sub-folders are the input's position under the folder (or glob root) it was found in, ``ext``
is the requested extension or else the input's own (the suffix may hold no path separator and no
``..``, so every output stays under the output folder), and PNG replaces any format that cannot
hold the output's alpha channel or bit depth (JPEG and BMP hold no alpha; only PNG and TIFF hold
16 bits). An output may never be one of the inputs, and two inputs may never share an output.
"""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence, TypeVar

from ..errors import GleanError, file_kind
from .images import FORMATS, format_can_hold

T = TypeVar("T")

_GLOB_CHARACTERS = frozenset("*?[")


@dataclass(frozen=True)
class InputFile:
    """An image to process and the folder its output sub-folders are relative to (None: flat)."""

    path: Path
    base: Path | None = None


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in FORMATS and not path.name.startswith(".") and path.is_file()


def _folder_images(folder: Path, recursive: bool) -> list[Path]:
    """Images directly in ``folder`` or, with ``recursive``, anywhere below it (hidden ones skipped)."""
    if not recursive:
        return [p for p in folder.iterdir() if _is_image(p)]
    found = []
    for root, folders, files in os.walk(folder):
        folders[:] = [name for name in folders if not name.startswith(".")]
        found += [p for p in (Path(root) / name for name in files) if _is_image(p)]
    return found


def _glob_root(spec: str) -> Path:
    """The literal folder a glob starts from: outputs keep the structure below it."""
    parts = Path(spec).parts
    literal = []
    for part in parts[:-1]:
        if _GLOB_CHARACTERS & set(part):
            break
        literal.append(part)
    return Path(*literal) if literal else Path(".")


def _expand(spec: str, recursive: bool) -> list[InputFile]:
    path = Path(spec).expanduser()
    if path.is_file():
        return [InputFile(path)]
    if path.is_dir():
        images = _folder_images(path, recursive)
        if not images:
            hint = "" if recursive else " (use -r to search its sub-folders)"
            raise GleanError(f"input folder {spec} holds no {'/'.join(FORMATS)} images{hint}")
        return [InputFile(p, path) for p in images]
    if _GLOB_CHARACTERS & set(spec):
        root = _glob_root(os.path.expanduser(spec))
        matches = [Path(p) for p in glob.glob(os.path.expanduser(spec), recursive=True)]
        images = [InputFile(p, root) for p in matches if _is_image(p)]
        if not images:
            raise GleanError(f"input pattern {spec} matches no {'/'.join(FORMATS)} images")
        return images
    kind = file_kind(path)
    if kind not in (None, "missing"):  # a FIFO, a socket, a device: reading it could block or never end
        raise GleanError(f"input {spec} is {kind}, not an image file")
    raise GleanError(f"input {spec} does not exist")


def gather_inputs(specs: Sequence[str], recursive: bool = False) -> tuple[list[InputFile], list[tuple[str, str]]]:
    """Expand files, folders and glob patterns (``**`` included) into a sorted list of images,
    and ``(spec, message)`` for each spec that yields nothing (missing, empty, matching nothing).

    A named file is taken whatever its extension (reading it reports what is wrong); folders and
    patterns yield only files with an image extension. Files reached twice are kept once, with
    the first spec's base; the order is sorted by path, the same in every process.
    """
    seen: dict[Path, InputFile] = {}
    problems = []
    for spec in specs:
        try:
            found = _expand(spec, recursive)
        except GleanError as exc:
            problems.append((spec, str(exc)))
            continue
        for item in found:
            seen.setdefault(item.path.resolve(), item)
    return sorted(seen.values(), key=lambda item: item.path.as_posix()), problems


def collect_inputs(specs: Sequence[str], recursive: bool = False) -> list[InputFile]:
    """:func:`gather_inputs`, strict: GleanError naming the first spec that yields nothing."""
    items, problems = gather_inputs(specs, recursive)
    if problems:
        raise GleanError(problems[0][1])
    return items


def drop_own_outputs(items: Sequence[InputFile], targets: Callable[[InputFile], Sequence[Path]]
                     ) -> tuple[list[InputFile], list[InputFile]]:
    """(inputs, earlier outputs): an input that is where another input's result goes
    (``targets(item)``: every path its output may take) is an earlier output of the same
    command, so a rerun over a folder skips it instead of upscaling its own results."""
    outputs = {t.resolve() for item in items for t in targets(item)}
    kept = [item for item in items if item.path.resolve() not in outputs]
    return kept, [item for item in items if item.path.resolve() in outputs]


def check_suffix(suffix: str) -> str:
    """``suffix`` if it only extends a file name; GleanError for one that could leave the output
    folder or name another place (a path separator, ``..``, a NUL)."""
    separators = {"/", "\0", os.sep, os.altsep or "/"}
    if any(sep in suffix for sep in separators) or ".." in suffix:
        raise GleanError(f"--suffix {suffix!r} may not contain a path separator or '..': it is added to each "
                         "output's file name (e.g. _x8), outputs go under -o")
    return suffix


def output_path(
    input: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    suffix: str = "_x8",
    ext: str | None = None,
    base: str | os.PathLike[str] | None = None,
    *,
    alpha: bool = False,
    bit_depth: int = 8,
) -> Path:
    """Where the result for ``input`` goes (rule in the module docstring).

    ``ext`` may be given with or without its dot ("jpg", ".JPG"). ``alpha``/``bit_depth`` describe
    the image to be written. Raises GleanError for an unknown ``ext`` or an output that would be
    the input itself.
    """
    check_suffix(suffix)
    input, out_dir = Path(input), Path(out_dir)
    if ext is not None:
        ext = "." + ext.lstrip(".").lower()
        if ext not in FORMATS:
            raise GleanError(f"unknown output extension {ext} (use one of {', '.join(FORMATS)})")
    chosen = ext or input.suffix
    if not format_can_hold(chosen, alpha=alpha, bit_depth=bit_depth):
        chosen = ".png"
    folder = out_dir / input.parent.relative_to(base) if base is not None else out_dir
    result = folder / f"{input.stem}{suffix}{chosen}"
    if _same_file(result, input):
        raise GleanError(f"output {result} would overwrite its input; choose another folder or suffix")
    return result


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    return a.exists() and b.exists() and os.path.samefile(a, b)  # e.g. case-insensitive disks


def check_outputs(inputs: Sequence[Path], outputs: Sequence[Path]) -> None:
    """Raise GleanError if an output is also an input or two inputs would write the same output.

    Catches e.g. ``a.png`` and ``a.jpg`` both becoming ``a_x8.png`` before any work is done.
    """
    input_files = {p.resolve(): p for p in inputs}
    writers: dict[Path, Path] = {}
    for source, target in zip(inputs, outputs, strict=True):
        key = target.resolve()
        if key in input_files:
            raise GleanError(f"output {target} (for {source}) is also an input")
        if key in writers:
            raise GleanError(f"{writers[key]} and {source} would both be written to {target}")
        writers[key] = source


def shard(items: Sequence[T], rank: int, world_size: int) -> list[T]:
    """This process's share of ``items``: every ``world_size``-th item starting at ``rank``.

    Strided rather than contiguous, so large and small images in a sorted folder spread evenly.
    Together the shards of ranks 0..world_size-1 hold every item exactly once.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    return list(items[rank::world_size])
