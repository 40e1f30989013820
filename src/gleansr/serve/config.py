"""The server's settings, with safe defaults (loopback, size and time limits, no CORS), and the
rules that follow from them: which ``Host`` and ``Origin`` a request may carry."""
from __future__ import annotations

import ipaddress
import math
import urllib.parse
from dataclasses import dataclass, fields

from ..errors import GleanError
from ..pipeline.limits import DEFAULT_MAX_DECODES, DEFAULT_MAX_SIDE, Limits

_WILDCARDS = ("0.0.0.0", "::", "")


@dataclass(frozen=True)
class ServeConfig:
    """Everything :func:`gleansr.serve.app.create_app` needs; the CLI fills it from its flags."""

    default_model: str | None = None  # None: the first installed model (the bundled one)
    device: str = "auto"
    precision: str = "fp32"  # when a request names none
    max_models: int = 2  # models kept loaded (least recently used dropped)
    max_queue: int = 16  # waiting jobs beyond which requests get 503
    max_batch: int = 8  # jobs of one model run in one forward pass
    batch_wait_ms: float = 2.0  # how long the worker waits for more requests to join a batch
    max_upload_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 4096 * 4096  # checked from the header, before decoding
    max_side: int = DEFAULT_MAX_SIDE  # longest side decoded, from the header
    max_decodes: int = DEFAULT_MAX_DECODES  # decodes and resizes in flight (shared with the batch pipeline)
    max_output_pixels: int = 8192 * 8192  # largest whole photo (faces=true) returned
    timeout_s: float = 60.0  # per request, queue and run included
    read_timeout_s: float = 30.0  # to send a request's head, and again its body
    max_parts: int = 16  # parts of a multipart upload
    max_connections: int = 64  # requests handled at once; beyond: 503 from uvicorn at once
    shutdown_timeout_s: float = 10.0  # graceful shutdown: requests in flight get this long
    retry_after_s: int = 1
    cors_origins: tuple[str, ...] = ()  # none: browsers on other origins get no access
    host: str = "127.0.0.1"  # the bound address: requests must name it (or an allowed host)
    allowed_hosts: tuple[str, ...] = ()  # other names clients may use in Host (a proxy's, a LAN name)

    def __post_init__(self) -> None:
        """Every setting is checked once, here: one line naming the flag (GleanError)."""
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type in ("int", "float") and (isinstance(value, bool) or not isinstance(value, (int, float))
                                               or not math.isfinite(value)):
                raise GleanError(f"--{_flag(f.name)} must be a finite number, got {value!r}")
        for name in ("max_models", "max_queue", "max_batch", "max_upload_bytes", "max_pixels", "max_side",
                     "max_decodes", "max_output_pixels", "max_parts", "max_connections", "retry_after_s"):
            if getattr(self, name) < 1:
                raise GleanError(f"--{_flag(name)} must be at least 1, got {getattr(self, name)!r}")
        for name in ("timeout_s", "read_timeout_s", "shutdown_timeout_s"):
            if getattr(self, name) <= 0:
                raise GleanError(f"--{_flag(name)} must be more than 0 seconds, got {getattr(self, name)!r}")
        if self.batch_wait_ms < 0:
            raise GleanError(f"batch_wait_ms must be at least 0, got {self.batch_wait_ms!r}")
        for origin in self.cors_origins:
            parts = urllib.parse.urlsplit(origin)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.path or parts.query:
                raise GleanError(f"--cors-origin must be an origin such as http://example.org:8080, got {origin!r}")

    @property
    def limits(self) -> Limits:
        """The decode limits of this server's uploads."""
        return Limits(max_pixels=self.max_pixels, max_side=self.max_side, max_decodes=self.max_decodes)

    def host_allowed(self, host_header: str) -> bool:
        """Whether a request's ``Host`` names this server: the bound address (any loopback name
        when bound to loopback, any IP address when bound to all), or an ``--allowed-host``.
        A DNS name the server was not told about is refused: that is how DNS rebinding arrives."""
        host = _host_only(host_header)
        if not host:
            return False
        if host in (h.lower() for h in self.allowed_hosts) or host == self.host.lower().strip("[]"):
            return True
        if is_loopback(self.host):
            return is_loopback(host)
        if self.host in _WILDCARDS:
            return host == "localhost" or _is_ip(host)
        return False

    def origin_allowed(self, origin: str, host_header: str) -> bool:
        """Whether a browser page from ``origin`` may change state here: the page's own origin
        (this server's, as the request's Host names it) or a ``--cors-origin``."""
        if origin in self.cors_origins:
            return True
        parts = urllib.parse.urlsplit(origin)
        return parts.scheme in ("http", "https") and parts.netloc.lower() == host_header.lower()


def _flag(name: str) -> str:
    return {"timeout_s": "timeout", "read_timeout_s": "read-timeout", "shutdown_timeout_s": "shutdown-timeout",
            "max_upload_bytes": "max-upload-mb"}.get(name, name.replace("_", "-"))


def _host_only(host_header: str) -> str:
    """The host of a ``Host`` header, lower case, without its port or IPv6 brackets."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else ""
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses, which only this machine can reach."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
