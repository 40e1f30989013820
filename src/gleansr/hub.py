"""Pretrained weights: the cache, what it has verified, and a bounded, verified HTTPS download.

**What a file must be.** A :class:`WeightsSource` declares a downloadable file: its URL, the
SHA-256 prefix that OpenMMLab and torchvision put in file names, and, where published, its full
SHA-256 and size. A file is accepted when its SHA-256 equals the declared full hash. Where only the
8-hex prefix is known, the first copy whose hash starts with it is accepted and its full hash is
recorded beside it (``<name>.verified``); from then on every copy must equal that record (trust on
first use). The record also notes the size, mtime, ctime and inode the file had when it was hashed,
so a file is hashed once and again as soon as it changes. A cached file that fails is refused with
:class:`~gleansr.errors.WeightsError`; ``download=True`` (``--download``) replaces it.

This catches truncated or garbage files, other weights saved under a release's name, a file that
changed after it was verified, and (downloads are HTTPS with the certificate checked) anyone on
the network path. It does not catch a forged first download from the release server itself (a
32-bit prefix can be matched with about 2^32 tries), nor someone who can write the cache folder
(they can rewrite the record too).

**How a file is fetched.** Over ``https://`` only (plain ``http://`` only to a loopback address and
only when ``GLEANSR_ALLOW_HTTP_LOOPBACK=1``: for tests), into ``<dest>.part``, resumed with an HTTP
Range request after the server hung up, hashed, and only then renamed to ``dest``. A transfer that
passes the size cap (the declared size, else ``max_bytes``), the overall deadline
(``GLEANSR_DOWNLOAD_DEADLINE`` seconds, default one hour), the read timeout or the minimum rate is
ended and its ``.part`` deleted: its bytes are worth nothing.
"""
from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import math
import os
import re
import socket
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import platformdirs

from .errors import WeightsError

if TYPE_CHECKING:  # http.client is imported when something is downloaded: `gleansr models` starts fast
    import http.client

_CHUNK = 1 << 20
_MAX_REDIRECTS = 5
# name_YYYYMMDD-<hex>.pth: the hex digits after the last dash start the file's SHA-256.
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z0-9]+$")
DEFAULT_MAX_BYTES = 2 << 30  # the cap of a file whose size is not declared (the releases are < 1 GB)
ALLOW_HTTP_LOOPBACK = "GLEANSR_ALLOW_HTTP_LOOPBACK"
DEADLINE_ENV = "GLEANSR_DOWNLOAD_DEADLINE"


def sha256_prefix_from_name(filename: str) -> str | None:
    """``"glean_cat_8x_20210614-d3ac8683.pth"`` -> ``"d3ac8683"``; None if the name holds no hash."""
    match = _HASH_IN_NAME.search(Path(filename).name)
    return match.group(1) if match else None


@dataclass(frozen=True)
class WeightsSource:
    """One downloadable (``url``) or bundled (``url=None``: in ``gleansr/assets``) weights file.

    ``sha256`` and ``size`` are the published full hash and byte count, where known; ``max_bytes``
    caps a download whose size is not declared.
    """

    filename: str
    url: str | None = None
    sha256_prefix: str | None = None
    sha256: str | None = None
    size: int | None = None
    max_bytes: int = DEFAULT_MAX_BYTES

    @property
    def bundled(self) -> bool:
        return self.url is None

    @property
    def cap(self) -> int:
        """The most bytes a download of this file may have."""
        return self.size if self.size is not None else self.max_bytes


@dataclass(frozen=True)
class DownloadLimits:
    """When a download is given up: overall deadline, silence, and too slow a rate over a window."""

    deadline_s: float = 3600.0
    read_timeout_s: float = 30.0
    min_bytes_per_s: float = 8192.0
    rate_window_s: float = 60.0

    @classmethod
    def from_env(cls) -> DownloadLimits:
        """The defaults, with the deadline from ``GLEANSR_DOWNLOAD_DEADLINE`` (seconds) if set."""
        raw = os.environ.get(DEADLINE_ENV)
        if raw is None:
            return cls()
        try:
            deadline = float(raw)
        except ValueError:
            deadline = math.nan
        if not (math.isfinite(deadline) and deadline > 0):
            raise WeightsError(f"{DEADLINE_ENV} must be a positive number of seconds, got {raw[:40]!r}",
                               "the server's download settings are invalid")
        return cls(deadline_s=deadline)


