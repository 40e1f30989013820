"""Issue #23, items 1-5 and 12: `gleansr serve` and the image reader against hostile and unlucky clients.

Where the behaviour lives in the server stack (deadlines, Host checks, slow and vanishing clients,
limits on memory and file descriptors, shutdown) it is checked against a real `gleansr serve`
process on 127.0.0.1 with short deadlines; each test is bounded in time.
"""
from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import resource
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gleansr.commands import serve as serve_command
from gleansr.errors import GleanError, ImageError
from gleansr.pipeline.images import load_image
from gleansr.pipeline.limits import Limits, TooManyPixels, decode_slot
from gleansr.serve.config import ServeConfig
from gleansr.serve.engine import Engine
from serve_helpers import (MODEL, Gate, assert_error, cached_loader, client, free_port,  # noqa: F401
                           glyph_upscaler, make_client, png_bytes, sample, sample_paths)

READ_TIMEOUT = 1.5  # the servers' --read-timeout here


def _png(width: int, height: int, rows: int | None = None) -> bytes:
    """A gray PNG whose header says width x height, of zeros: a few hundred KB that decode to
    width * height bytes (only ``rows`` rows of data when given: a header that lies)."""
    row, block = b"\0" + bytes(width), max(1, 1_000_000 // (width + 1))
    body = zlib.compressobj(9)
    left, parts = height if rows is None else rows, []
    while left > 0:
        parts.append(body.compress(row * min(block, left)))
        left -= block
    data = b"".join(parts) + body.flush()

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) + \
        chunk(b"IDAT", data) + chunk(b"IEND", b"")


class Server:
    """A real `gleansr serve` on a free loopback port, its log in a file; stopped with SIGTERM."""

    def __init__(self, tmp: Path, *flags: str, preexec=None):
        self.port = free_port()
        self.log = tmp / f"serve-{self.port}.log"
        env = {**os.environ, "TMPDIR": str(tmp)}
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gleansr.cli", "serve", "--port", str(self.port), "--device", "cpu",
                 "--read-timeout", str(READ_TIMEOUT), "--log-level", "info", *flags],
                env=env, stdout=out, stderr=subprocess.STDOUT, preexec_fn=preexec)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                urllib.request.urlopen(self.url + "/healthz", timeout=2)
                return
            except OSError:
                time.sleep(0.2)
        self.stop()
        pytest.fail(f"gleansr serve did not start: {self.text()}")

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                timeout: float = 60) -> tuple[int, dict, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            conn.close()

    def healthy_within(self, seconds: float) -> bool:
        try:
            return self.request("GET", "/healthz", timeout=seconds)[0] == 200
        except OSError:
            return False

    def stop(self, timeout: float = 30) -> float:
        """SIGTERM; the seconds the process took to exit."""
        start = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return time.monotonic() - start


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("hostile"), "--max-queue", "8")
    yield srv
    srv.stop()


def _error(answer: tuple[int, dict, bytes], status: int, code: str) -> str:
    got, headers, body = answer
    assert got == status, (got, body[:300])
    assert headers["content-type"] == "application/json"
    error = json.loads(body)["error"]
    assert error["code"] == code and "\n" not in error["message"]
    return error["message"]


def _slow(port: int, head: bytes, trickle: bytes = b"") -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(head + trickle)
    return s


def _closed_by_server(s: socket.socket, within: float) -> bytes | None:
    """What the server sent before closing ``s`` (None if it kept it open ``within`` seconds)."""
    s.settimeout(within)
    got = b""
    try:
        while chunk := s.recv(4096):
            got += chunk
        return got
    except (TimeoutError, socket.timeout):
        return None
    except ConnectionResetError:
        return got


