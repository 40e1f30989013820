"""Issue #23, items 6-8: the weights cache verifies what it serves, downloads are HTTPS-only and bounded.

Every download here goes to a real HTTP server on 127.0.0.1 that misbehaves on purpose (trickles,
stalls, never ends, sends the wrong bytes); each test is bounded to a few seconds.
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gleansr import hub, zoo
from gleansr.cli import main
from gleansr.errors import WeightsError

GOOD = bytes(range(256)) * 300 + b"the release"
GOOD_SHA = hashlib.sha256(GOOD).hexdigest()
NAME = f"glean_test_20240101-{GOOD_SHA[:8]}.pth"
# no limit but the one a test is about
LOOSE = hub.DownloadLimits(deadline_s=30, read_timeout_s=10, min_bytes_per_s=0, rate_window_s=60)


class Misbehaving(BaseHTTPRequestHandler):
    """``/<mode>/<name>``: good, wrong, trickle, silent, endless, huge, slow_headers, redirect, blob."""

    protocol_version = "HTTP/1.0"

    def do_GET(self):
        mode = self.path.split("/")[1]
        try:
            getattr(self, f"serve_{mode}")()
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _head(self, length: int | None, status: int = 200, **headers):
        self.send_response(status)
        if length is not None:
            self.send_header("Content-Length", str(length))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()

    def _until_stopped(self, step: float):
        while not self.server.stop.wait(step):
            yield

    def serve_good(self):
        self._head(len(GOOD))
        self.wfile.write(GOOD)

    def serve_wrong(self):  # the right length, other bytes
        self._head(len(GOOD))
        self.wfile.write(bytes(reversed(GOOD)))

    def serve_blob(self):  # whatever the test put in server.blob
        self._head(len(self.server.blob))
        self.wfile.write(self.server.blob)

    def serve_trickle(self):  # one byte every 50 ms
        self._head(len(GOOD))
        for i, _ in enumerate(self._until_stopped(0.05)):
            self.wfile.write(GOOD[i : i + 1])
            self.wfile.flush()

    def serve_silent(self):  # a few bytes, then nothing
        self._head(len(GOOD))
        self.wfile.write(GOOD[:10])
        self.wfile.flush()
        self.server.stop.wait(30)

    def serve_endless(self):  # no length, never ends
        self._head(None)
        block = b"\0" * 65536
        for _ in self._until_stopped(0):
            self.wfile.write(block)

    def serve_huge(self):  # announces a terabyte
        self._head(10**12)
        for _ in self._until_stopped(0.01):
            self.wfile.write(b"\0" * 65536)

    def serve_slow_headers(self):  # the status line itself trickles
        for i, _ in enumerate(self._until_stopped(0.05)):
            self.wfile.write(b"HTTP/1.0 200 OK\r\nX-Padding: " if i == 0 else b"a")
            self.wfile.flush()

    def serve_redirect(self):  # to plain http off this machine: must not be followed
        self._head(0, 302, Location=f"http://example.invalid/{NAME}")

    def log_message(self, *args):
        pass


def serving(base: str, wrap=None):
    """A Misbehaving server on 127.0.0.1 (its socket wrapped by ``wrap``, e.g. TLS), until the test ends."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Misbehaving)
    if wrap is not None:
        httpd.socket = wrap(httpd.socket)
    httpd.stop, httpd.blob = threading.Event(), b""
    httpd.base = f"{base}:{httpd.server_port}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield httpd
    httpd.stop.set()
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv(hub.ALLOW_HTTP_LOOPBACK, "1")
    yield from serving("http://127.0.0.1")


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("GLEANSR_HOME", str(tmp_path / "home"))
    folder = tmp_path / "home" / "weights"
    folder.mkdir(parents=True)
    return folder


def source(server, mode: str, name: str = NAME, prefix: str | None = GOOD_SHA[:8], **declared):
    return hub.WeightsSource(name, f"{server.base}/{mode}/{name}", prefix, **declared)