class CacheState(str, Enum):
    """What the cache holds for one source (the words `gleansr models` prints)."""

    MISSING = "missing"
    UNVERIFIED = "present, not verified"
    VERIFIED = "present, verified"
    CORRUPT = "corrupt"


def cache_root() -> Path:
    """``$GLEANSR_HOME`` if that variable is set, else the user cache folder's ``gleansr``."""
    home = os.environ.get("GLEANSR_HOME")
    return Path(home).expanduser() if home else Path(platformdirs.user_cache_dir("gleansr"))


def cache_dir() -> Path:
    """Where downloaded weights are kept: :func:`cache_root`'s ``weights``."""
    return cache_root() / "weights"


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The hex SHA-256 of a file (the weights' identity: downloads, exports, precision verdicts)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


# --- the record beside a verified file ----------------------------------------------------------

@dataclass(frozen=True)
class _Record:
    """``trusted``: the full hash first verified; ``key``/``digest``: the file as last hashed."""

    trusted: str | None = None
    key: tuple[int, int, int, int] | None = None
    digest: str | None = None


def record_path(path: Path) -> Path:
    """Where the verification record of the weights file ``path`` is kept."""
    return path.with_name(path.name + ".verified")


def _key(path: Path) -> tuple[int, int, int, int]:
    st = path.stat()
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def _is_hash(value: object) -> bool:
    return isinstance(value, str) and re.fullmatch(r"[0-9a-f]{64}", value) is not None


def _read_record(path: Path) -> _Record:
    """The record, or an empty one if it is missing or unreadable (the file is then hashed again)."""
    try:
        data = json.loads(record_path(path).read_text())
        key = tuple(data["key"]) if data.get("key") is not None else None
        if key is not None and not (len(key) == 4 and all(isinstance(v, int) for v in key)):
            key = None
        trusted = data.get("trusted") if _is_hash(data.get("trusted")) else None
        digest = data.get("digest") if _is_hash(data.get("digest")) else None
        return _Record(trusted, key if digest else None, digest if key else None)
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return _Record()


def _write_record(path: Path, record: _Record) -> None:
    """Keep the record; a read-only cache only means the file is hashed again next time."""
    from .atomic import atomic_write_bytes

    data = {"trusted": record.trusted, "key": list(record.key) if record.key else None, "digest": record.digest}
    try:
        atomic_write_bytes(record_path(path), (json.dumps(data) + "\n").encode(), overwrite=True)
    except OSError:
        pass


def _accepts(source: WeightsSource, digest: str, trusted: str | None) -> bool:
    if source.sha256:
        return digest == source.sha256.lower()
    if trusted:
        return digest == trusted
    return digest.startswith((source.sha256_prefix or "").lower())


def _mismatch(source: WeightsSource, digest: str, trusted: str | None, path: Path) -> str:
    """Why ``digest`` is refused, in words."""
    if source.sha256:
        return f"its SHA-256 is {digest[:16]}..., expected {source.sha256.lower()[:16]}..."
    if trusted:
        return (f"its SHA-256 {digest[:16]}... differs from the copy verified before ({trusted[:16]}..., "
                f"recorded in {record_path(path)}; delete that record to accept another copy)")
    prefix = (source.sha256_prefix or "").lower()
    return f"its SHA-256 starts with {digest[: len(prefix)]}, expected {prefix}"


def _size_fault(source: WeightsSource, size: int, subject: str = "it has") -> str | None:
    """What the size alone proves wrong, or None."""
    if size == 0:
        return f"{subject} 0 bytes"
    if source.size is not None and size != source.size:
        return f"{subject} {size:,} bytes, the release has {source.size:,}"
    if size > source.cap:
        return f"{subject} {size:,} bytes, more than the {source.cap:,} allowed for this file"
    return None


def _judge(source: WeightsSource, path: Path, hash_now: bool) -> tuple[CacheState, str]:
    """The state of ``path`` as a copy of ``source`` and, if corrupt, why; hashes only if needed."""
    try:
        key = _key(path)
    except FileNotFoundError:
        return CacheState.MISSING, ""
    if not path.is_file():
        return CacheState.CORRUPT, "it is not a regular file"
    record = _read_record(path)
    if record.key == key:
        digest = record.digest
    else:
        fault = _size_fault(source, key[0])
        if fault:
            return CacheState.CORRUPT, fault
        if not hash_now:
            return CacheState.UNVERIFIED, ""
        digest = file_sha256(path)
    assert digest is not None
    ok = _accepts(source, digest, record.trusted)
    updated = _Record(record.trusted or (digest if ok else None), key, digest)
    if updated != record:
        _write_record(path, updated)
    return (CacheState.VERIFIED, "") if ok else (CacheState.CORRUPT, _mismatch(source, digest, record.trusted, path))


def cache_state(source: WeightsSource, verify: bool = False) -> CacheState:
    """What the cache holds for ``source``; ``verify=True`` hashes a file not yet verified (slow once)."""
    return _judge(source, cache_dir() / source.filename, hash_now=verify)[0]


# --- download -----------------------------------------------------------------------------------

class _Ended(Exception):
    """We ended the transfer (size, deadline, silence, rate): the partial file is worth nothing."""


class _Watchdog:
    """Shuts the current connection down when the deadline passes, which wakes any blocked read."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.expired = False
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    @property
    def sentence(self) -> str:
        return f"took longer than the {self.seconds:g} s deadline (set {DEADLINE_ENV} to allow more)"

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()

    def watch(self, conn: http.client.HTTPConnection) -> None:
        """Watch ``conn`` (before it connects: its socket is read when the deadline passes)."""
        with self._lock:
            self._conn = conn
            if self.expired:
                self._shut()

    def _fire(self) -> None:
        with self._lock:
            self.expired = True
            self._shut()

    def _shut(self) -> None:
        sock = getattr(self._conn, "sock", None)
        if sock is not None:
            try:  # the plain socket's shutdown, also under TLS: the reader sees the end at once
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass


def _is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _checked_url(url: str) -> urllib.parse.SplitResult:
    """``url`` split, if it may be fetched: https, or http to loopback when the tests allow it."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return parts
    if parts.scheme == "http" and _is_loopback(parts.hostname) and os.environ.get(ALLOW_HTTP_LOOPBACK) == "1":
        return parts
    raise WeightsError(f"refusing to download {url[:200]}: weights are fetched over https:// only",
                       "the server is configured with a weights URL that is not https")


def _connection(parts: urllib.parse.SplitResult, timeout: float) -> http.client.HTTPConnection:
    """A connection to ``parts``' host, through the ``https_proxy`` of the environment if one applies
    (a CONNECT tunnel: TLS and its certificate check still run end to end with the host)."""
    import http.client
    import urllib.request

    https = parts.scheme == "https"
    kind = http.client.HTTPSConnection if https else http.client.HTTPConnection
    proxy = urllib.request.getproxies().get(parts.scheme)
    if not (https and proxy) or urllib.request.proxy_bypass(parts.hostname or ""):
        return kind(parts.hostname, parts.port, timeout=timeout)
    via = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    headers = {}
    if via.username:
        token = base64.b64encode(f"{urllib.parse.unquote(via.username)}:{urllib.parse.unquote(via.password or '')}"
                                 .encode()).decode()
        headers["Proxy-Authorization"] = f"Basic {token}"
    conn = kind(via.hostname, via.port or 8080, timeout=timeout)
    conn.set_tunnel(parts.hostname, parts.port or 443, headers=headers)
    return conn


def _get(url: str, offset: int, limits: DownloadLimits,
         watchdog: _Watchdog) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    """GET ``url`` from byte ``offset``, following redirects (each one checked like ``url``)."""
    import http.client

    from . import __version__

    for _ in range(_MAX_REDIRECTS + 1):
        parts = _checked_url(url)
        conn = _connection(parts, limits.read_timeout_s)
        watchdog.watch(conn)
        conn.connect()
        if watchdog.expired:  # it passed while connecting, before there was a socket to shut
            raise TimeoutError("deadline")
        headers = {"User-Agent": f"gleansr/{__version__}", "Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        conn.request("GET", (parts.path or "/") + (f"?{parts.query}" if parts.query else ""), headers=headers)
        response = conn.getresponse()
        location = response.getheader("Location")
        if response.status in (301, 302, 303, 307, 308) and location:
            conn.close()
            url = urllib.parse.urljoin(url, location)
            continue
        return conn, response
    raise http.client.HTTPException(f"more than {_MAX_REDIRECTS} redirects")


def _open(url: str, part: Path, limits: DownloadLimits,
          watchdog: _Watchdog) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse, int]:
    """Request what ``part`` lacks; returns the connection, the response and the offset its body starts at.

    A partial file the server cannot continue (Range ignored, another range, 416) is started over.
    """
    import http.client

    while True:
        offset = part.stat().st_size if part.exists() else 0
        conn, response = _get(url, offset, limits, watchdog)
        status = response.status
        if status == 200:
            return conn, response, 0  # the whole file; a server that ignores Range also answers 200
        if status == 206 and offset and (response.getheader("Content-Range") or "").startswith(f"bytes {offset}-"):
            return conn, response, offset
        conn.close()
        if not offset or (status >= 400 and status != 416):  # 416: the partial file is longer than the file
            raise http.client.HTTPException(f"HTTP Error {status}: {response.reason}"[:200])
        part.unlink()  # then ask for the whole file, once


def _fetch(source: WeightsSource, part: Path, progress: bool, limits: DownloadLimits, watchdog: _Watchdog) -> None:
    """Write the rest of ``source.url`` into ``part``.

    Raises IncompleteRead if the server ends the body early (``part`` is the resume point), _Ended
    when a limit ends it.
    """
    import http.client

    from tqdm import tqdm

    conn, response, offset = _open(source.url, part, limits, watchdog)
    try:
        length = response.getheader("Content-Length")
        total = offset + int(length) if length is not None else None
        if total is not None and (fault := _size_fault(source, total, "the server offers")):
            raise _Ended(f"was refused: {fault}")
        bar = tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                   desc=part.name.removesuffix(".part"), file=sys.stderr,
                   disable=not (progress and sys.stderr.isatty()))
        with bar, open(part, "ab" if offset else "wb") as handle:
            received = offset
            window_start, window_bytes = time.monotonic(), 0
            while True:
                try:
                    block = response.read1(_CHUNK)
                except (OSError, http.client.HTTPException) as exc:
                    if watchdog.expired:
                        block = b""
                    elif isinstance(exc, TimeoutError):
                        raise _Ended(f"stalled: nothing arrived for {limits.read_timeout_s:g} s") from None
                    else:
                        raise
                if watchdog.expired:
                    raise _Ended(watchdog.sentence)
                if not block:
                    break
                received += len(block)
                if received > source.cap:
                    raise _Ended(f"passed {source.cap:,} bytes, the most this file may have")
                handle.write(block)
                bar.update(len(block))
                window_bytes += len(block)
                elapsed = time.monotonic() - window_start
                if elapsed >= limits.rate_window_s:
                    if window_bytes < limits.min_bytes_per_s * elapsed:
                        raise _Ended(f"was too slow: {window_bytes / elapsed:,.0f} bytes/s over {elapsed:.1f} s, "
                                     f"the least accepted is {limits.min_bytes_per_s:,.0f}")
                    window_start, window_bytes = time.monotonic(), 0
            handle.flush()
            os.fsync(handle.fileno())
    finally:
        conn.close()
    if total is not None and received != total:
        raise http.client.IncompleteRead(b"", total - received)


