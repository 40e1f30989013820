import hashlib
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import platformdirs
import pytest

from gleansr import hub
from gleansr.errors import GleanError

PAYLOAD = bytes(range(256)) * 800 + b"tail"  # 204,804 bytes
PREFIX = hashlib.sha256(PAYLOAD).hexdigest()[:8]
NAME = f"glean_test_20240101-{PREFIX}.pth"


class WeightsHandler(BaseHTTPRequestHandler):
    """Serves PAYLOAD at any path; honours ``Range: bytes=N-`` unless told not to."""

    def do_GET(self):
        server = self.server
        requested = self.headers.get("Range")
        server.ranges.append(requested)
        if self.path.endswith("/missing.pth"):
            self.send_error(404)
            return
        start = 0
        if requested and server.honour_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", requested).group(1))
            if start >= len(PAYLOAD):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(PAYLOAD)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        else:
            self.send_response(200)
        body = PAYLOAD[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if server.cut_after is not None:  # promise the whole body, send a part, hang up
            body, server.cut_after = body[: server.cut_after], None
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(autouse=True)
def loopback_http(monkeypatch):
    """The test servers speak plain HTTP on 127.0.0.1: the one place downloads may skip HTTPS."""
    monkeypatch.setenv(hub.ALLOW_HTTP_LOOPBACK, "1")


def source(url, prefix=PREFIX, **declared):
    return hub.WeightsSource(url.rsplit("/", 1)[1], url, prefix, **declared)


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), WeightsHandler)
    httpd.ranges, httpd.honour_range, httpd.cut_after = [], True, None
    httpd.url = f"http://127.0.0.1:{httpd.server_port}/weights/{NAME}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def files_in(folder):
    return sorted(p.name for p in Path(folder).iterdir())


def test_full_download_is_verified_and_renamed(server, tmp_path):
    dest = tmp_path / "cache" / NAME
    assert hub.download(source(server.url), dest, progress=False) == dest
    assert dest.read_bytes() == PAYLOAD
    assert files_in(dest.parent) == [NAME, f"{NAME}.verified"]  # the file and its record
    assert server.ranges == [None]


def test_partial_file_is_resumed_with_a_range_request(server, tmp_path):
    dest = tmp_path / NAME
    Path(f"{dest}.part").write_bytes(PAYLOAD[:1000])
    hub.download(source(server.url), dest)
    assert dest.read_bytes() == PAYLOAD
    assert server.ranges == ["bytes=1000-"]
    assert files_in(tmp_path) == [NAME, f"{NAME}.verified"]


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    server.honour_range = False
    dest = tmp_path / NAME
    Path(f"{dest}.part").write_bytes(b"junk that must not stay in front" * 10)
    hub.download(source(server.url), dest)
    assert dest.read_bytes() == PAYLOAD
    assert server.ranges == ["bytes=320-"]


def test_partial_file_longer_than_the_server_file_restarts(server, tmp_path):
    dest = tmp_path / NAME
    Path(f"{dest}.part").write_bytes(PAYLOAD + b"extra")
    hub.download(source(server.url), dest)
    assert dest.read_bytes() == PAYLOAD
    assert server.ranges == [f"bytes={len(PAYLOAD) + 5}-", None]


def test_wrong_hash_deletes_the_download(server, tmp_path):
    dest = tmp_path / NAME
    with pytest.raises(GleanError, match=f"SHA-256 starts with {PREFIX}, expected deadbeef"):
        hub.download(source(server.url, "DEADBEEF"), dest)
    assert files_in(tmp_path) == []


def test_corrupt_partial_file_fails_the_check_then_a_retry_succeeds(server, tmp_path):
    dest = tmp_path / NAME
    Path(f"{dest}.part").write_bytes(b"\xff" * 500)
    with pytest.raises(GleanError, match="corrupt.*expected " + PREFIX):
        hub.download(source(server.url), dest)
    assert files_in(tmp_path) == []
    hub.download(source(server.url), dest)
    assert dest.read_bytes() == PAYLOAD


def test_truncated_transfer_errors_then_resumes(server, tmp_path):
    server.cut_after = 5000
    dest = tmp_path / NAME
    with pytest.raises(GleanError, match=f"stopped {len(PAYLOAD) - 5000} bytes short.*run again"):
        hub.download(source(server.url), dest)
    assert files_in(tmp_path) == [f"{NAME}.part"]  # the resume point, never a weights file
    hub.download(source(server.url), dest)
    assert dest.read_bytes() == PAYLOAD
    assert server.ranges == [None, "bytes=5000-"]


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_host_says_what_to_fetch_and_where_to_put_it(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/weights/{NAME}"
    dest = tmp_path / "cache" / NAME
    with pytest.raises(GleanError) as info:
        hub.download(source(url), dest, limits=hub.DownloadLimits(read_timeout_s=5))
    message = str(info.value)
    assert f"fetch {url} yourself and save it as {dest}" in message and "\n" not in message
    assert not dest.exists()


def test_http_error_names_the_url(server, tmp_path):
    url = server.url.replace(NAME, "missing.pth")
    with pytest.raises(GleanError, match=f"cannot download {re.escape(url)} .*Not Found"):
        hub.download(source(url), tmp_path / "missing.pth")


def test_cache_dir_honours_gleansr_home(tmp_path, monkeypatch):
    monkeypatch.setenv("GLEANSR_HOME", str(tmp_path / "home"))
    assert hub.cache_dir() == tmp_path / "home" / "weights"
    monkeypatch.delenv("GLEANSR_HOME")
    assert hub.cache_dir() == Path(platformdirs.user_cache_dir("gleansr")) / "weights"


def test_resolve_weights_prefers_explicit_then_cache_then_download(server, tmp_path, monkeypatch):
    monkeypatch.setenv("GLEANSR_HOME", str(tmp_path / "home"))
    cached = tmp_path / "home" / "weights" / NAME
    with pytest.raises(GleanError, match=f"not in the weights cache.*save it as {cached}"):
        hub.resolve_weights(source(server.url), download_ok=False)
    assert hub.resolve_weights(source(server.url)) == cached
    assert cached.read_bytes() == PAYLOAD and len(server.ranges) == 1
    assert hub.resolve_weights(source(server.url)) == cached
    assert len(server.ranges) == 1  # served from the cache

    own = tmp_path / "mine.pth"
    own.write_bytes(b"user weights")
    assert hub.resolve_weights(source(server.url), weights=str(own)) == own
    with pytest.raises(GleanError, match="weights file .*nope.pth does not exist"):
        hub.resolve_weights(source(server.url), weights=tmp_path / "nope.pth")


@pytest.mark.parametrize(
    "name, prefix",
    [
        ("glean_cat_8x_20210614-d3ac8683.pth", "d3ac8683"),
        ("https://host/x/glean_in128out1024_4x2_300k_ffhq_celebahq_20210812-acbcb04f.pth", "acbcb04f"),
        ("stylegan2-cat-config-f-official_20210327_172444-15bc485b.pth", "15bc485b"),
        ("model-final.pth", None),
        ("weights_20210614-D3AC8683.pth", None),
        ("plain.pth", None),
    ],
)
def test_sha256_prefix_from_name(name, prefix):
    assert hub.sha256_prefix_from_name(name) == prefix