def ended(src, dest, limits, match, within_s):
    """Download ``src`` expecting a refusal matching ``match`` within ``within_s``; nothing may stay."""
    start = time.monotonic()
    with pytest.raises(WeightsError, match=match) as info:
        hub.download(src, dest, progress=False, limits=limits)
    took = time.monotonic() - start
    assert took < within_s, f"took {took:.1f} s"
    assert "\n" not in str(info.value) and "nothing was kept" in str(info.value)
    assert sorted(p.name for p in dest.parent.iterdir()) == []
    return took


# --- 23.8: a deadline and a size cap -----------------------------------------------------------

def test_trickling_server_is_ended_by_the_overall_deadline(server, tmp_path):
    limits = hub.DownloadLimits(deadline_s=1.0, read_timeout_s=10, min_bytes_per_s=0)
    took = ended(source(server, "trickle"), tmp_path / NAME, limits, r"took longer than the 1 s deadline", 4)
    assert took >= 0.9


def test_trickling_server_is_ended_by_the_minimum_rate(server, tmp_path):
    limits = hub.DownloadLimits(deadline_s=30, read_timeout_s=10, min_bytes_per_s=1000, rate_window_s=0.5)
    ended(source(server, "trickle"), tmp_path / NAME, limits, r"was too slow: \d+ bytes/s over 0.[5-9] s", 4)


def test_silent_server_is_ended_by_the_read_timeout(server, tmp_path):
    limits = hub.DownloadLimits(deadline_s=30, read_timeout_s=0.5, min_bytes_per_s=0)
    ended(source(server, "silent"), tmp_path / NAME, limits, r"stalled: nothing arrived for 0.5 s", 4)


def test_trickled_headers_are_ended_by_the_deadline(server, tmp_path):
    limits = hub.DownloadLimits(deadline_s=1.0, read_timeout_s=10, min_bytes_per_s=0)
    ended(source(server, "slow_headers"), tmp_path / NAME, limits, r"took longer than the 1 s deadline", 4)


def test_endless_body_stops_at_the_cap_and_leaves_no_part(server, tmp_path):
    src = source(server, "endless", max_bytes=1 << 20)
    ended(src, tmp_path / NAME, LOOSE, r"passed 1,048,576 bytes, the most this file may have", 10)


def test_announced_size_over_the_cap_is_refused_before_reading(server, tmp_path):
    src = source(server, "huge", max_bytes=1 << 20)
    ended(src, tmp_path / NAME, LOOSE, r"refused: the server offers 1,000,000,000,000 bytes, more than the 1,048,576",
          4)


def test_declared_size_is_held_against_the_server(server, tmp_path):
    src = source(server, "good", size=len(GOOD) + 1)
    ended(src, tmp_path / NAME, LOOSE, f"the server offers {len(GOOD):,} bytes, the release has {len(GOOD) + 1:,}", 4)


def test_default_cap_and_limits_are_sane():
    assert hub.WeightsSource("x.pth", "https://h/x.pth").cap == hub.DEFAULT_MAX_BYTES == 2 << 30
    assert hub.WeightsSource("x.pth", "https://h/x.pth", size=123).cap == 123
    limits = hub.DownloadLimits()
    assert limits.deadline_s == 3600 and limits.read_timeout_s == 30 and limits.min_bytes_per_s > 0


def test_deadline_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(hub.DEADLINE_ENV, "7200")
    assert hub.DownloadLimits.from_env().deadline_s == 7200
    for bad in ("nan", "-1", "soon"):
        monkeypatch.setenv(hub.DEADLINE_ENV, bad)
        with pytest.raises(WeightsError, match=f"{hub.DEADLINE_ENV} must be a positive number of seconds"):
            hub.DownloadLimits.from_env()


# --- 23.7: HTTPS only, and the full hash --------------------------------------------------------

