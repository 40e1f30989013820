import os
from pathlib import Path

import pytest

from gleansr.errors import GleanError
from gleansr.pipeline.files import (InputFile, check_outputs, collect_inputs, drop_own_outputs, gather_inputs,
                                   output_path, shard)


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """photos/{b.png, a.JPG, notes.txt, .hidden.png, cats/c.webp, cats/deep/d.tif, .cache/e.png}."""
    monkeypatch.chdir(tmp_path)
    names = ["b.png", "a.JPG", "notes.txt", ".hidden.png", "cats/c.webp", "cats/deep/d.tif", ".cache/e.png"]
    for name in names:
        path = tmp_path / "photos" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    (tmp_path / "single.bmp").write_bytes(b"x")
    return tmp_path


def names(items):
    return [item.path.as_posix() for item in items]


def test_folder_takes_images_directly_inside(tree):
    items = collect_inputs(["photos"])
    assert names(items) == ["photos/a.JPG", "photos/b.png"]
    assert all(item.base == Path("photos") for item in items)


def test_recursive_folder_takes_nested_images_but_not_hidden_ones(tree):
    items = collect_inputs(["photos"], recursive=True)
    assert names(items) == ["photos/a.JPG", "photos/b.png", "photos/cats/c.webp", "photos/cats/deep/d.tif"]


def test_globs_including_double_star(tree):
    assert names(collect_inputs(["photos/*.png"])) == ["photos/b.png"]
    items = collect_inputs(["photos/**/*"])
    assert names(items) == ["photos/a.JPG", "photos/b.png", "photos/cats/c.webp", "photos/cats/deep/d.tif"]
    assert {item.base for item in items} == {Path("photos")}
    assert collect_inputs(["photos/cats/*/*.tif"])[0].base == Path("photos/cats")
    assert collect_inputs(["*.bmp"])[0].base == Path(".")


def test_files_are_deduplicated_and_sorted_whatever_the_spec_order(tree):
    specs = ["photos/b.png", "single.bmp", str(tree / "photos" / "b.png"), "photos", "./photos/*.png"]
    items = collect_inputs(specs)
    assert names(items) == ["photos/a.JPG", "photos/b.png", "single.bmp"]
    assert items[1] == InputFile(Path("photos/b.png"), None)  # the first spec naming it decides
    reordered = collect_inputs(list(reversed(specs)))
    assert names(reordered) == names(items)
    assert reordered[1] == InputFile(Path("photos/b.png"), Path("photos"))


def test_a_named_file_is_taken_whatever_its_extension(tree):
    assert names(collect_inputs(["photos/notes.txt"])) == ["photos/notes.txt"]


@pytest.mark.parametrize(
    "spec, message",
    [
        ("missing.png", "input missing.png does not exist"),
        ("photos/*.gif", r"input pattern photos/\*.gif matches no"),
        ("wrapper", "input folder wrapper holds no .*use -r to search its sub-folders"),
    ],
)
def test_a_spec_that_yields_nothing_is_an_error_naming_it(tree, spec, message):
    (tree / "wrapper" / "inner").mkdir(parents=True)
    (tree / "wrapper" / "inner" / "f.png").write_bytes(b"x")
    assert names(collect_inputs(["wrapper"], recursive=True)) == ["wrapper/inner/f.png"]
    with pytest.raises(GleanError, match=message):
        collect_inputs(["photos/b.png", spec])


def test_gather_reports_each_spec_that_yields_nothing_and_keeps_the_rest(tree):
    items, problems = gather_inputs(["missing.png", "photos", "photos/*.gif"])
    assert names(items) == ["photos/a.JPG", "photos/b.png"]
    assert problems == [("missing.png", "input missing.png does not exist"),
                        ("photos/*.gif", "input pattern photos/*.gif matches no .png/.tif/.tiff/.webp/.bmp/.jpg/.jpeg images")]


