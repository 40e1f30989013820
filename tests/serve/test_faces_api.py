"""faces=true: a whole photo through a face model (a tiny one built here, as the released face
weights cannot be downloaded in tests), its faces counted in a header; refusals with stable codes."""
from __future__ import annotations

import importlib.util
import io

import numpy as np
import pytest
import skimage.data
from PIL import Image

from gleansr.pipeline.faces import bicubic_upscale
from gleansr.serve import app as serve_app
from gleansr.serve.catalog import ModelInfo, model_catalog
from gleansr.serve.engine import Engine

from serve_helpers import (MODEL, Gate, assert_error, cached_loader, glyph_upscaler, make_client,  # noqa: F401
                           png_bytes, sample, sample_paths)

FACE = "tiny_faces"
ASTRONAUT = skimage.data.astronaut()  # 512x512, one face
needs_dlib = pytest.mark.skipif(not all(importlib.util.find_spec(m) for m in ("dlib", "face_recognition_models")),
                                reason="the faces extra (dlib, face_recognition_models) is not installed")


@pytest.fixture
def face_client(make_client, cached_loader, tiny_glean, monkeypatch):
    """A server whose catalog also offers FACE, a tiny GLEAN (8 -> 32) declared a face model."""
    from gleansr.pipeline.upscaler import Upscaler

    face = Upscaler(tiny_glean, device="cpu", face_model=True, resize="any")
    catalog = {**model_catalog(), FACE: ModelInfo(FACE, "faces", "aligned face crops, 8x8", 8, 32, True, False,
                                                  face_model=True)}
    monkeypatch.setattr(serve_app, "model_catalog", lambda: catalog)
    return make_client(loader=lambda name, precision: face if name == FACE else cached_loader(name, precision))


def decoded(response) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"))


@needs_dlib
def test_faces_true_gives_the_whole_photo_with_its_face_restored(face_client):
    response = face_client.post(f"/v1/upscale?model={FACE}&faces=true", content=png_bytes(ASTRONAUT))
    assert response.status_code == 200, response.text
    h = response.headers
    assert (h["x-gleansr-faces"], h["x-gleansr-scale"], h["x-gleansr-output-size"]) == ("1", "4", "2048x2048")
    got = decoded(response)
    background = np.rint(bicubic_upscale(ASTRONAUT.astype(np.float32) / 255, 4) * 255)
    assert got.shape == (2048, 2048, 3)
    assert np.abs(got[1800:].astype(int) - background[1800:]).max() <= 1  # far from the face: bicubic
    assert np.abs(got[400:600, 800:1000].astype(int) - background[400:600, 800:1000]).mean() > 5  # the face: model


@needs_dlib
def test_faces_and_scale_come_as_form_fields_too(face_client):
    coffee = skimage.data.coffee()  # 600x400, no face
    response = face_client.post("/v1/upscale", data={"model": FACE, "faces": "yes", "scale": "2"},
                                files={"image": ("coffee.png", png_bytes(coffee), "image/png")})
    assert response.status_code == 200, response.text
    assert (response.headers["x-gleansr-faces"], response.headers["x-gleansr-output-size"]) == ("0", "1200x800")
    assert np.abs(decoded(response).astype(int) - np.rint(bicubic_upscale(coffee / 255, 2) * 255)).max() <= 1


def test_faces_true_with_another_model_is_refused_naming_the_face_models(face_client, sample):
    message = assert_error(face_client.post(f"/v1/upscale?model={MODEL}&faces=true", content=sample),
                           422, "not_a_face_model")
    assert message.startswith(f"{MODEL} (glyphs: text glyphs") and "is not a face model" in message
    assert "glean_ffhq_16x" in message and "glean_in128out1024" in message


@pytest.mark.parametrize("query, says", [
    ("faces=maybe", "faces must be true or false"),
    ("faces=true&scale=0", "scale must be an integer of at least 1"),
    ("faces=true&scale=2.5", "scale must be an integer of at least 1"),
    (f"model={MODEL}&scale=4", f"scale: {MODEL} upscales by 8; other scales need faces=true"),
])
def test_bad_faces_parameters_are_refused(face_client, sample, query, says):
    query = query if "model=" in query else f"model={FACE}&{query}"
    assert says in assert_error(face_client.post(f"/v1/upscale?{query}", content=sample), 400, "bad_parameter")


def test_the_pixel_limits_still_apply_to_whole_photos(face_client):
    photo = png_bytes(ASTRONAUT)
    message = assert_error(face_client.post(f"/v1/upscale?model={FACE}&faces=true&scale=20", content=photo),
                           413, "too_many_pixels")
    assert "upscaled by 20 would be 10240x10240" in message and "ask a smaller scale" in message
    assert face_client.post(f"/v1/upscale?model={FACE}&faces=true", content=png_bytes(np.zeros((4100, 4100, 3),
                            np.uint8))).json()["error"]["code"] == "too_many_pixels"


def test_faces_without_the_faces_extra_is_one_sentence(face_client, monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)  # neither dlib nor its models
    message = assert_error(face_client.post(f"/v1/upscale?model={FACE}&faces=true", content=png_bytes(ASTRONAUT)),
                           501, "faces_unavailable")
    assert "pip install 'gleansr[faces]'" in message


def test_models_say_which_are_face_models(face_client):
    models = {m["name"]: m["face_model"] for m in face_client.get("/v1/models").json()["models"]}
    assert models[MODEL] is False and models["glean_ffhq_16x"] is True and models[FACE] is True


class PhotoGate(Gate):
    """The gate, also counting whole photos (which must run alone)."""

    def upscale_photo(self, photo, scale):
        self.batches.append(("photo", scale))
        return photo


def test_a_whole_photo_runs_alone_never_in_a_batch(glyph_upscaler):
    gate = PhotoGate(glyph_upscaler)
    engine = Engine(gate.load, device="test-photo", max_queue=8, max_batch=4)
    try:
        image = np.zeros((16, 16, 3), np.float32)
        engine.submit(MODEL, "fp32", image)
        assert gate.entered.wait(30)
        jobs = [engine.submit(MODEL, "fp32", image, photo_scale=s) if s else engine.submit(MODEL, "fp32", image)
                for s in (None, 3, None)]
        gate.open.set()
        for job in jobs:
            job.future.result(60)
        assert gate.batches == [1, 2, ("photo", 3)]
        assert [j.batch_size for j in jobs] == [2, 1, 2]
    finally:
        gate.open.set()
        engine.close()