def _offline_hint(url: str, dest: Path) -> str:
    return f"to work offline, fetch {url} yourself and save it as {dest}"


def _raise_network(exc: Exception, url: str, dest: Path, public: str) -> NoReturn:
    """A failure of the network or the server: ``dest.part`` stays as the resume point."""
    import http.client

    if isinstance(exc, http.client.IncompleteRead):
        raise WeightsError(f"download of {url} stopped {exc.expected} bytes short; run again to resume, or "
                           + _offline_hint(url, dest), public) from None
    reason = getattr(exc, "reason", None) or exc
    raise WeightsError(f"cannot download {url} ({reason}); " + _offline_hint(url, dest), public) from None


def download(source: WeightsSource, dest: str | os.PathLike[str], progress: bool = True,
             limits: DownloadLimits | None = None) -> Path:
    """Download ``source`` to ``dest`` (resuming ``dest.part``), verify it, record it, and return ``dest``.

    ``dest`` is replaced in one step only by a verified file, so a corrupt cached copy is repaired
    and nothing half-written is ever under its name. The progress bar goes to stderr, only when it
    is a terminal and ``progress`` is True. Raises WeightsError (one line: the URL, what happened,
    what to do) on a refused URL, a network failure, a limit, or a hash mismatch.
    """
    import http.client

    limits = limits or DownloadLimits.from_env()
    url = source.url
    if url is None:
        raise ValueError(f"{source.filename} is bundled, not downloadable")
    _checked_url(url)
    dest = Path(dest).expanduser().absolute()
    part = dest.with_name(dest.name + ".part")
    public = f"the weights file {source.filename} could not be downloaded on this server"
    dest.parent.mkdir(parents=True, exist_ok=True)
    watchdog = _Watchdog(limits.deadline_s)
    try:
        with watchdog:
            _fetch(source, part, progress, limits, watchdog)
    except (_Ended, OSError, http.client.HTTPException, ValueError) as exc:
        if isinstance(exc, _Ended) or watchdog.expired:
            part.unlink(missing_ok=True)
            reason = exc if isinstance(exc, _Ended) else watchdog.sentence
            raise WeightsError(f"download of {url} {reason}; nothing was kept; " + _offline_hint(url, dest),
                               public) from None
        _raise_network(exc, url, dest, public)
    digest = file_sha256(part)
    record = _read_record(dest)
    if not _accepts(source, digest, record.trusted):
        part.unlink()
        raise WeightsError(f"download of {url} is corrupt: {_mismatch(source, digest, record.trusted, dest)}; "
                           "the file was deleted, run again to retry", public)
    os.replace(part, dest)
    _write_record(dest, _Record(record.trusted or digest, _key(dest), digest))
    return dest