# -- item 4: Host and Origin --------------------------------------------------------------------
def test_dns_rebinding_and_other_sites_are_refused(server, sample):
    own = f"127.0.0.1:{server.port}"
    message = _error(server.request("GET", "/v1/models", headers={"Host": "rebind.evil.example"}),
                     403, "host_not_allowed")
    assert "rebind.evil.example" in message and "--allowed-host" in message
    _error(server.request("POST", "/v1/upscale", sample, {"Host": f"rebind.evil.example:{server.port}",
                                                         "Content-Type": "image/png"}), 403, "host_not_allowed")
    for host in (own, f"localhost:{server.port}", "127.0.0.1"):
        assert server.request("GET", "/v1/models", headers={"Host": host})[0] == 200
    # another site's page posting here (a "simple" cross-site request needs no preflight)
    message = _error(server.request("POST", "/v1/upscale", sample, {
        "Host": own, "Origin": "http://evil.example", "Content-Type": "image/png"}), 403, "origin_not_allowed")
    assert "--cors-origin" in message
    _error(server.request("POST", "/v1/upscale", sample, {"Host": own, "Origin": "null"}), 403, "origin_not_allowed")
    status, headers, body = server.request("POST", "/v1/upscale", sample, {
        "Host": own, "Origin": f"http://{own}", "Content-Type": "image/png"})  # the server's own page
    assert status == 200 and headers["content-type"] == "image/png"
    message = _error(server.request("POST", "/v1/upscale", b"a=1", {
        "Host": own, "Content-Type": "application/x-www-form-urlencoded"}), 415, "unsupported_media_type")
    assert "image/*" in message


def test_allowed_host_and_cors_origin_open_the_doors(make_client, cached_loader, sample):
    client = make_client(loader=cached_loader, allowed_hosts=("gleansr.lan",), cors_origins=("http://app.test",))
    assert client.get("/v1/models", headers={"Host": "gleansr.lan:8000"}).status_code == 200
    assert_error(client.get("/v1/models", headers={"Host": "other.lan"}), 403, "host_not_allowed")
    ok = client.post("/v1/upscale", content=sample, headers={"Origin": "http://app.test", "Content-Type": "image/png"})
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "http://app.test"


def test_which_hosts_name_the_server():
    loopback, everywhere = ServeConfig(host="127.0.0.1"), ServeConfig(host="0.0.0.0", allowed_hosts=("gpu.lan",))
    for host in ("127.0.0.1:8000", "localhost", "LOCALHOST:1", "[::1]:8000", "127.0.0.2"):
        assert loopback.host_allowed(host), host
    for host in ("", "rebind.evil.example", "192.168.1.5:8000", "localhost.evil.example", "127.0.0.1.nip.io"):
        assert not loopback.host_allowed(host), host
    for host in ("192.168.1.5:8000", "[fe80::1]:80", "gpu.lan:8000", "localhost"):
        assert everywhere.host_allowed(host), host
    assert not everywhere.host_allowed("rebind.evil.example:8000")
    assert ServeConfig(host="::1").host_allowed("[::1]:8000")
    assert loopback.origin_allowed("http://127.0.0.1:8000", "127.0.0.1:8000")
    assert not loopback.origin_allowed("http://127.0.0.1:9999", "127.0.0.1:8000")


