"""The bad-input corpus gets the same answers over HTTP as from `gleansr upscale`."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from gleansr.cli import main
from gleansr.pipeline.images import load_image, save_image

from serve_helpers import MODEL, cached_loader, client, make_client, sample, sample_paths  # noqa: F401


def _corpus(folder, glyph_png: bytes) -> dict[str, bytes | None]:
    """Every awkward input a user meets; files that need a writer are written into ``folder``."""
    rng = np.random.default_rng(0)
    colour = rng.random((16, 16, 3)).astype(np.float32)
    files = {"truncated.png": glyph_png[: len(glyph_png) // 2], "empty.png": b"",
             "notes.png": b"shopping list: milk, eggs\n", "glyph.png": glyph_png}
    save_image(folder / "deep_gray.png", colour[..., :1].repeat(3, 2), bit_depth=16, grayscale=True)
    save_image(folder / "deep_colour.png", colour, bit_depth=16)
    save_image(folder / "rgba.png", colour, alpha=colour[..., 0])
    save_image(folder / "gray.png", colour, grayscale=True)
    rotated = Image.fromarray((colour[:12] * 255).astype(np.uint8))  # 16 wide, 12 high, shown turned
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated.save(folder / "rotated.jpg", exif=exif, quality=95)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def _cli_answers(inputs, out, capsys) -> str:
    paths = sorted(str(p) for p in inputs.iterdir())
    main(["upscale", *paths, "-o", str(out), "--model", MODEL, "--ext", "png", "--device", "cpu", "--precision", "fp32", "--quiet"])
    return capsys.readouterr().err


def test_http_answers_like_the_cli(tmp_path, client, sample, capsys):
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    corpus = _corpus(inputs, sample)
    cli_err = _cli_answers(inputs, out, capsys)
    for name, data in sorted(corpus.items()):
        response = client.post("/v1/upscale", files={"image": (name, data, "application/octet-stream")})
        written = out / (name.rsplit(".", 1)[0] + "_x8.png")
        if not written.exists():  # the CLI refused it: the same sentence, with the name for the path
            assert 400 <= response.status_code < 500, name
            message = response.json()["error"]["message"]
            assert message.replace(name, str(inputs / name)) in cli_err, (name, message, cli_err)
            continue
        assert response.status_code == 200, (name, response.text)
        cli, http = load_image(written), load_image(_saved(tmp_path, name, response.content))
        assert (http.bit_depth, http.grayscale, http.alpha is None) == (cli.bit_depth, cli.grayscale,
                                                                         cli.alpha is None), name
        assert http.rgb.shape == cli.rgb.shape == (128, 128, 3)
        assert np.abs(http.rgb - cli.rgb).max() <= 2 / 255, name
        if cli.alpha is not None:
            assert np.abs(http.alpha - cli.alpha).max() <= 2 / 255, name
    codes = {n: client.post("/v1/upscale", content=d).json()["error"]["code"]
             for n, d in corpus.items() if n in ("truncated.png", "empty.png", "notes.png")}
    assert codes == {"truncated.png": "invalid_image", "empty.png": "empty_upload", "notes.png": "not_an_image"}


def _saved(tmp_path, name, content: bytes):
    path = tmp_path / f"http_{name}.png"
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P"])
def test_modes_keep_their_kind(client, mode):
    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (16, 16, 4), np.uint8), "RGBA")
    image = (image if "A" in mode else image.convert("RGB")).convert(mode)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    response = client.post("/v1/upscale", content=buf.getvalue())
    assert response.status_code == 200
    result = Image.open(io.BytesIO(response.content))
    assert result.size == (128, 128)
    assert ("A" in result.getbands()) == (mode in ("LA", "RGBA"))
    assert (result.mode in ("L", "LA")) == (mode in ("L", "LA"))