def resolve_weights(source: WeightsSource, weights: str | os.PathLike[str] | None = None,
                    download_ok: bool = True, limits: DownloadLimits | None = None) -> Path:
    """The weights file to load: ``weights`` if given (must exist), else the verified cached copy of
    ``source``, else a fresh download into the cache (unless ``download_ok`` is False).

    A cached copy that fails verification is refused (WeightsError naming it) or, with
    ``download_ok``, replaced. Only one process should download at a time (e.g. rank 0, then a barrier).
    """
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsError(f"weights file {path} does not exist", "a weights file is missing on this server")
        return path
    cached = (cache_dir() / source.filename).absolute()
    state, why = _judge(source, cached, hash_now=True)
    if state is CacheState.VERIFIED:
        return cached
    if not download_ok:
        if state is CacheState.MISSING:
            raise WeightsError(f"{source.filename} is not in the weights cache; allow downloading (--download) to "
                               "fetch it, or, " + _offline_hint(source.url or "", cached),
                               f"the weights file {source.filename} is not installed on this server")
        raise WeightsError(f"the cached weights file {cached} is corrupt ({why}); allow downloading (--download) "
                           "to replace it", f"the weights file {source.filename} on this server is corrupt; "
                           "its operator must download it again (--download)")
    if state is CacheState.CORRUPT and not cached.is_file():
        raise WeightsError(f"the cached weights path {cached} is not a regular file; remove it and retry",
                           f"the weights file {source.filename} on this server is corrupt")
    return download(source, cached, limits=limits)
