"""The HTTP API in process: every endpoint, every error code, the page, CORS, temporary files."""
from __future__ import annotations

import io
import struct
import threading
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from gleansr.serve.errors import CODES

from serve_helpers import (MODEL, Gate, assert_error, cached_loader, client, glyph_upscaler, make_client,  # noqa: F401
                           png_bytes, sample, sample_paths)


def test_healthz(client):
    body = client.get("/healthz").json()
    assert body["status"] == "ok" and body["queue"] == {"waiting": 0, "max": 16}


def test_models_lists_the_zoo_with_domains_and_sizes(client):
    body = client.get("/v1/models").json()
    glyphs = next(m for m in body["models"] if m["name"] == MODEL)
    assert glyphs | {"input_kind": None} == {"name": MODEL, "domain": "glyphs", "input_kind": None, "in_size": 16,
                                             "out_size": 128, "scale": 8, "present": True, "downloadable": False,
                                             "face_model": False}
    assert body["default"] == MODEL and "fp32" in body["precisions"]
    assert {m["domain"] for m in body["models"]} >= {"glyphs", "cats", "faces"}


def test_upscale_raw_body_gives_the_upscalers_png(client, sample, glyph_upscaler):
    response = client.post("/v1/upscale", content=sample, headers={"Content-Type": "image/png"})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    got = np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"))
    want = np.asarray(glyph_upscaler.upscale(Image.open(io.BytesIO(sample))).convert("RGB"))
    assert got.shape == (128, 128, 3) and np.abs(got.astype(int) - want).max() <= 1
    h = response.headers
    assert (h["x-gleansr-model"], h["x-gleansr-scale"], h["x-gleansr-input-size"], h["x-gleansr-output-size"]) == \
        (MODEL, "8", "16x16", "128x128")
    assert [part.split(";")[0] for part in h["server-timing"].split(", ")] == ["decode", "queue", "run", "encode",
                                                                               "total"]


def test_upscale_multipart_takes_form_parameters(client, sample):
    response = client.post("/v1/upscale", files={"image": ("../../etc/glyph.png", sample, "text/plain")},
                           data={"model": MODEL, "precision": "bf16"})
    assert response.status_code == 200, response.text
    assert response.headers["x-gleansr-precision"] == "bf16"
    assert Image.open(io.BytesIO(response.content)).size == (128, 128)


def test_openapi_and_docs(client):
    spec = client.get("/openapi.json").json()
    assert {"/v1/upscale", "/v1/models", "/healthz"} <= set(spec["paths"])
    body = spec["paths"]["/v1/upscale"]["post"]["requestBody"]["content"]
    assert {"application/octet-stream", "multipart/form-data"} <= set(body)
    assert client.get("/docs").status_code == 404  # its scripts would come from a CDN: off


def test_page_and_its_files_are_served_with_a_strict_policy(client):
    page = client.get("/")
    assert page.status_code == 200 and '<script src="/static/app.js"' in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing from the internet
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name in ("app.js", "style.css"):
        asset = client.get(f"/static/{name}")
        assert asset.status_code == 200 and "https://" not in asset.text
    assert_error(client.get("/static/../pyproject.toml"), 404, "not_found")


@pytest.mark.parametrize("query, code", [("precision=fp64", "bad_parameter"), ("resize=maybe", "bad_parameter"),
                                         ("model=glean_glyphs_8", "unknown_model")])
def test_bad_parameters(client, sample, query, code):
    message = assert_error(client.post(f"/v1/upscale?{query}", content=sample), CODES[code], code)
    if code == "unknown_model":
        assert "did you mean 'glean_glyphs_8x'?" in message


