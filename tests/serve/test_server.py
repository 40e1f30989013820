"""`gleansr serve` as a real process: start-up, loopback, load with a full queue, nothing left behind."""
from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request

from PIL import Image

from gleansr.serve.config import is_loopback
from serve_helpers import sample, sample_paths, server  # noqa: F401


def post(url: str, data: bytes, timeout: float = 120) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url + "/v1/upscale", data=data, headers={"Content-Type": "image/png"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def test_real_server_answers_on_loopback(server, sample):
    url, _ = server
    health = json.loads(urllib.request.urlopen(url + "/healthz", timeout=10).read())
    assert health["status"] == "ok" and health["device"] == "cpu"
    status, headers, body = post(url, sample)
    assert status == 200 and Image.open(io.BytesIO(body)).size == (128, 128)
    host, port = url.removeprefix("http://").split(":")
    assert host == "127.0.0.1"
    with socket.create_connection((host, int(port)), timeout=5) as s:  # a client that goes away at once
        s.sendall(b"POST /v1/upscale HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(sample) + sample)


def test_load_with_a_full_queue(server, sample):
    """Many clients at once against --max-queue 2: some 503 with Retry-After, all others right."""
    url, tmp = server
    clients = 24
    barrier = threading.Barrier(clients)
    answers = []

    def client():
        barrier.wait()
        answers.append(post(url, sample))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    statuses = sorted(status for status, _, _ in answers)
    assert len(answers) == clients and set(statuses) <= {200, 503}, statuses
    assert statuses.count(503) >= 1 and statuses.count(200) >= 2, statuses
    for status, headers, body in answers:
        if status == 503:
            assert json.loads(body)["error"]["code"] == "queue_full" and int(headers["retry-after"]) >= 1
        else:
            assert Image.open(io.BytesIO(body)).size == (128, 128)
    health = json.loads(urllib.request.urlopen(url + "/healthz", timeout=10).read())
    assert health["queue"]["waiting"] == 0 and health["stats"]["rejected"] == statuses.count(503)
    private = [p for p in tmp.iterdir() if p.name.startswith("gleansr-serve-")]
    assert len(private) == 1 and list(private[0].iterdir()) == []


def test_serve_command_imports_nothing_heavy():
    code = ("import sys, gleansr.cli; before = set(sys.modules); import gleansr.commands.serve; "
            "new = set(sys.modules) - before; "
            "print(sorted(m for m in new if m.split('.')[0] in ('torch', 'fastapi', 'uvicorn', 'starlette', 'numpy')"
            " or m.startswith('gleansr.serve.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_serve_help_and_bad_flags():
    help_text = subprocess.run([sys.executable, "-m", "gleansr.cli", "serve", "--help"], capture_output=True,
                               text=True, check=True).stdout
    assert "--host" in help_text and "127.0.0.1" in help_text and "--cors-origin" in help_text
    bad = subprocess.run([sys.executable, "-m", "gleansr.cli", "serve", "--max-queue", "0"], capture_output=True,
                         text=True)
    assert bad.returncode == 2 and bad.stderr.strip() == "gleansr: error: --max-queue must be at least 1, got 0"
    typo = subprocess.run([sys.executable, "-m", "gleansr.cli", "serve", "--model", "glean_glyph_8x"],
                          capture_output=True, text=True)
    assert typo.returncode == 2 and "did you mean 'glean_glyphs_8x'?" in typo.stderr


def test_only_loopback_is_quiet():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("example.org")
