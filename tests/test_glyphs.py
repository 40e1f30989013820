"""The glyph data builder on fonts made here: fontTools-built TrueType fonts whose glyphs, gaps and
duplicates we control, and Pillow's embedded Aileron font (a real font, present wherever Pillow is)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFont

from gleansr.glyphs.render import (GlyphRenderer, build_glyph_dataset, design_group, is_held_out,
                                 license_id, read_faces, write_demo_samples)
from gleansr.errors import GleanError

CHARS = "ABab1&"
SIZE = 32
FIT = 0.8


def _polygons(char: str, variant: int) -> list[list[tuple[int, int]]]:
    """A distinct outline per (character, design variant): a frame with a char-dependent bar."""
    k = CHARS.index(char) + 1
    w, h = 300 + 60 * k, 700 - 40 * k
    if variant == 0:  # thick frame + horizontal bar
        outer = [(0, 0), (0, h), (w, h), (w, 0)]
        inner = [(90, 90), (w - 90, 90), (w - 90, h - 90), (90, h - 90)]
        bar = [(0, h // 2 - 40), (0, h // 2 + 40), (w + 120, h // 2 + 40), (w + 120, h // 2 - 40)]
        return [outer, inner, bar]
    if variant == 1:  # a triangle and a diagonal stroke
        tri = [(0, 0), (w // 2, h), (w, 0)]
        stroke = [(0, h), (40, h + 60), (w + 40 * k, 60 * k), (w, 0)]
        return [tri, stroke]
    # variant 2: an octagon and a vertical stem
    octagon = [(w // 3, 0), (0, h // 3), (0, 2 * h // 3), (w // 3, h), (2 * w // 3, h), (w, 2 * h // 3),
               (w, h // 3), (2 * w // 3, 0)]
    stem = [(w + 40, 0), (w + 40, h + 50 * k), (w + 130, h + 50 * k), (w + 130, 0)]
    return [octagon, stem]


def make_font(path: Path, family: str, style: str = "Regular", variant: int = 0, chars: str = CHARS,
              empty: str = "", notdef_copy: str = "", license_text: str = "SIL Open Font License 1.1") -> Path:
    """A TrueType font with ``chars`` mapped; ``empty`` chars map to an inkless glyph and
    ``notdef_copy`` chars to a copy of the .notdef box (both must count as missing)."""
    from fontTools.fontBuilder import FontBuilder
    from fontTools.pens.ttGlyphPen import TTGlyphPen

    def glyph(polys):
        pen = TTGlyphPen(None)
        for poly in polys:
            pen.moveTo(poly[0])
            for point in poly[1:]:
                pen.lineTo(point)
            pen.closePath()
        return pen.glyph()

    box = [[(0, 0), (0, 700), (500, 700), (500, 0)], [(50, 50), (450, 50), (450, 650), (50, 650)]]
    glyphs = {".notdef": glyph(box)}
    cmap = {}
    for i, c in enumerate(chars + empty + notdef_copy):
        name = f"g{i}"
        glyphs[name] = glyph([] if c in empty else box if c in notdef_copy else _polygons(c, variant))
        cmap[ord(c)] = name
    fb = FontBuilder(1000, isTTF=True)
    fb.setupGlyphOrder(list(glyphs))
    fb.setupCharacterMap(cmap)
    fb.setupGlyf(glyphs)
    fb.setupHorizontalMetrics({n: (900, getattr(fb.font["glyf"][n], "xMin", 0)) for n in glyphs})
    fb.setupHorizontalHeader(ascent=800, descent=-200)
    fb.setupNameTable({"familyName": family, "styleName": style, "psName": f"{family.replace(' ', '')}-{style}",
                       "licenseDescription": license_text, "version": "Version 1.0"})
    fb.setupOS2(sTypoAscender=800, usWinAscent=800, usWinDescent=200)
    fb.setupPost()
    path.parent.mkdir(parents=True, exist_ok=True)
    fb.save(str(path))
    return path


def _family(held_out: bool, fraction: float = 0.5) -> str:
    """A family name whose design cluster lands on the requested side of the split."""
    return next(f"Family{n}" for n in range(1000) if is_held_out(f"family{n}", fraction) == held_out)


@pytest.fixture
def fonts(tmp_path: Path) -> dict:
    train_family, test_family = _family(False), _family(True)
    root = tmp_path / "fonts"
    make_font(root / "a" / "TrainSans.ttf", train_family, variant=0)
    make_font(root / "a" / "TrainSans-Bold.ttf", train_family, "Bold", variant=1)
    make_font(root / "b" / "TestSerif.ttf", test_family, variant=2, chars="ABa1", empty="b", notdef_copy="&")
    aileron = root / "c" / "Aileron-Regular.otf"
    aileron.parent.mkdir(parents=True)
    aileron.write_bytes(ImageFont.load_default(size=10).font_bytes)
    return {"root": root, "train_family": train_family, "test_family": test_family, "aileron": aileron}


def _build(fonts: dict, out: Path, **kw) -> dict:
    return build_glyph_dataset([fonts["root"]], out, size=SIZE, chars=CHARS, test_fraction=0.5, fit=FIT,
                               min_chars=3, **kw)


def _ink_box(path: Path) -> tuple[int, int, int, int]:
    a = np.asarray(Image.open(path))
    ys, xs = np.nonzero(a < 128)
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


def test_one_centred_image_per_font_and_character(fonts, tmp_path):
    manifest = _build(fonts, tmp_path / "out")
    out = tmp_path / "out"
    by_family = {}
    for record in manifest["fonts"]:
        by_family.setdefault(record["family"], []).append(record)
        files = sorted((out / record["split"] / record["name"]).glob("*.png"))
        assert [f.name for f in files] == sorted(f"u{ord(c):04X}.png" for c in record["chars"])
        for f in files:
            image = Image.open(f)
            assert image.size == (SIZE, SIZE) and image.mode == "L"
            a = np.asarray(image)
            assert a.max() == 255 and a.min() < 64  # dark glyph on a white background
            left, top, right, bottom = _ink_box(f)
            assert left > 0 and top > 0 and right < SIZE and bottom < SIZE
            assert abs(max(right - left, bottom - top) - FIT * SIZE) <= 2
            assert abs((left + right) / 2 - SIZE / 2) <= 1.5 and abs((top + bottom) / 2 - SIZE / 2) <= 1.5
    assert len(by_family[fonts["train_family"]]) == 2 and "Aileron" in by_family
    assert by_family["Aileron"][0]["chars"] == CHARS  # the real font has every character
    images = {s: len(list((out / s).rglob("*.png"))) for s in ("train", "test")}
    assert images == {s: manifest["counts"][s]["images"] for s in ("train", "test")}


def test_missing_empty_and_notdef_like_glyphs_are_skipped(fonts, tmp_path):
    manifest = _build(fonts, tmp_path / "out")
    record = next(r for r in manifest["fonts"] if r["family"] == fonts["test_family"])
    assert record["chars"] == "ABa1" and record["missing"] == "b&"
    folder = tmp_path / "out" / record["split"] / record["name"]
    assert not (folder / "u0062.png").exists() and not (folder / "u0026.png").exists()
    face = read_faces("r", "s", fonts["root"] / "b" / "TestSerif.ttf", CHARS)[0]
    assert {chr(c) for c in face.codepoints} == set("ABab1&")  # the cmap claims them: drawing decides
    renderer = GlyphRenderer(face, SIZE, FIT)
    assert renderer.render("b") is None and renderer.render("&") is None and renderer.render("A") is not None


def test_whole_designs_are_held_out(fonts, tmp_path):
    manifest = _build(fonts, tmp_path / "out")
    split_of = {}
    for record in manifest["fonts"]:
        split_of.setdefault(record["cluster"], set()).add(record["split"])
    assert all(len(sides) == 1 for sides in split_of.values())
    families = {r["family"]: r["split"] for r in manifest["fonts"]}
    assert families[fonts["train_family"]] == "train" and families[fonts["test_family"]] == "test"
    assert manifest["counts"]["test"]["fonts"] >= 1 and manifest["counts"]["train"]["fonts"] >= 2
    assert design_group("DejaVu Sans Mono") == design_group("DejaVu Serif") == "dejavu"


def test_copies_related_designs_and_broken_files(fonts, tmp_path):
    root = fonts["root"]
    (root / "dup").mkdir()
    (root / "dup" / "TrainSans-copy.ttf").write_bytes((root / "a" / "TrainSans.ttf").read_bytes())
    # the same outlines under another family name: a copy; its group joins the original's cluster
    make_font(root / "dup" / "Clone.ttf", "Zclone", variant=0)
    (root / "dup" / "Broken.otf").write_bytes(b"OTTO" + bytes(60))
    manifest = _build(fonts, tmp_path / "out")
    reasons = {s["source"]: s["reason"] for s in manifest["skipped"]}
    assert "not a readable font" in reasons["dup/Broken.otf"]
    assert reasons["dup/TrainSans-copy.ttf"].startswith("same family and style as")
    assert reasons["dup/Clone.ttf"].startswith("same design as a/TrainSans.ttf")
    assert not any(r["source"] == "dup/Clone.ttf" for r in manifest["fonts"])
    assert {r["cluster"] for r in manifest["fonts"] if r["family"] == fonts["train_family"]} == {
        design_group(fonts["train_family"])}


def test_rebuild_is_byte_identical_and_never_overwrites_unasked(fonts, tmp_path):
    out = tmp_path / "out"
    _build(fonts, out)
    first = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    with pytest.raises(GleanError, match="already holds a glyph dataset"):
        _build(fonts, out)
    _build(fonts, out, overwrite=True)
    second = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert first == second and len(first) > 10
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(GleanError, match="not a glyph dataset"):
        _build(fonts, other, overwrite=True)
    assert (other / "keep.txt").read_text() == "mine"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_cli_and_demo_samples(fonts, tmp_path, capsys):
    from gleansr.commands import data

    parser = argparse.ArgumentParser()
    data.add_arguments(parser)
    out = tmp_path / "cli"
    args = parser.parse_args(["glyphs", "--fonts", str(fonts["root"]), "-o", str(out), "--size", str(SIZE),
                              "--chars", CHARS, "--test-fraction", "0.5", "--min-chars", "3", "--quiet"])
    assert data.run(args) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    printed = capsys.readouterr().out
    assert f"train: {manifest['counts']['train']['images']} images" in printed
    assert manifest["command"][:3] == ["gleansr", "data", "glyphs"] and "--chars" in manifest["command"]
    names = write_demo_samples(out, tmp_path / "samples", scale=4, count=3)
    test_fonts = {r["name"] for r in manifest["fonts"] if r["split"] == "test"}
    assert len(names) == 3 and all(n.rsplit("_u", 1)[0] in test_fonts for n in names)
    for n in names:
        assert Image.open(tmp_path / "samples" / "hr" / f"{n}.png").size == (SIZE, SIZE)
        assert Image.open(tmp_path / "samples" / "lr" / f"{n}.png").size == (SIZE // 4, SIZE // 4)


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(GleanError, match="font folder not found"):
        build_glyph_dataset([tmp_path / "nope"], tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(GleanError, match="no font files"):
        build_glyph_dataset([tmp_path / "empty"], tmp_path / "out")
    bad = tmp_path / "bad" / "broken.ttf"
    bad.parent.mkdir()
    bad.write_bytes(b"not a font at all")
    with pytest.raises(GleanError, match="broken.ttf: not a readable font"):
        read_faces("r", "broken.ttf", bad, CHARS)


def test_license_ids():
    assert license_id("This Font Software is licensed under the SIL Open Font License, Version 1.1.") == "OFL-1.1"
    assert license_id("Licensed under the Apache License, Version 2.0") == "Apache-2.0"
    assert license_id("", "http://www.gust.org.pl/fonts/licenses/GUST-FONT-LICENSE.txt") == "GUST"
    assert license_id("GNU General Public License with font exception") == "GPL+font-exception"
    assert license_id("All rights reserved.") == "unknown"
