"""Glyph images rendered from font files: the offline training domain of the bundled model.

Why glyphs: letters have real, learnable structure (strokes, serifs, bowls, counters), freely
licensed fonts come with every Linux distribution (SIL OFL, GPL with the font exception, Apache,
GUST, LPPL), so the data needs no download, and whole font families can be held out for testing.

Layout written by :func:`build_glyph_dataset`::

    OUT/train/<font>/u0041.png   one PNG per (font, character): a dark glyph on white
    OUT/test/<font>/...          the fonts of held-out design clusters
    OUT/manifest.json            fonts, licences, counts, skipped faces and why, the command line

Images are 8-bit grey PNGs (every loader here reads them as RGB with R = G = B; grey halves the
size of the data set, which matters when it is copied to a training machine).

How glyphs are drawn and when a font has a character: :mod:`.glyph_fonts`; which designs are held
out for testing and which faces are dropped as copies: :mod:`.glyph_split`. The names callers use
are importable from here.

Reproducible: the same fonts, arguments, Pillow and FreeType give byte-identical files.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import string
from pathlib import Path
from typing import Callable, Sequence

from PIL import Image, features

from ..errors import GleanError
from ..pipeline.images import read_rgb_uint8
from .fonts import (FONT_SUFFIXES, SUPERSAMPLE, FontFace, GlyphRenderer, RenderedFace, design_group,
                          find_font_files, license_id, one_face_per_style, read_faces, render_face)
from .split import is_held_out, split_by_design

__all__ = ["DEFAULT_CHARS", "FontFace", "GlyphRenderer", "find_font_files", "read_faces", "design_group",
           "is_held_out", "license_id", "build_glyph_dataset", "write_demo_samples"]

DEFAULT_CHARS = string.ascii_uppercase + string.ascii_lowercase + string.digits + "&?!@#%$"
MANIFEST_FORMAT = "gleansr-glyphs/1"


def _folder_name(face: FontFace, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", face.postscript_name or f"{face.family}-{face.style}").strip("-.") or "font"
    name, n = base, 2
    while name.casefold() in taken:
        name, n = f"{base}-{n}", n + 1
    taken.add(name.casefold())
    return name


def _face_record(face: FontFace, name: str, split: str, cluster: str, chars: str, present: Sequence[str]) -> dict:
    return {
        "name": name, "split": split, "group": face.group, "cluster": cluster, "family": face.family,
        "style": face.style,
        "postscript_name": face.postscript_name, "version": face.version,
        "license": license_id(face.license, face.license_url), "license_text": face.license[:200],
        "license_url": face.license_url, "root": face.root, "source": face.source, "face_index": face.index,
        "sha256": face.sha256, "chars": "".join(present), "missing": "".join(c for c in chars if c not in present),
    }


def _prepare_output(out: Path, overwrite: bool) -> None:
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    manifest = out / "manifest.json"
    ours = out.is_dir() and manifest.is_file() and MANIFEST_FORMAT in manifest.read_text(errors="replace")[:200]
    if not ours:
        raise GleanError(f"{out} exists and is not a glyph dataset; choose an empty or new folder")
    if not overwrite:
        raise GleanError(f"{out} already holds a glyph dataset; pass --overwrite to replace it")


def _publish(staging: Path, out: Path) -> None:
    """Put the finished dataset in place in one rename (an older dataset there is replaced)."""
    os.sync()
    if out.is_dir() and any(out.iterdir()):
        trash = out.parent / f".{out.name}.old-{secrets.token_hex(4)}"
        os.replace(out, trash)
        os.replace(staging, out)
        shutil.rmtree(trash)
    else:
        if out.is_dir():
            out.rmdir()
        os.replace(staging, out)


def _write(out: Path, splits: dict[str, list[RenderedFace]], cluster_of: dict[str, str], chars: str,
           settings: dict) -> dict:
    """Write images and manifest to a hidden folder beside ``out``, then move it into place."""
    staging = out.parent / f".{out.name}.partial-{secrets.token_hex(4)}"
    records, taken = [], set()
    try:
        staging.mkdir(parents=True)
        for split, items in splits.items():
            for r in items:
                name = _folder_name(r.face, taken)
                folder = staging / split / name
                folder.mkdir(parents=True)
                for char, data in r.pngs.items():
                    (folder / f"u{ord(char):04X}.png").write_bytes(data)
                records.append(_face_record(r.face, name, split, cluster_of[r.face.group], chars, list(r.pngs)))
        manifest = {
            "format": MANIFEST_FORMAT, **settings,
            "renderer": {"pillow": Image.__version__, "freetype": features.version("freetype2"),
                         "supersample": SUPERSAMPLE, "layout": "basic"},
            "counts": {s: {"fonts": len(rs), "families": len({r.face.family for r in rs}),
                           "groups": len({r.face.group for r in rs}),
                           "clusters": len({cluster_of[r.face.group] for r in rs}), "images": sum(len(r.pngs) for r in rs)}
                       for s, rs in splits.items()},
            "fonts": records,
        }
        text = json.dumps(manifest, indent=1, ensure_ascii=False) + "\n"
        (staging / "manifest.json").write_text(text, encoding="utf-8")
        _publish(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return manifest


def _render_usable(faces: list[FontFace], chars: str, size: int, fit: float, min_chars: int, skipped: list[dict],
                   progress: Callable[[int, int], None] | None) -> list[RenderedFace]:
    """Draw every face; those FreeType refuses or that lack characters go to ``skipped`` with the reason."""
    rendered: list[RenderedFace] = []
    for n, face in enumerate(faces):
        if progress is not None:
            progress(n, len(faces))
        try:
            item = render_face(face, chars, size, fit)
        except (GleanError, OSError) as exc:  # FreeType refuses the face or one of its outlines
            skipped.append({"source": face.source, "face_index": face.index, "reason": f"cannot be drawn: {exc}"})
            continue
        if len(item.pngs) < min_chars:
            skipped.append({"source": face.source, "face_index": face.index,
                            "reason": f"only {len(item.pngs)} of {len(chars)} characters (minimum {min_chars})"})
        else:
            rendered.append(item)
    if progress is not None:
        progress(len(faces), len(faces))
    if not rendered:
        raise GleanError(f"no font has at least {min_chars} of the {len(chars)} characters")
    return rendered


def build_glyph_dataset(
    fonts: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    size: int = 128,
    chars: str = DEFAULT_CHARS,
    test_fraction: float = 0.1,
    seed: int = 0,
    fit: float = 0.8,
    min_chars: int | None = None,
    duplicate_tolerance: float = 8.0,
    related_tolerance: float = 16.0,
    command: Sequence[str] = (),
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Render every usable face under ``fonts`` into ``out`` (see the module doc); returns the manifest.

    ``min_chars``: faces with fewer present characters are skipped (default: half of ``chars``).
    ``duplicate_tolerance`` / ``related_tolerance``: RMS grey levels (0-255) at 1/8 resolution under
    which two faces are copies (one is dropped) / related designs (kept on the same side of the
    split). Measured on Debian's fonts: copies and metric clones 0-8, derivatives such as
    Hack / DejaVu Sans Mono 10-13, Carlito / Lato 14-16, distinct designs above 16.
    ``command`` is recorded in the manifest; ``progress(done, total)`` is called as faces are drawn.
    The dataset appears in ``out`` complete or not at all.
    """
    chars = "".join(dict.fromkeys(chars))
    if not chars:
        raise GleanError("no characters to render")
    if size < 8:
        raise GleanError(f"--size must be at least 8, got {size}")
    if not 0 <= test_fraction < 1:
        raise GleanError(f"--test-fraction must be in [0, 1), got {test_fraction}")
    min_chars = (len(chars) + 1) // 2 if min_chars is None else min_chars
    out = Path(out)
    _prepare_output(out, overwrite)
    files = find_font_files(fonts)
    if not files:
        raise GleanError(f"no font files ({', '.join(sorted(FONT_SUFFIXES))}) under {', '.join(map(str, fonts))}")

    skipped: list[dict] = []
    faces = one_face_per_style(files, chars, skipped)
    rendered = _render_usable(faces, chars, size, fit, min_chars, skipped, progress)
    splits, cluster_of = split_by_design(rendered, test_fraction, seed, duplicate_tolerance, related_tolerance, skipped)
    settings = {
        "command": list(command), "size": size, "fit": fit, "chars": chars, "test_fraction": test_fraction,
        "seed": seed, "min_chars": min_chars, "duplicate_tolerance": duplicate_tolerance,
        "related_tolerance": related_tolerance,
        "skipped": sorted(skipped, key=lambda s: (s["source"], s["face_index"], s["reason"])),
    }
    return _write(out, splits, cluster_of, chars, settings)