def test_unreadable_uploads(client, sample):
    assert_error(client.post("/v1/upscale", content=b""), 400, "empty_upload")
    assert "truncated" in assert_error(client.post("/v1/upscale", content=sample[:100]), 400, "invalid_image")
    text = client.post("/v1/upscale", files={"image": ("photo.png", b"just some text\n", "image/png")})
    assert assert_error(text, 415, "not_an_image") == "cannot read image photo.png: not an image file Pillow can decode"
    named = client.post("/v1/upscale", content=b"text", headers={"X-Filename": "..%2F..%2F%E6%97%A5%E6%9C%AC.png"})
    assert assert_error(named, 415, "not_an_image").startswith("cannot read image \u65e5\u672c.png: ")
    no_file = client.post("/v1/upscale", files={"model": (None, MODEL)})
    assert_error(no_file, 400, "bad_request")


def test_unknown_route_and_method(client):
    assert_error(client.get("/v2/nothing"), 404, "not_found")
    assert_error(client.get("/v1/upscale"), 405, "method_not_allowed")


def test_model_without_weights(client, sample, monkeypatch, tmp_path):
    monkeypatch.setenv("GLEANSR_HOME", str(tmp_path))
    message = assert_error(client.post("/v1/upscale?model=glean_cat_8x", content=sample), 409, "model_unavailable")
    assert "glean_cat_8x" in message and "--download" in message


def test_upload_limit(make_client, cached_loader, sample):
    client = make_client(loader=cached_loader, max_upload_bytes=len(sample) - 1)
    assert_error(client.post("/v1/upscale", content=sample), 413, "upload_too_large")
    chunks = (sample[i:i + 64] for i in range(0, len(sample), 64))  # no Content-Length: counted while read
    assert_error(client.post("/v1/upscale", content=chunks), 413, "upload_too_large")