# -- item 3: slow clients, shutdown ---------------------------------------------------------------
def test_slow_heads_and_slow_uploads_are_cut_off(server, sample):
    heads = [_slow(server.port, b"POST /v1/upscale HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le") for _ in range(10)]
    silent = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(10)]
    bodies = [_slow(server.port, b"POST /v1/upscale HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                                 b"Content-Length: %d\r\n\r\n" % len(sample), sample[:50]) for _ in range(10)]
    assert server.healthy_within(1.0)  # the trickling clients hold connections, not the server
    start = time.monotonic()
    for s in heads + silent:
        assert _closed_by_server(s, READ_TIMEOUT + 5) == b""  # closed without an answer
    for s in bodies:
        answer = _closed_by_server(s, READ_TIMEOUT + 5)
        assert answer is not None and answer.startswith(b"HTTP/1.1 408") and b'"upload_timeout"' in answer
    assert time.monotonic() - start < READ_TIMEOUT + 5
    log = server.text()
    assert log.count("sent no complete request within") >= 20 and log.count("upload not received within") >= 10
    assert "Traceback" not in log


def test_sigterm_with_slow_uploads_exits_within_its_deadline(tmp_path, sample):
    srv = Server(tmp_path, "--shutdown-timeout", "2", "--read-timeout", "60")
    slow = [_slow(srv.port, b"POST /v1/upscale HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                            b"Content-Length: 100000\r\n\r\n", b"x" * 100) for _ in range(3)]
    time.sleep(0.5)
    took = srv.stop(timeout=20)
    assert srv.proc.returncode is not None and took < 2 + 5, took
    for s in slow:
        s.close()


def test_file_descriptor_exhaustion_is_quiet_and_recovers(tmp_path, sample):
    def few_fds():
        resource.setrlimit(resource.RLIMIT_NOFILE, (100, 100))

    srv = Server(tmp_path, preexec=few_fds)
    try:
        idle = []
        for _ in range(120):  # more than the server has descriptors
            try:
                idle.append(socket.create_connection(("127.0.0.1", srv.port), timeout=5))
            except OSError:
                break
        time.sleep(READ_TIMEOUT + 1)  # the head deadline frees them
        for s in idle:
            s.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not srv.healthy_within(2):
            time.sleep(0.3)
        # an upload takes descriptors again (its temporary file): answered, here with its one sentence
        _error(srv.request("POST", "/v1/upscale", _truncated("PNG"), {"Content-Type": "image/png"}),
               400, "invalid_image")
        log = srv.text()
        assert len(log.splitlines()) < 200 and "Traceback" not in log, log[-3000:]
        assert "closing new ones" in log
    finally:
        srv.stop()


# -- item 2: multipart ------------------------------------------------------------------------------
def test_many_part_uploads_do_not_block_the_server(server):
    boundary = b"x"
    body = (b"--x\r\n\r\n\r\n" * 200_000) + b"--x--\r\n"  # 2 MB of empty parts
    headers = {"Content-Type": "multipart/form-data; boundary=x"}
    answers, stalls = [], []

    def post():
        answers.append(server.request("POST", "/v1/upscale", body, headers))

    threads = [threading.Thread(target=post) for _ in range(4)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        start = time.monotonic()
        assert server.healthy_within(5)
        stalls.append(time.monotonic() - start)
    for t in threads:
        t.join(60)
    assert max(stalls) < 2, stalls
    for answer in answers:
        assert "16 parts" in _error(answer, 413, "too_many_parts")
    assert boundary


# -- item 5: disconnects, wording, flags ------------------------------------------------------------
def test_clients_that_vanish_mid_upload_are_one_line_each(server, sample):
    before = server.text()
    for _ in range(20):
        s = _slow(server.port, b"POST /v1/upscale HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                               b"Content-Length: 100000\r\n\r\n", b"x" * 1000)
        s.close()
    time.sleep(1.0)
    new = server.text()[len(before):]
    assert new.count("went away during its upload") == 20, new[-2000:]
    assert "Traceback" not in new and "ClientDisconnect" not in new
    assert len(new.splitlines()) <= 25


def _truncated(fmt: str) -> bytes:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, format=fmt)
    return buf.getvalue()[: buf.tell() // 2]


def test_wording_sizes_truncation_and_echoes(make_client, cached_loader, client, sample):
    for fmt in ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF"):  # every truncated format: the same code
        assert_error(client.post("/v1/upscale", content=_truncated(fmt)), 400, "invalid_image")
    assert_error(client.post("/v1/upscale", content=b"plain text"), 415, "not_an_image")
    client = make_client(loader=cached_loader, max_pixels=1000)
    bomb = _png(16_777_217, 16_777_217, rows=1)  # over twice the limit (and Pillow's): its true size
    message = assert_error(client.post("/v1/upscale", content=bomb), 413, "too_many_pixels")
    assert "16777217x16777217" in message and "1,000 pixels" in message
    huge_name = "m" * 2_000_000
    response = client.post("/v1/upscale", files={"image": ("a.png", sample, "image/png")}, data={"model": huge_name})
    message = assert_error(response, 404, "unknown_model")
    assert len(response.content) < 500 and "2,000,000 characters" in message
    message = assert_error(client.post("/v1/upscale?precision=" + "p" * 5000, content=sample), 400, "bad_parameter")
    assert len(message) < 300


def _serve(*flags: str) -> int:
    """`gleansr serve FLAGS` in this process, up to where it would start serving."""
    parser = argparse.ArgumentParser()
    serve_command.add_arguments(parser)
    return serve_command.run(parser.parse_args(list(flags)))


def test_every_flag_is_checked_at_start(capsys):
    run = subprocess.run([sys.executable, "-m", "gleansr.cli", "serve", "--max-upload-mb", "nan"],
                         capture_output=True, text=True, timeout=60)  # end to end: one line, exit 2
    assert run.returncode == 2 and run.stderr.startswith("gleansr: error: --max-upload-mb must be")
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    for flags in (("--max-upload-mb", "inf"), ("--max-upload-mb", "-1"), ("--port", "70000"), ("--timeout", "nan"),
                  ("--timeout", "-1"), ("--max-pixels", "-5"), ("--read-timeout", "inf"), ("--max-connections", "0"),
                  ("--shutdown-timeout", "nan"), ("--cors-origin", "evil")):
        with pytest.raises(GleanError, match=flags[0]) as info:
            _serve(*flags)
        assert "\n" not in str(info.value)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        with pytest.raises(GleanError, match=f"port {port} on 127.0.0.1 is in use"):
            _serve("--port", str(port))
    assert "serving on" not in capsys.readouterr().err


# -- item 1: memory ----------------------------------------------------------------------------------
def _vm_size(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmSize")


def test_large_uploads_under_a_memory_limit_get_json_answers(server, sample):
    """16000x1000 uploads with resize=true beside normal ones, the server's address space capped a
    few hundred MB above its working size: every answer is the image or a JSON sentence (503 when
    memory ran out), never a plain-text 500, and the server serves normal requests afterwards."""
    srv = server
    assert srv.request("POST", "/v1/upscale", sample, {"Content-Type": "image/png"})[0] == 200  # model loaded
    before = resource.prlimit(srv.proc.pid, resource.RLIMIT_AS)
    resource.prlimit(srv.proc.pid, resource.RLIMIT_AS, (_vm_size(srv.proc.pid) + 350 * 2**20, before[1]))
    try:
        big = _png(16_000, 1_000)  # 16 megapixels, under every limit: 200 MB per float copy
        answers = []

        def send(body: bytes, query: str) -> None:
            answers.append(srv.request("POST", "/v1/upscale" + query, body, {"Content-Type": "image/png"}))

        threads = [threading.Thread(target=send, args=(big, "?resize=true")) for _ in range(4)]
        threads += [threading.Thread(target=send, args=(sample, "")) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert len(answers) == 8
        for status, headers, body in answers:
            assert status in (200, 503), (status, body[:300])
            if status == 503:
                assert json.loads(body)["error"]["code"] == "out_of_memory" and "retry-after" in headers
        assert sum(status == 503 for status, _, _ in answers) >= 1  # the limit was felt
        assert srv.request("POST", "/v1/upscale", sample, {"Content-Type": "image/png"})[0] == 200
        assert "Traceback" not in srv.text()
    finally:
        resource.prlimit(srv.proc.pid, resource.RLIMIT_AS, before)


def test_a_large_image_is_judged_from_its_header_before_its_decode(client):
    """The size rule answers a 4096x4096 upload before decoding it: this one's pixels are cut
    after one row, and the answer is still the policy's (decoding it would have said truncated)."""
    lying = _png(4096, 4096, rows=1)
    message = assert_error(client.post("/v1/upscale?resize=true", content=lying), 422, "resize_too_large")
    assert message.startswith("upload is 4096x4096")
    assert_error(client.post("/v1/upscale", content=lying), 422, "input_too_large")


def test_large_decodes_share_one_bounded_pool_and_small_ones_never_wait():
    """The server and the batch pipeline take decode slots from one pool: however many threads
    decode large images, at most ``max_decodes`` (each caller's own ceiling) run at once."""
    running, most, lock = [0], [0], threading.Lock()

    def decode(limits: Limits, pixels: int) -> None:
        with decode_slot(limits, pixels):
            with lock:
                running[0] += 1
                most[0] = max(most[0], running[0])
            time.sleep(0.05)
            with lock:
                running[0] -= 1

    two, one = Limits(max_decodes=2), Limits(max_decodes=1)
    threads = [threading.Thread(target=decode, args=(two if i % 2 else one, 4096 * 4096)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert most[0] == 2
    with decode_slot(one, 4096 * 4096):  # a large decode in flight; a 16x16 one does not queue behind it
        small = threading.Thread(target=decode, args=(one, 16 * 16))
        small.start()
        small.join(5)
        assert not small.is_alive()


class _Poisoned(Gate):
    """The real model, except that a batch holding an all-white image runs out of memory."""

    def upscale_batch(self, images, batch_size):
        self.batches.append(len(images))
        if any(np.asarray(im).min() >= 1.0 for im in images):
            raise MemoryError("Unable to allocate 1.50 GiB for an array with shape (16, 1026, 4096, 3)")
        return self.upscaler.upscale_batch(images, batch_size=batch_size)


def test_a_failed_batch_fails_only_its_culprit(glyph_upscaler, sample):
    model = _Poisoned(glyph_upscaler)
    engine = Engine(model.load, max_batch=4, batch_wait_s=0.5)
    try:
        good = np.asarray(Image.open(io.BytesIO(sample)).convert("RGB"), np.float32) / 255
        jobs = [engine.submit(MODEL, "fp32", image) for image in (good, np.ones_like(good), good)]
        outcomes = [job.future.exception(30) or job.future.result() for job in jobs]
    finally:
        engine.close()
    assert model.batches[0] == 3 and engine.stats["split"] == 1  # one pass, then each alone
    assert isinstance(outcomes[1], MemoryError)
    assert outcomes[0].shape == outcomes[2].shape == (128, 128, 3)


def test_out_of_memory_in_the_model_run_is_a_json_503(make_client, glyph_upscaler):
    client = make_client(loader=_Poisoned(glyph_upscaler).load, retry_after_s=2)
    white = png_bytes(np.full((16, 16, 3), 255, np.uint8))
    response = client.post("/v1/upscale", content=white, headers={"Content-Type": "image/png"})
    message = assert_error(response, 503, "out_of_memory")
    assert response.headers["retry-after"] == "2" and "GiB" not in message


# -- item 12: decompression amplification in the reader (the CLI and the batch pipeline) ------------
def test_a_long_strip_is_refused_from_its_header(tmp_path):
    strip = tmp_path / "strip.png"
    strip.write_bytes(_png(16, 5_000_000))  # ~80 KB on disk, 80 MB decoded, under Pillow's own limit
    start = time.monotonic()
    with pytest.raises(TooManyPixels) as info:
        load_image(strip)
    assert time.monotonic() - start < 2
    assert str(info.value) == (f"{strip} is 16x5000000 (80,000,000 pixels), more than the 50,000,000 pixels "
                               "allowed")
    narrow = tmp_path / "narrow.png"
    narrow.write_bytes(_png(2, 20_000))  # few pixels, but a side no photo has
    with pytest.raises(TooManyPixels, match=r"2x20000 \(40,000 pixels\), longer than the 16,384 pixels per side"):
        load_image(narrow)
    assert load_image(narrow, Limits(max_side=20_000)).rgb.shape == (20_000, 2, 3)


def test_the_cli_refuses_both_in_one_line_each_without_pillows_warning(tmp_path):
    """`gleansr upscale` on a 16x5,000,000 strip and a 12k square (beyond Pillow's own limit): one
    line each with the true size, no DecompressionBombWarning, no advice to --resize."""
    (tmp_path / "strip.png").write_bytes(_png(16, 5_000_000))
    (tmp_path / "big.png").write_bytes(_png(12_000, 12_000))
    run = subprocess.run([sys.executable, "-W", "default", "-m", "gleansr.cli", "upscale", "strip.png", "big.png",
                          "-o", "out"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    said = run.stdout + run.stderr
    assert run.returncode == 1, said
    assert "strip.png is 16x5000000 (80,000,000 pixels), more than the 50,000,000 pixels allowed" in said
    assert "big.png is 12000x12000 (144,000,000 pixels), more than the 50,000,000 pixels allowed" in said
    assert "DecompressionBomb" not in said and "--resize" not in said and "Traceback" not in said
    assert not list((tmp_path / "out").glob("*.png"))
    with pytest.raises(ImageError, match=r"12000x12000 \(144,000,000 pixels\), too large for Pillow's"):
        load_image(tmp_path / "big.png", Limits(max_pixels=10**9))  # above Pillow's own limit, which still holds