def test_plain_http_is_refused(server, tmp_path, monkeypatch):
    monkeypatch.delenv(hub.ALLOW_HTTP_LOOPBACK)
    with pytest.raises(WeightsError, match=r"refusing to download http://127\.0\.0\.1:\d+/good/.*https:// only"):
        hub.download(source(server, "good"), tmp_path / NAME)
    monkeypatch.setenv(hub.ALLOW_HTTP_LOOPBACK, "1")  # the tests' escape covers loopback only
    remote = hub.WeightsSource(NAME, f"http://download.example.invalid/{NAME}", GOOD_SHA[:8])
    with pytest.raises(WeightsError, match=r"refusing to download http://download\.example\.invalid/"):
        hub.download(remote, tmp_path / NAME)
    with pytest.raises(WeightsError, match=r"refusing to download http://example\.invalid/"):  # via a redirect
        hub.download(source(server, "redirect"), tmp_path / NAME, limits=LOOSE)
    assert list(tmp_path.iterdir()) == []


def test_every_declared_download_is_https():
    sources = [e.weights for e in zoo.ZOO.values()] + [zoo.VGG16_WEIGHTS]
    sources += [e.recipe.bank for e in zoo.ZOO.values() if e.recipe and e.recipe.bank]
    urls = {s.url for s in sources if not s.bundled}
    assert len(urls) == 7 and all(url.startswith("https://") for url in urls)
    assert zoo.MMGEN_BASE.startswith("https://")


def test_wrong_bytes_from_the_server_are_deleted(server, tmp_path):
    expected = f"is corrupt: its SHA-256 starts with [0-9a-f]{{8}}, expected {GOOD_SHA[:8]}"
    with pytest.raises(WeightsError, match=expected):
        hub.download(source(server, "wrong"), tmp_path / NAME, limits=LOOSE)
    assert list(tmp_path.iterdir()) == []


def test_a_declared_full_hash_decides(server, tmp_path):
    dest = tmp_path / NAME
    assert hub.download(source(server, "good", sha256=GOOD_SHA), dest, limits=LOOSE) == dest
    other = "0" * 64  # the prefix in the name still matches: the full hash wins
    with pytest.raises(WeightsError, match=f"its SHA-256 is {GOOD_SHA[:16]}..., expected 0000000000000000"):
        hub.download(source(server, "good", name="b" + NAME, sha256=other), tmp_path / ("b" + NAME), limits=LOOSE)


# --- 23.6: the cache verifies what it serves ----------------------------------------------------

def test_garbage_in_the_cache_is_refused_then_replaced_by_download(server, home, monkeypatch):
    cached = home / NAME
    cached.write_bytes(b"not a checkpoint" * 100)
    src = source(server, "good")
    assert hub.cache_state(src) is hub.CacheState.UNVERIFIED  # no hashing without being asked
    with pytest.raises(WeightsError) as info:
        hub.resolve_weights(src, download_ok=False)
    message = str(info.value)
    assert message.startswith(f"the cached weights file {cached} is corrupt (its SHA-256 starts with ")
    assert message.endswith("allow downloading (--download) to replace it") and "\n" not in message
    assert str(home) not in info.value.public and NAME in info.value.public  # what a web client may see

    hashed = []
    real_sha = hub.file_sha256
    monkeypatch.setattr(hub, "file_sha256", lambda path: hashed.append(path) or real_sha(path))
    assert hub.cache_state(src) is hub.CacheState.CORRUPT and hashed == []  # the failure is recorded

    assert hub.resolve_weights(src, download_ok=True, limits=LOOSE) == cached  # --download repairs it
    assert cached.read_bytes() == GOOD and hub.cache_state(src) is hub.CacheState.VERIFIED
    assert sorted(p.name for p in home.iterdir()) == [NAME, f"{NAME}.verified"]
    assert json.loads(hub.record_path(cached).read_text())["trusted"] == GOOD_SHA


def test_a_failed_repair_keeps_the_old_file_whole(server, home):
    cached = home / NAME
    cached.write_bytes(b"junk" * 50)
    with pytest.raises(WeightsError, match="is corrupt: its SHA-256 starts with"):
        hub.resolve_weights(source(server, "wrong"), download_ok=True, limits=LOOSE)
    assert cached.read_bytes() == b"junk" * 50 and not (home / f"{NAME}.part").exists()


