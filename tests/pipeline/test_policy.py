"""One input policy: the CLI, the server and the Python API give the same verdicts and sentences.

The corpus is sized around the bundled glyph model's 16x16 input: below, at and above it, square
and long (16x200), a broken file, and the face rule; each input goes through all three doors and
the answers are compared after the input's own name is taken out of the sentence.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gleansr import zoo
from gleansr.cli import main
from gleansr.errors import GleanError
from gleansr.pipeline.policy import ModelFacts, Refusal, Resize, Status, face_model_verdict, model_facts, size_verdict
from gleansr.pipeline.upscaler import Upscaler

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))
from serve_helpers import make_client  # noqa: E402,F401

MODEL = "glean_glyphs_8x"
# (width, height) -> what the policy does with it for a 16x16 model under the default resize="up"
CORPUS = {
    (16, 16): "ok", (8, 8): "ok", (16, 200): "ok", (200, 16): "ok", (12, 15): "ok",
    (17, 17): "input_too_large", (400, 300): "input_too_large", (17, 200): "input_too_large",
}


@pytest.fixture(scope="module")
def glyphs() -> Upscaler:
    return Upscaler(MODEL, device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[tuple[int, int], Path]:
    folder = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    paths = {}
    for (w, h) in CORPUS:
        path = folder / f"in_{w}x{h}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        paths[w, h] = path
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return paths


def _unnamed(sentence: str, name: str) -> str:
    return sentence.replace(name, "<NAME>")


def test_size_rule_is_the_shorter_side_with_the_same_verdict_everywhere(glyphs, corpus, make_client, tmp_path, capsys):
    client = make_client(loader=lambda name, precision: glyphs)
    for (w, h), expected in CORPUS.items():
        path = corpus[w, h]
        verdict = glyphs.check((w, h), name=str(path))
        assert verdict.code == expected, (w, h)
        # Python API: upscale() raises the verdict's sentence or returns the 128x128 result
        if verdict.ok:
            assert glyphs.upscale(path).size == (128, 128)
        else:
            with pytest.raises(Refusal) as err:
                glyphs.upscale(path)
            assert (err.value.code, err.value.sentence) == (verdict.code, verdict.sentence)
        # HTTP API: 200 or the same code and sentence (the server names the upload by its file name)
        response = client.post("/v1/upscale", files={"image": (path.name, path.read_bytes(), "image/png")})
        if verdict.ok:
            assert response.status_code == 200, response.text
        else:
            error = response.json()["error"]
            assert (response.status_code, error["code"]) == (422, verdict.code)
            assert _unnamed(error["message"], path.name) == _unnamed(verdict.sentence, str(path))
        # CLI: written (exit 0) or the same sentence (exit 1), nothing written for it
        out = tmp_path / f"out_{w}x{h}"
        rc = main(["upscale", str(path), "-o", str(out), "--quiet", "--device", "cpu", "--precision", "fp32"])
        err = capsys.readouterr().err
        if verdict.ok:
            assert rc == 0 and (out / f"{path.stem}_x8.png").is_file(), err
        else:
            assert rc == 1 and f"refused: {verdict.sentence}" in err and not out.exists(), err


def test_resize_any_and_exact_agree_across_doors(glyphs, corpus, make_client):
    shrinking = Upscaler(MODEL, device="cpu", precision="fp32", resize="any")
    client = make_client(loader=lambda name, precision: shrinking)
    path = corpus[400, 300]
    assert shrinking.check((400, 300)).ok and shrinking.upscale(path).size == (128, 128)
    response = client.post("/v1/upscale?resize=true", files={"image": (path.name, path.read_bytes(), "image/png")})
    assert response.status_code == 200
    exact = size_verdict(8, 8, model_facts(zoo.get_entry(MODEL)), Resize.EXACT, name="x")
    assert exact.code == "not_exact_size" and "takes exactly 16x16" in exact.sentence
    # the resize-source limit is part of the policy: a huge square is refused before any resize
    huge = size_verdict(5000, 5000, model_facts(zoo.get_entry(MODEL)), Resize.ANY, name="x")
    assert huge.code == "resize_too_large" and "5000x5000" in huge.sentence and "2048x2048" in huge.sentence


def test_face_rule_is_one_sentence_for_the_cli_the_server_and_the_api(glyphs, corpus, make_client, capsys):
    verdict = face_model_verdict(glyphs.facts)
    assert verdict.code == "not_a_face_model" and "glean_ffhq_16x" in verdict.sentence
    with pytest.raises(Refusal) as err:
        glyphs.upscale_photo(corpus[16, 16])
    assert err.value.sentence == verdict.sentence
    response = make_client(loader=lambda name, precision: glyphs).post(
        "/v1/upscale?faces=true", content=corpus[16, 16].read_bytes())
    assert response.status_code == 422 and response.json()["error"] == {"code": verdict.code,
                                                                        "message": verdict.sentence}
    assert main(["upscale", "--faces", "--model", MODEL, str(corpus[16, 16]), "--quiet"]) == 2
    assert f"error: {verdict.sentence}" in capsys.readouterr().err
    unknown = face_model_verdict(ModelFacts("mine.pth", 64))
    assert unknown.code == "face_model_unknown" and face_model_verdict(ModelFacts("mine.pth", 64), vouched=True).ok


def test_broken_files_fail_the_same_way_and_never_stop_the_others(corpus, tmp_path, capsys):
    folder = corpus[16, 16].parent
    rc = main(["upscale", str(folder), "-o", str(tmp_path / "out"), "--quiet", "--device", "cpu"])
    err = capsys.readouterr().err
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert rc == 1
    assert written == sorted(f"{corpus[s].stem}_x8.png" for s, v in CORPUS.items() if v == "ok")
    assert "failed: cannot read image" in err and "broken.png" in err
    assert err.count("refused: ") == sum(v != "ok" for v in CORPUS.values())
    assert "5 written, 0 skipped (exist), 3 refused, 1 failed" in err
    # a rerun skips every output and still names the bad inputs: exit 1 again
    assert main(["upscale", str(folder), "-o", str(tmp_path / "out"), "--quiet", "--device", "cpu"]) == 1
    assert "0 written, 5 skipped (exist), 3 refused, 1 failed" in capsys.readouterr().err


def test_the_default_model_is_one_answer_even_with_release_weights_cached(tmp_path, monkeypatch, make_client,
                                                                          corpus, capsys):
    monkeypatch.setenv("GLEANSR_HOME", str(tmp_path / "home"))
    cat = zoo.get_entry("glean_cat_8x")
    cached = tmp_path / "home" / "weights" / cat.weights.filename
    for with_cat in (False, True):
        if with_cat:
            cached.parent.mkdir(parents=True)
            cached.write_bytes(b"a cached release file")
        assert zoo.default_model().name == MODEL
        body = make_client().get("/v1/models").json()
        assert body["default"] == MODEL
        main(["upscale", str(corpus[16, 16]), "-o", str(tmp_path / f"o{with_cat}"), "--quiet", "--device", "cpu"])
        assert f"using the default {MODEL}" in capsys.readouterr().err


def test_the_batch_pipeline_reports_each_item_in_types(glyphs, corpus, tmp_path):
    from gleansr.pipeline.batch import Naming, upscale_files

    seen = []
    report = upscale_files([str(corpus[16, 16].parent)], glyphs, Naming("_sr", tmp_path), on_item=seen.append)
    assert report.items == seen or sorted(map(str, report.items)) == sorted(map(str, seen))
    by_status = {s: report.count(s) for s in Status}
    assert by_status == {Status.DONE: 5, Status.SKIPPED: 0, Status.REFUSED: 3, Status.FAILED: 1}
    assert report.exit_code == 1
    codes = {Path(i.source).name: i.code for i in report.items}
    assert codes["broken.png"] == "unreadable" and codes["in_400x300.png"] == "input_too_large"
    notes = {Path(i.source).name: [k for k, _ in i.notes] for i in report.items if i.status is Status.DONE}
    assert notes["in_16x200.png"] == ["cropped"] and notes["in_8x8.png"] == ["resized"]
    assert notes["in_12x15.png"] == ["cropped", "resized"] and notes["in_16x16.png"] == []
    row = next(i for i in report.items if i.source.endswith("in_400x300.png")).to_row()
    assert row["status"] == "refused" and "400x300" in row["message"]
    with pytest.raises(GleanError, match="does not exist"):
        upscale_files([str(tmp_path / "nothing_here")], glyphs)


def test_sharding_is_a_parameter_of_the_pipeline(glyphs, corpus, tmp_path):
    from gleansr.pipeline.batch import Naming, upscale_files

    folder = [str(corpus[16, 16].parent)]
    shares = [upscale_files(folder, glyphs, Naming("_sr", tmp_path / f"r{r}"), shard_of=(r, 3)) for r in range(3)]
    sources = [i.source for share in shares for i in share.items]
    assert sorted(sources) == sorted(set(sources)) and len(sources) == len(CORPUS) + 1


def test_output_format_note_when_the_asked_format_cannot_hold_the_image(glyphs, tmp_path):
    from gleansr.pipeline.batch import Naming, upscale_files

    rgba = tmp_path / "in" / "a.png"
    rgba.parent.mkdir()
    Image.fromarray(np.full((16, 16, 4), 200, np.uint8)).save(rgba)
    report = upscale_files([str(rgba)], glyphs, Naming("_x8", tmp_path / "out", "jpg"))
    (item,) = report.items
    assert item.output.endswith("a_x8.png") and item.notes[0][0] == "format" and ".jpg" in item.notes[0][1]


def test_a_memory_error_in_the_model_fails_its_batch_only(glyphs, corpus, tmp_path, monkeypatch):
    from gleansr.pipeline.batch import Naming, upscale_files

    calls = []

    def flaky(batch):
        calls.append(len(batch))
        if len(calls) == 1:
            raise MemoryError("out of memory")
        return Upscaler.upscale_prepared(glyphs, batch)

    monkeypatch.setattr(glyphs, "upscale_prepared", flaky)
    report = upscale_files([str(corpus[16, 16].parent)], glyphs, Naming("_m", tmp_path), batch_size=2)
    failed = [i for i in report.items if i.code == "model_failed"]
    assert len(failed) == 2 and report.count(Status.DONE) == 3



def test_a_full_disk_stops_the_batch_with_every_input_accounted_for(glyphs, corpus, tmp_path, monkeypatch):
    import errno

    from gleansr.pipeline import batch

    written, real = [], batch.save_loaded

    def filling(path, image, overwrite=False):
        if len(written) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(Path(path))
        return real(path, image, overwrite)

    monkeypatch.setattr(batch, "save_loaded", filling)
    report = batch.upscale_files([str(corpus[16, 16].parent)], glyphs, batch.Naming("_d", tmp_path), batch_size=2)
    assert report.stopped and "no space left on the disk" in report.stopped
    assert len(report.items) == len(CORPUS) + 1  # every input has its line
    assert report.count(Status.DONE) == 2 and [i.code for i in report.items].count("no_space") == 1
    assert {i.code for i in report.items if i.status is Status.FAILED} >= {"no_space", "not_run"}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in written)