def write_demo_samples(dataset: str | os.PathLike[str], out: str | os.PathLike[str], scale: int = 8,
                       count: int = 8, chars: str = "Rag&Q5eM", overwrite: bool = False) -> list[str]:
    """Pick ``count`` test-split glyphs of a glyph data set, going round its test families (then
    their fonts in order), and write ``out/hr/<font>_<uXXXX>.png`` (a copy) and ``out/lr/...`` (MATLAB bicubic 1/``scale``,
    as training makes its LR). Sample ``i`` shows ``chars[i % len(chars)]``, or the font's first
    character not yet taken when it lacks that one. Returns the sample names."""
    from ..pipeline.images import save_image
    from ..imaging.imresize import imresize

    dataset, out = Path(dataset), Path(out)
    manifest = json.loads((dataset / "manifest.json").read_text(encoding="utf-8"))
    families: dict[str, list[dict]] = {}
    for font in manifest["fonts"]:
        if font["split"] == "test":
            families.setdefault(font["family"], []).append(font)
    if not families:
        raise GleanError(f"{dataset} has no test fonts to take samples from")
    rounds = [families[f] for f in sorted(families)]
    names = []
    for i in range(count):
        family = rounds[i % len(rounds)]
        font = family[(i // len(rounds)) % len(family)]
        wanted = chars[i % len(chars)]
        options = [c for c in wanted + font["chars"] if c in font["chars"] and f"{font['name']}_u{ord(c):04X}" not in names]
        if not options:
            raise GleanError(f"{dataset}: not enough test glyphs for {count} samples")
        char = options[0]
        name = f"{font['name']}_u{ord(char):04X}"
        hr = read_rgb_uint8(dataset / "test" / font["name"] / f"u{ord(char):04X}.png")
        lr = imresize(hr, scale=1 / scale)
        for folder, image in (("hr", hr), ("lr", lr)):
            save_image(out / folder / f"{name}.png", image, grayscale=True, overwrite=overwrite)
        names.append(name)
    return names