def test_a_verified_file_is_hashed_once_and_again_when_it_changes(server, home, monkeypatch):
    src = source(server, "good")
    cached = hub.resolve_weights(src, limits=LOOSE)
    hashed = []
    real_sha = hub.file_sha256
    monkeypatch.setattr(hub, "file_sha256", lambda path: hashed.append(path) or real_sha(path))
    assert hub.resolve_weights(src, download_ok=False) == cached and hashed == []
    flipped = bytearray(GOOD)
    flipped[1000] ^= 1
    cached.write_bytes(bytes(flipped))  # same size, one bit
    with pytest.raises(WeightsError, match="differs from the copy verified before"):
        hub.resolve_weights(src, download_ok=False)
    assert hashed == [cached]


def test_empty_and_oversized_files_are_corrupt_without_hashing(server, home):
    (home / NAME).write_bytes(b"")
    assert hub.cache_state(source(server, "good")) is hub.CacheState.CORRUPT
    (home / NAME).write_bytes(GOOD)
    assert hub.cache_state(source(server, "good", size=len(GOOD) - 1)) is hub.CacheState.CORRUPT
    assert hub.cache_state(source(server, "good", max_bytes=100)) is hub.CacheState.CORRUPT
    assert hub.cache_state(source(server, "good"), verify=True) is hub.CacheState.VERIFIED


def _same_prefix_pair(digits: int) -> tuple[bytes, bytes]:
    """Two payloads whose SHA-256 share their first ``digits`` hex digits (a weak prefix, forged)."""
    seen = {}
    for i in range(100_000):
        blob = GOOD + str(i).encode()
        prefix = hashlib.sha256(blob).hexdigest()[:digits]
        if prefix in seen:
            return seen[prefix], blob
        seen[prefix] = blob
    raise AssertionError("no pair found")


def test_the_first_verified_copy_is_recorded_and_held_to(server, home):
    first, forged = _same_prefix_pair(3)
    prefix = hashlib.sha256(first).hexdigest()[:3]
    name = f"bank_20240101-{prefix}.pth"
    src = source(server, "blob", name=name, prefix=prefix)
    server.blob = first
    cached = hub.resolve_weights(src, limits=LOOSE)
    assert json.loads(hub.record_path(cached).read_text())["trusted"] == hashlib.sha256(first).hexdigest()

    cached.write_bytes(forged)  # matches the name's prefix, not the recorded hash
    assert hub.cache_state(src, verify=True) is hub.CacheState.CORRUPT
    server.blob = forged  # nor does a download of it replace the verified copy
    with pytest.raises(WeightsError, match="differs from the copy verified before.*delete that record"):
        hub.resolve_weights(src, limits=LOOSE)
    hub.record_path(cached).unlink()  # the documented way to accept another copy
    assert hub.resolve_weights(src, limits=LOOSE).read_bytes() == forged


def test_zoo_refuses_random_weights_saved_under_a_release_name(home):
    import torch

    release = zoo.ZOO["glean_cat_8x"].weights.filename
    torch.save({"state_dict": {"generator.conv.weight": torch.randn(4, 4)}}, home / release)
    with pytest.raises(WeightsError, match=f"the cached weights file {home / release} is corrupt.*--download"):
        zoo.weights_file("glean_cat_8x")
    assert zoo.weights_status(zoo.ZOO["glean_cat_8x"]) == "corrupt"
    from gleansr.pipeline.upscaler import Upscaler

    with pytest.raises(WeightsError) as info:  # what `serve` meets: a WeightsError, its public sentence path-free
        Upscaler("glean_cat_8x", device="cpu")
    assert release in info.value.public and str(home) not in info.value.public


