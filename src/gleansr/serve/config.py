"""The server's settings, with safe defaults (loopback, size limits, no CORS)."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass


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
    max_output_pixels: int = 8192 * 8192  # largest whole photo (faces=true) returned
    timeout_s: float = 60.0  # per request, queue and run included
    retry_after_s: int = 1
    cors_origins: tuple[str, ...] = ()  # none: browsers on other origins get no access


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses, which only this machine can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
