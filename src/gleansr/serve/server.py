"""Running the app: the listening socket, uvicorn's own limits, and a deadline on request heads.

uvicorn bounds what it can: requests in flight (``limit_concurrency``: beyond it, 503 at once),
idle keep-alive connections (``timeout_keep_alive``), the size of a request's head (h11's
``max_incomplete_event_size``) and the time requests in flight get at shutdown
(``timeout_graceful_shutdown``). It has no deadline on receiving a request's head, so a client
could hold a connection (a file descriptor) forever by sending nothing or a byte at a time:
:class:`_HeadDeadline` closes it after ``read_timeout_s``; the app bounds the body the same way.
Connections beyond what this process's file-descriptor limit leaves room for are closed as soon
as they are accepted (asyncio, out of descriptors, would log and retry thousands of times a
second). The socket is bound here, before anything is printed, so a busy port is one line and exit 2.
"""
from __future__ import annotations

import errno
import logging
import os
import resource
import socket
import time

from ..errors import GleanError
from .config import ServeConfig

log = logging.getLogger("gleansr.serve")
KEEP_ALIVE_S = 5  # an idle connection is closed after this long
MAX_HEAD_BYTES = 16 * 1024  # request line and headers
SPARE_FDS = 48  # descriptors kept free for what requests open (temporary files, model files, threads)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``; GleanError in one line when it cannot be had."""
    if not 0 <= port <= 65535:
        raise GleanError(f"--port must be between 0 and 65535, got {port}")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise GleanError(f"--host {host}: not an address of this machine ({exc.strerror})") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise GleanError(f"port {port} on {host} is in use by another program; stop it or pick another "
                             "--port") from None
        raise GleanError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def run(app, config: ServeConfig, sock: socket.socket, log_level: str) -> None:
    """Serve ``app`` on ``sock`` until SIGINT/SIGTERM, with the limits of ``config``."""
    import uvicorn

    handler = logging.StreamHandler()  # the app's own lines (disconnects, deadlines, failures), as uvicorn's look
    handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
    log.addHandler(handler)
    log.setLevel(log_level.upper())
    log.propagate = False
    server = uvicorn.Server(uvicorn.Config(
        app, http=_guarded_protocol(config.read_timeout_s, max_open_connections()), log_level=log_level,
        timeout_keep_alive=KEEP_ALIVE_S, limit_concurrency=config.max_connections,
        timeout_graceful_shutdown=max(1, round(config.shutdown_timeout_s)),
        h11_max_incomplete_event_size=MAX_HEAD_BYTES))
    server.run(sockets=[sock])


def max_open_connections() -> int:
    """How many connections this process can hold open and still have ``SPARE_FDS`` descriptors
    for its work: its soft RLIMIT_NOFILE less what is open now."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        open_now = len(os.listdir("/proc/self/fd"))
    except OSError:  # not Linux
        open_now = 64
    limit = soft if soft != resource.RLIM_INFINITY else 1 << 20
    return max(1, limit - open_now - SPARE_FDS)


def _guarded_protocol(seconds: float, max_connections: int):
    """uvicorn's h11 protocol, closing a connection whose request head has not arrived ``seconds``
    after the connection opened or the previous answer was sent, and a connection beyond
    ``max_connections`` open at once (one log line per 10 s of those)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    refused = {"count": 0, "logged": 0.0}

    class _Guarded(H11Protocol):
        _timer = None
        _waiting_since_cycle = None

        def _arm(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
            self._waiting_since_cycle = self.cycle  # a new request replaces the cycle
            self._timer = self.loop.call_later(seconds, self._late)

        def _late(self) -> None:
            if self.cycle is self._waiting_since_cycle and not self.transport.is_closing():
                client = "%s:%d" % self.client if self.client else "a client"
                log.info("%s sent no complete request within %g s; connection closed", client, seconds)
                self.transport.close()

        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                refused["count"] += 1
                if time.monotonic() - refused["logged"] > 10:
                    refused["logged"] = time.monotonic()
                    log.warning("%d connections open, the most this process's file descriptors allow; closing "
                                "new ones (%d so far)", len(self.connections) - 1, refused["count"])
                transport.abort()
                return
            self._arm()

        def on_response_complete(self) -> None:
            self._arm()  # before the next pipelined request (if any) starts its own cycle
            super().on_response_complete()

        def connection_lost(self, exc) -> None:
            if self._timer is not None:
                self._timer.cancel()
            super().connection_lost(exc)

    return _Guarded
