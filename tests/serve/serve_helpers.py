"""Fixtures and helpers of the server tests: the bundled glyph model, clients, a real server process,
a gate that holds the worker. Imported by name (pytest puts this folder on sys.path); not a conftest.py,
which would shadow the top-level ``conftest`` module that other tests import from."""
from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="gleansr[serve] is not installed")

from fastapi.testclient import TestClient  # noqa: E402

from gleansr.serve.app import create_app  # noqa: E402
from gleansr.serve.config import ServeConfig  # noqa: E402
from gleansr.serve.errors import CODES  # noqa: E402
import gleansr  # noqa: E402

MODEL = "glean_glyphs_8x"
SAMPLES = Path(gleansr.__file__).resolve().parent / "assets" / "samples"


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def assert_error(response, status: int, code: str) -> str:
    """The answer is the JSON error ``code`` with its status and one sentence (returned)."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code
    assert CODES[code] == status
    message = body["error"]["message"]
    assert message and "\n" not in message and "Traceback" not in message
    return message


@pytest.fixture(scope="session")
def glyph_upscaler():
    """One real Upscaler of the bundled model, shared by the tests that hold the worker."""
    from gleansr.pipeline.upscaler import Upscaler

    return Upscaler(MODEL, device="cpu", precision="fp32", resize="any")


@pytest.fixture(scope="session")
def sample_paths() -> list[Path]:
    return sorted((SAMPLES / "lr").glob("*.png"))


@pytest.fixture(scope="session")
def sample(sample_paths) -> bytes:
    return sample_paths[0].read_bytes()


@pytest.fixture
def make_client():
    """make_client(loader=None, **config) -> a started TestClient; closed after the test."""
    clients = []

    def make(loader=None, **config):
        client = TestClient(create_app(ServeConfig(device="cpu", **config), loader=loader),
                            base_url="http://127.0.0.1:8000")  # a Host the server answers to
        clients.append(client.__enter__())
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture(scope="session")
def cached_loader():
    """The real loader (Upscaler from the zoo on the CPU), each model and precision loaded once."""
    from gleansr.pipeline.upscaler import Upscaler

    cache = {}

    def load(name, precision):
        if (name, precision) not in cache:
            cache[name, precision] = Upscaler(name, device="cpu", precision=precision, resize="any")
        return cache[name, precision]
    return load


@pytest.fixture
def client(make_client, cached_loader):
    return make_client(loader=cached_loader)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real `gleansr serve` subprocess on a free loopback port: (base URL, its TMPDIR)."""
    tmp = tmp_path_factory.mktemp("server")
    port = free_port()
    env = {**os.environ, "TMPDIR": str(tmp)}
    proc = subprocess.Popen([sys.executable, "-m", "gleansr.cli", "serve", "--port", str(port), "--device", "cpu",
                             "--max-queue", "2", "--max-batch", "4", "--log-level", "warning"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            urllib.request.urlopen(url + "/healthz", timeout=2)
            break
        except OSError:
            time.sleep(0.3)
    if proc.poll() is not None:
        pytest.fail(f"gleansr serve exited: {proc.stdout.read()}")
    yield url, tmp
    proc.terminate()
    proc.wait(timeout=30)
    assert not list(tmp.iterdir()), "the server left files in its temporary folder"


class Gate:
    """Wraps the real Upscaler; every model run waits until the test opens the gate."""

    def __init__(self, upscaler):
        self.upscaler = upscaler
        self.open = threading.Event()
        self.entered = threading.Event()
        self.batches: list[int] = []

    def upscale_batch(self, images, batch_size):
        self.batches.append(len(images))
        self.entered.set()
        if not self.open.wait(30):
            raise RuntimeError("the test never opened the gate")
        return self.upscaler.upscale_batch(images, batch_size=batch_size)

    def prepare(self, image, name):
        return self.upscaler.prepare(image, name)

    def load(self, name, precision):
        return self
