"""The engine: batching, one run per device, cancelled jobs dropped, an LRU of loaded models."""
from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from PIL import Image

from gleansr.serve.engine import Engine, QueueFull

from serve_helpers import MODEL, Gate, glyph_upscaler, make_client, sample, sample_paths  # noqa: F401


def glyphs(sample_paths, n):
    return [np.asarray(Image.open(p).convert("RGB"), np.float32) / 255 for p in sample_paths[:n]]


def wait_until(condition, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.fixture
def gated(glyph_upscaler):
    gate = Gate(glyph_upscaler)
    engine = Engine(gate.load, device="test-gated", max_queue=8, max_batch=4)
    yield gate, engine
    gate.open.set()
    engine.close()


def test_jobs_waiting_together_run_as_one_batch_with_the_same_results(gated, glyph_upscaler, sample_paths):
    gate, engine = gated
    images = glyphs(sample_paths, 4)
    first = engine.submit(MODEL, "fp32", images[0])
    assert gate.entered.wait(30)
    rest = [engine.submit(MODEL, "fp32", im) for im in images[1:]]
    gate.open.set()
    results = [job.future.result(60) for job in [first, *rest]]
    assert gate.batches == [1, 3] and [j.batch_size for j in rest] == [3, 3, 3]
    for image, result in zip(images, results):
        assert np.allclose(result, glyph_upscaler.upscale(image), atol=1e-4)


def test_batches_never_mix_models_or_precisions(gated, sample_paths):
    gate, engine = gated
    image = glyphs(sample_paths, 1)[0]
    engine.submit(MODEL, "fp32", image)
    assert gate.entered.wait(30)
    jobs = [engine.submit(MODEL, p, image) for p in ("fp32", "bf16", "fp32")]
    gate.open.set()
    for job in jobs:
        job.future.result(60)
    assert gate.batches == [1, 2, 1]
    assert [j.batch_size for j in jobs] == [2, 1, 2]


def test_a_cancelled_job_leaves_the_queue_and_never_runs(gated, sample_paths):
    gate, engine = gated
    image = glyphs(sample_paths, 1)[0]
    running = engine.submit(MODEL, "fp32", image)
    assert gate.entered.wait(30)
    queued = engine.submit(MODEL, "fp32", image)
    assert engine.pending() == 1
    engine.cancel(queued)
    assert engine.pending() == 0 and engine.stats["dropped"] == 1 and queued.future.cancelled()
    gate.open.set()
    running.future.result(60)
    time.sleep(0.1)
    assert gate.batches == [1]


def test_the_queue_is_bounded(glyph_upscaler, sample_paths):
    gate = Gate(glyph_upscaler)
    engine = Engine(gate.load, device="test-bounded", max_queue=2)
    try:
        image = glyphs(sample_paths, 1)[0]
        engine.submit(MODEL, "fp32", image)
        assert gate.entered.wait(30)
        engine.submit(MODEL, "fp32", image)
        engine.submit(MODEL, "fp32", image)
        with pytest.raises(QueueFull):
            engine.submit(MODEL, "fp32", image)
        assert engine.stats["rejected"] == 1
    finally:
        gate.open.set()
        engine.close()


def test_one_model_run_at_a_time_per_device(glyph_upscaler, sample_paths):
    gate = Gate(glyph_upscaler)
    first = Engine(gate.load, device="test-shared")
    second = Engine(lambda name, precision: glyph_upscaler, device="test-shared")
    try:
        image = glyphs(sample_paths, 1)[0]
        held = first.submit(MODEL, "fp32", image)
        assert gate.entered.wait(30)
        other = second.submit(MODEL, "fp32", image)
        time.sleep(0.3)
        assert not other.future.done()  # waits for the device although its own worker is free
        gate.open.set()
        held.future.result(60)
        other.future.result(60)
    finally:
        gate.open.set()
        first.close()
        second.close()


def test_least_recently_used_model_is_unloaded(glyph_upscaler, sample_paths):
    loads = []

    def loader(name, precision):
        loads.append(precision)
        return glyph_upscaler

    engine = Engine(loader, device="test-lru", max_models=2)
    try:
        image = glyphs(sample_paths, 1)[0]
        for precision in ("a", "b", "a", "c", "b", "a"):
            engine.submit(MODEL, precision, image).future.result(60)
        assert loads == ["a", "b", "c", "b", "a"]
        assert engine.loaded() == [f"{MODEL} (b)", f"{MODEL} (a)"]
    finally:
        engine.close()


def test_a_client_that_disconnects_leaves_no_job_and_no_files(make_client, glyph_upscaler, sample):
    """Drives the ASGI app directly: the body arrives, then the client goes away while queued."""
    gate = Gate(glyph_upscaler)
    client = make_client(loader=gate.load)
    app, engine = client.app, client.app.state.engine
    engine.submit(MODEL, "fp32", np.zeros((16, 16, 3), np.float32))  # holds the worker
    assert gate.entered.wait(30)
    messages = [{"type": "http.request", "body": sample, "more_body": False}]
    sent = []

    async def receive():
        if messages:
            return messages.pop(0)
        await asyncio.sleep(0.3)  # long enough for the request to be queued
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/upscale", "raw_path": b"/v1/upscale", "query_string": b"", "root_path": "",
             "headers": [(b"host", b"127.0.0.1:8000"), (b"content-type", b"image/png"),
                             (b"content-length", str(len(sample)).encode())],
             "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000)}
    asyncio.run(app(scope, receive, send))
    assert engine.stats["disconnected"] == 1 and engine.stats["dropped"] == 1 and engine.pending() == 0
    gate.open.set()
    wait_until(lambda: engine.stats["done"] == 1)
    assert gate.batches == [1]
    assert list(app.state.temp_root.iterdir()) == []