def test_upscale_with_a_corrupt_release_is_one_line(home, tmp_path, capsys):
    from PIL import Image

    release = zoo.ZOO["glean_cat_8x"].weights.filename
    (home / release).write_bytes(os.urandom(4096))
    Image.new("RGB", (32, 32)).save(tmp_path / "cat.png")
    assert main(["upscale", str(tmp_path / "cat.png"), "--model", "glean_cat_8x", "--device", "cpu"]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(home / release) in err and "--download" in err
    assert not (tmp_path / "cat_x8.png").exists()


def test_models_command_says_what_the_cache_holds(home):
    cats = zoo.ZOO["glean_cat_8x"].weights.filename
    cats16 = zoo.ZOO["glean_cat_16x"].weights.filename
    (home / cats).write_bytes(b"garbage" * 1000)
    (home / cats16).write_bytes(b"")

    def models(*flags):
        env = {**os.environ, "GLEANSR_HOME": str(home.parent)}
        done = subprocess.run([sys.executable, "-m", "gleansr.cli", "models", *flags], capture_output=True,
                              text=True, timeout=120, env=env)
        assert done.returncode == 0, done.stderr
        return {line.split()[0]: line for line in done.stdout.splitlines() if line.startswith("glean_")}

    rows = models()
    assert rows["glean_cat_8x"].endswith("present, not verified")
    assert rows["glean_cat_16x"].endswith("corrupt") and rows["glean_ffhq_16x"].endswith("missing")
    assert rows["glean_glyphs_8x"].endswith("bundled")
    assert models("--verify")["glean_cat_8x"].endswith("corrupt")
    assert models()["glean_cat_8x"].endswith("corrupt")  # recorded: no hashing needed to know


# --- HTTPS for real: a self-signed server, trusted only when the test says so, and a CONNECT proxy

@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    done = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                           "-nodes", "-keyout", str(folder / "key.pem"), "-out", str(folder / "cert.pem"),
                           "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return folder / "cert.pem", folder / "key.pem"


@pytest.fixture
def tls_server(certificate, monkeypatch):
    import ssl

    for name in ("https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY", hub.ALLOW_HTTP_LOOPBACK):
        monkeypatch.delenv(name, raising=False)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    yield from serving("https://localhost", lambda sock: context.wrap_socket(sock, server_side=True))


def test_https_download_checks_the_certificate(tls_server, certificate, tmp_path, monkeypatch):
    dest = tmp_path / NAME
    with pytest.raises(WeightsError, match="cannot download https://localhost.*CERTIFICATE_VERIFY_FAILED"):
        hub.download(source(tls_server, "good"), dest, limits=LOOSE)
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))  # now this machine trusts the test server
    assert hub.download(source(tls_server, "good"), dest, limits=LOOSE).read_bytes() == GOOD


def test_https_goes_through_the_environments_proxy(tls_server, certificate, tmp_path, monkeypatch):
    import socketserver

    tunnels = []

    class Connect(socketserver.StreamRequestHandler):
        def handle(self):
            request = self.rfile.readline().decode()
            while self.rfile.readline() not in (b"\r\n", b""):
                pass
            host, port = request.split()[1].rsplit(":", 1)
            tunnels.append(request.split()[1])
            upstream = socket.create_connection((host, int(port)), timeout=5)
            self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            pump = threading.Thread(target=self.pipe, args=(upstream, self.connection), daemon=True)
            pump.start()
            self.pipe(self.connection, upstream)
            pump.join(5)
            upstream.close()

        @staticmethod
        def pipe(source_sock, target):
            try:
                while data := source_sock.recv(65536):
                    target.sendall(data)
                target.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    proxy = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Connect)
    proxy.daemon_threads = True
    threading.Thread(target=proxy.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    try:
        monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
        monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{proxy.server_address[1]}")
        assert hub.download(source(tls_server, "good"), tmp_path / NAME, limits=LOOSE).read_bytes() == GOOD
        assert tunnels == [f"localhost:{tls_server.server_port}"]
    finally:
        proxy.shutdown()
        proxy.server_close()