def _bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels (a decompression bomb's shape)."""
    raw = png_bytes(np.zeros((1, 1), np.uint8))
    ihdr = struct.pack(">II", width, height) + raw[24:29]
    chunk = b"IHDR" + ihdr
    return raw[:12] + chunk + struct.pack(">I", zlib.crc32(chunk)) + raw[33:]


def test_pixel_limit_is_checked_before_decoding(make_client, cached_loader, sample):
    client = make_client(loader=cached_loader, max_pixels=255)
    assert "16x16" in assert_error(client.post("/v1/upscale", content=sample), 413, "too_many_pixels")
    message = assert_error(client.post("/v1/upscale", content=_bomb_png(200_000, 200_000)), 413, "too_many_pixels")
    assert "200000x200000" in message or "more than" in message


def test_input_larger_than_the_model_is_refused_unless_resize(client):
    big = png_bytes(np.full((64, 48, 3), 255, np.uint8))
    message = assert_error(client.post("/v1/upscale", content=big), 422, "input_too_large")
    assert "48x64" in message and "16x16" in message and "resize=true" in message
    response = client.post("/v1/upscale?resize=true", content=big)
    assert response.status_code == 200 and Image.open(io.BytesIO(response.content)).size == (128, 128)


def test_a_model_file_that_fails_to_load_is_one_sentence(make_client, sample, tmp_path):
    from gleansr.pipeline.upscaler import Upscaler

    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a weights file")
    client = make_client(loader=lambda name, precision: Upscaler(broken, device="cpu"))
    message = assert_error(client.post("/v1/upscale", content=sample), 503, "weights_unavailable")
    assert "broken" not in message and str(tmp_path) not in message  # the server's files stay private


def test_a_crash_in_the_model_run_is_500_without_a_trace(make_client, sample, glyph_upscaler):
    class Crashing(Gate):
        def upscale_batch(self, images, batch_size):
            raise RuntimeError("CUDA error: an illegal memory access was encountered")

    client = make_client(loader=Crashing(glyph_upscaler).load)
    message = assert_error(client.post("/v1/upscale", content=sample), 500, "internal_error")
    assert "CUDA" not in message


def _in_threads(client, n, sample, results):
    def send():
        results.append(client.post("/v1/upscale", content=sample))
    threads = [threading.Thread(target=send) for _ in range(n)]
    for t in threads:
        t.start()
    return threads


def test_full_queue_answers_503_with_retry_after(make_client, glyph_upscaler, sample):
    gate = Gate(glyph_upscaler)
    client = make_client(loader=gate.load, max_queue=1, retry_after_s=3)
    engine = client.app.state.engine
    results = []
    threads = _in_threads(client, 1, sample, results)
    assert gate.entered.wait(30)  # the first request holds the worker
    threads += _in_threads(client, 1, sample, results)
    deadline = time.monotonic() + 30
    while engine.pending() < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    refused = client.post("/v1/upscale", content=sample)
    assert_error(refused, 503, "queue_full")
    assert refused.headers["retry-after"] == "3"
    gate.open.set()
    for t in threads:
        t.join(60)
    assert [r.status_code for r in results] == [200, 200]


def test_time_limit_answers_504_and_drops_the_job(make_client, glyph_upscaler, sample):
    gate = Gate(glyph_upscaler)
    client = make_client(loader=gate.load, timeout_s=0.5)
    results = []
    threads = _in_threads(client, 1, sample, results)  # holds the worker past its own time limit
    assert gate.entered.wait(30)
    assert_error(client.post("/v1/upscale", content=sample), 504, "timeout")
    engine = client.app.state.engine
    assert engine.pending() == 0 and engine.stats["dropped"] == 1
    gate.open.set()
    for t in threads:
        t.join(60)
    assert gate.batches == [1]  # the timed-out request never reached the model


def test_cors_only_when_configured(make_client, cached_loader):
    origin = {"Origin": "http://example.test"}
    plain = make_client(loader=cached_loader).get("/v1/models", headers=origin)
    assert "access-control-allow-origin" not in plain.headers
    allowed = make_client(loader=cached_loader, cors_origins=("http://example.test",))
    assert allowed.get("/v1/models", headers=origin).headers["access-control-allow-origin"] == "http://example.test"


def test_temporary_files_go_with_each_request_and_the_folder_with_the_app(make_client, cached_loader, sample):
    client = make_client(loader=cached_loader)
    root = client.app.state.temp_root
    assert oct(root.stat().st_mode & 0o777) == "0o700"
    client.post("/v1/upscale", content=sample)
    client.post("/v1/upscale", content=b"garbage")
    assert list(root.iterdir()) == []
    client.__exit__(None, None, None)
    assert not root.exists()


def test_model_input_is_what_the_model_saw_on_request_only(client, glyph_upscaler):
    """model_input=true adds the model's input (crop + shrink of a larger upload) for the page's
    before view; without it the answer is as before."""
    import base64

    from gleansr.pipeline.images import image_from_pil, quantize

    scan = Image.fromarray(np.random.default_rng(3).integers(0, 256, (30, 40, 3), np.uint8))
    plain = client.post("/v1/upscale?resize=true", content=png_bytes(np.asarray(scan)))
    assert plain.status_code == 200 and "x-gleansr-model-input" not in plain.headers
    response = client.post("/v1/upscale?resize=true&model_input=true", content=png_bytes(np.asarray(scan)))
    assert response.status_code == 200 and response.content == plain.content
    uri = response.headers["x-gleansr-model-input"]
    assert uri.startswith("data:image/png;base64,")
    seen = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB"))
    want = quantize(glyph_upscaler.prepare(image_from_pil(scan)).image.rgb, 8)  # centre 30x30, bicubic to 16x16
    assert seen.shape == (16, 16, 3) and np.array_equal(seen, want)
    assert_error(client.post("/v1/upscale?model_input=maybe", content=png_bytes(np.asarray(scan))), 400,
                 "bad_parameter")


def test_a_corrupt_weights_file_is_the_servers_problem_not_the_clients(make_client, sample):
    """WeightsError (the cache refused its file) answers 503 with the public sentence: no server path."""
    from gleansr.errors import WeightsError

    def broken(name, precision):
        raise WeightsError("the cached weights file /srv/secret/cache/w.pth is corrupt",
                           "the weights file w.pth on this server is corrupt; its operator must download it again")

    response = make_client(loader=broken).post("/v1/upscale", content=sample)
    message = assert_error(response, 503, "weights_unavailable")
    assert "w.pth" in message and "/srv/secret" not in message
