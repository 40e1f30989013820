"""``gleansr serve``: the web page and HTTP API on this machine (needs ``pip install 'gleansr[serve]'``)."""
from __future__ import annotations

import argparse
import sys

NAME = "serve"
HELP = "serve a web page and an HTTP API for super-resolution (local, offline)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default: 127.0.0.1, this machine only; 0.0.0.0 exposes it to the network)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    p.add_argument("--model", default=None, help="model used when a request names none (default: the bundled one)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    p.add_argument("--precision", default="fp32", help="precision when a request names none: fp32, bf16, fp16, or auto "
                   "(each loaded model's measured choice, see `gleansr precision`) (default: fp32)")
    p.add_argument("--max-models", type=int, default=2, help="models kept in memory (default: 2)")
    p.add_argument("--max-queue", type=int, default=16, help="waiting requests before answering 503 (default: 16)")
    p.add_argument("--max-batch", type=int, default=8, help="requests run in one forward pass (default: 8; 1: none)")
    p.add_argument("--max-upload-mb", type=float, default=20, help="largest upload in MB (default: 20)")
    p.add_argument("--max-pixels", type=int, default=4096 * 4096, help="largest image in pixels (default: 4096x4096)")
    p.add_argument("--timeout", type=float, default=60, help="time limit per request in seconds (default: 60)")
    p.add_argument("--read-timeout", type=float, default=30,
                   help="seconds a client has to send a request's head, and again its body (default: 30)")
    p.add_argument("--shutdown-timeout", type=float, default=10,
                   help="on Ctrl-C/SIGTERM, seconds requests in flight get to finish (default: 10)")
    p.add_argument("--max-connections", type=int, default=64,
                   help="requests handled at once; more get 503 at once (default: 64)")
    p.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                   help="allow browser pages from ORIGIN to call the API (repeatable; default: none)")
    p.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                   help="also answer requests addressed to NAME (a DNS name of this machine or of a proxy in "
                        "front of it; repeatable; default: only the bound address)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])


def run(args: argparse.Namespace) -> int:
    import math

    from ..errors import GleanError

    try:
        from PIL import Image

        from ..serve import server
        from ..serve.app import create_app
        from ..serve.catalog import find_model, model_catalog, precisions
        from ..serve.config import ServeConfig, is_loopback
    except ImportError as exc:
        raise GleanError(f"gleansr serve needs the web extra ({exc.name} is missing): "
                         "pip install 'gleansr[serve]'") from None
    if not (math.isfinite(args.max_upload_mb) and args.max_upload_mb > 0):
        raise GleanError(f"--max-upload-mb must be a number of megabytes above 0, got {args.max_upload_mb}")
    config = ServeConfig(default_model=args.model, device=args.device, precision=args.precision,
                         max_models=args.max_models, max_queue=args.max_queue, max_batch=args.max_batch,
                         max_upload_bytes=max(1, int(args.max_upload_mb * 1024 * 1024)), max_pixels=args.max_pixels,
                         timeout_s=args.timeout, read_timeout_s=args.read_timeout, max_connections=args.max_connections,
                         shutdown_timeout_s=args.shutdown_timeout,
                         cors_origins=tuple(args.cors_origin), host=args.host, allowed_hosts=tuple(args.allowed_host))
    if args.model and not find_model(args.model, model_catalog()).present:
        raise GleanError(f"the weights of {args.model} are not installed; download them once "
                         f"(`gleansr upscale --model {args.model} --download IMAGE`) or choose another --model")
    if args.precision not in precisions():
        raise GleanError(f"--precision must be one of {', '.join(precisions())}, got {args.precision!r}")
    sock = server.bind(args.host, args.port)
    if not is_loopback(args.host):
        print(f"gleansr: warning: serving on {args.host}: anyone who can reach this machine can use the server; "
              "there is no authentication", file=sys.stderr)
    # This process is the server: its own decode limits (from the header) decide, not Pillow's default.
    Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, config.max_pixels)
    app = create_app(config)
    port = sock.getsockname()[1]
    print(f"gleansr: serving on http://{args.host}:{port}/ (API description at /openapi.json); Ctrl-C stops",
          file=sys.stderr)
    server.run(app, config, sock, args.log_level)
    return 0