def test_earlier_outputs_among_the_inputs_are_told_apart(tree):
    (tree / "photos" / "b_x8.png").write_bytes(b"x")  # written by an earlier run next to b.png
    (tree / "photos" / "a_x8.png").write_bytes(b"x")  # a.JPG's result when it had to become PNG
    (tree / "photos" / "z_x8.png").write_bytes(b"x")  # no input of that name: a user's own file
    items = collect_inputs(["photos"])

    def targets(item):
        return {output_path(item.path, item.path.parent), output_path(item.path, item.path.parent, alpha=True)}

    kept, earlier = drop_own_outputs(items, targets)
    assert names(kept) == ["photos/a.JPG", "photos/b.png", "photos/z_x8.png"]
    assert names(earlier) == ["photos/a_x8.png", "photos/b_x8.png"]


def test_output_keeps_sub_folders_under_the_base(tmp_path):
    out = tmp_path / "out"
    assert output_path("photos/cats/deep/d.tif", out, base="photos") == out / "cats/deep/d_x8.tif"
    assert output_path("photos/cats/deep/d.tif", out) == out / "d_x8.tif"
    assert output_path("a.JPG", out, suffix="") == out / "a.JPG"


def test_output_extension_rule(tmp_path):
    assert output_path("a.jpg", tmp_path, ext="PNG").name == "a_x8.png"
    assert output_path("a.png", tmp_path, ext=".jpg").name == "a_x8.jpg"
    # A format that cannot hold the result is replaced by PNG.
    assert output_path("a.png", tmp_path, ext="jpg", alpha=True).name == "a_x8.png"
    assert output_path("a.bmp", tmp_path, alpha=True).name == "a_x8.png"
    assert output_path("a.png", tmp_path, ext="webp", bit_depth=16).name == "a_x8.png"
    assert output_path("a.tif", tmp_path, bit_depth=16, alpha=True).name == "a_x8.tif"
    assert output_path("a.webp", tmp_path, alpha=True).name == "a_x8.webp"
    assert output_path("a.gif", tmp_path).name == "a_x8.png"  # readable but not writable
    with pytest.raises(GleanError, match="unknown output extension .gif"):
        output_path("a.png", tmp_path, ext="gif")


def test_output_must_not_be_the_input(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("a.png").write_bytes(b"x")
    with pytest.raises(GleanError, match="a.png would overwrite its input"):
        output_path("a.png", ".", suffix="")
    with pytest.raises(GleanError, match="overwrite its input"):
        output_path(tmp_path / "a.png", "sub/..", suffix="")
    os.symlink(tmp_path, tmp_path / "link")
    with pytest.raises(GleanError, match="overwrite its input"):
        output_path("a.png", "link", suffix="")
    assert output_path("a.png", ".", suffix="_x8") == Path("a_x8.png")


def test_check_outputs_finds_collisions(tmp_path):
    inputs = [tmp_path / "a.png", tmp_path / "a.jpg", tmp_path / "b.png"]
    distinct = [output_path(p, tmp_path / "out") for p in inputs]
    check_outputs(inputs, distinct)
    colliding = [output_path(p, tmp_path / "out", ext="png") for p in inputs]
    with pytest.raises(GleanError, match="a.png and .*a.jpg would both be written to .*a_x8.png"):
        check_outputs(inputs, colliding)
    with pytest.raises(GleanError, match="b.png .*is also an input"):
        check_outputs(inputs, [distinct[0], distinct[1], inputs[2]])


@pytest.mark.parametrize("count", [0, 1, 5, 8, 13])
@pytest.mark.parametrize("world_size", [1, 2, 3, 4, 8])
def test_shards_cover_every_item_exactly_once(count, world_size):
    items = [f"img{i}" for i in range(count)]
    shards = [shard(items, rank, world_size) for rank in range(world_size)]
    assert sorted(sum(shards, [])) == sorted(items)
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_shard_rejects_bad_ranks():
    for rank, world_size in [(2, 2), (-1, 2), (0, 0)]:
        with pytest.raises(ValueError, match="rank"):
            shard([1, 2, 3], rank, world_size)
