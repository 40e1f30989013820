"""Pretrained weights: where they are cached, and a resumable, verified download.

A download goes to ``<dest>.part``, resumes from it with an HTTP Range request after an
interruption, is checked against the SHA-256 prefix in its name (OpenMMLab convention) and only
then renamed to ``dest``, so the cache never holds a partial or corrupt weights file.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path

import platformdirs
from tqdm import tqdm

from . import __version__
from .errors import GleanError

_CHUNK = 1 << 20
# name_YYYYMMDD-<hex>.pth: the hex digits after the last dash start the file's SHA-256.
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z0-9]+$")


def cache_dir() -> Path:
    """``$GLEANSR_HOME/weights`` if that variable is set, else the user cache folder's ``weights``."""
    home = os.environ.get("GLEANSR_HOME")
    root = Path(home).expanduser() if home else Path(platformdirs.user_cache_dir("gleansr"))
    return root / "weights"


def sha256_prefix_from_name(filename: str) -> str | None:
    """``"glean_cat_8x_20210614-d3ac8683.pth"`` -> ``"d3ac8683"``; None if the name holds no hash."""
    match = _HASH_IN_NAME.search(Path(filename).name)
    return match.group(1) if match else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _offline_hint(url: str, dest: Path) -> str:
    return f"to work offline, fetch {url} yourself and save it as {dest}"


def _open(url: str, part: Path, timeout: float) -> tuple[http.client.HTTPResponse, int]:
    """Request what ``part`` lacks; returns the response and the offset its body starts at.

    A partial file the server cannot continue (Range ignored, other range, 416) is started over.
    """
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": f"gleansr/{__version__}"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # the partial file is longer than the server's file
            part.unlink()
            return _open(url, part, timeout)
        raise
    if not offset or response.status == 200:
        return response, 0  # the whole file; a server that ignores Range also answers 200
    if response.status == 206 and response.headers.get("Content-Range", "").startswith(f"bytes {offset}-"):
        return response, offset
    response.close()
    part.unlink()
    return _open(url, part, timeout)


def _fetch(url: str, part: Path, progress: bool, timeout: float) -> None:
    """Write the rest of ``url`` into ``part``; raises IncompleteRead if the body ends early."""
    response, offset = _open(url, part, timeout)
    with response:
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        bar = tqdm(
            total=total,
            initial=offset,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=part.name.removesuffix(".part"),
            file=sys.stderr,
            disable=not (progress and sys.stderr.isatty()),
        )
        with bar, open(part, "ab" if offset else "wb") as handle:
            while block := response.read(_CHUNK):
                handle.write(block)
                bar.update(len(block))
            handle.flush()
            os.fsync(handle.fileno())
            received = handle.tell()
    if total is not None and received != total:
        raise http.client.IncompleteRead(b"", total - received)


def download(
    url: str,
    dest: str | os.PathLike[str],
    expected_sha256_prefix: str | None = None,
    progress: bool = True,
    timeout: float = 30,
) -> Path:
    """Download ``url`` to ``dest`` (resuming ``dest.part``), verify it, and return ``dest``.

    The progress bar goes to stderr, only when it is a terminal and ``progress`` is True.
    Raises GleanError on network failure (the message says which URL to fetch by hand and the
    full path to save it as) and on a hash mismatch (the download is deleted).
    """
    dest = Path(dest).expanduser().absolute()
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        _fetch(url, part, progress, timeout)
    except http.client.IncompleteRead as exc:
        raise GleanError(
            f"download of {url} stopped {exc.expected} bytes short; run again to resume, or "
            + _offline_hint(url, dest)
        ) from None
    except (OSError, http.client.HTTPException, ValueError) as exc:  # URLError is an OSError
        reason = getattr(exc, "reason", None) or exc
        raise GleanError(f"cannot download {url} ({reason}); " + _offline_hint(url, dest)) from None
    if expected_sha256_prefix:
        expected = expected_sha256_prefix.lower()
        got = _sha256(part)
        if not got.startswith(expected):
            part.unlink()
            raise GleanError(
                f"download of {url} is corrupt: SHA-256 starts with {got[: len(expected)]}, "
                f"expected {expected}; the file was deleted, run again to retry"
            )
    os.replace(part, dest)
    return dest


def resolve_weights(
    filename: str,
    url: str,
    sha256_prefix: str | None,
    weights: str | os.PathLike[str] | None = None,
    download_ok: bool = True,
) -> Path:
    """The weights file to load: ``weights`` if given (must exist), else the cached copy of
    ``filename``, else a fresh download of ``url`` into the cache (unless ``download_ok`` is False).

    Only one process should download at a time (e.g. rank 0, then a barrier).
    """
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise GleanError(f"weights file {path} does not exist")
        return path
    cached = cache_dir() / filename
    if cached.is_file():
        return cached
    if not download_ok:
        raise GleanError(f"{filename} is not in the weights cache; pass --download (download=True) to fetch it, or, "
                         + _offline_hint(url, cached.absolute()))
    return download(url, cached, sha256_prefix)
