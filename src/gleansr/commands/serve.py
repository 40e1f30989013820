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
    p.add_argument("--precision", default="fp32", help="precision when a request names none (default: fp32)")
    p.add_argument("--max-models", type=int, default=2, help="models kept in memory (default: 2)")
    p.add_argument("--max-queue", type=int, default=16, help="waiting requests before answering 503 (default: 16)")
    p.add_argument("--max-batch", type=int, default=8, help="requests run in one forward pass (default: 8; 1: none)")
    p.add_argument("--max-upload-mb", type=float, default=20, help="largest upload in MB (default: 20)")
    p.add_argument("--max-pixels", type=int, default=4096 * 4096, help="largest image in pixels (default: 4096x4096)")
    p.add_argument("--timeout", type=float, default=60, help="time limit per request in seconds (default: 60)")
    p.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                   help="allow browser pages from ORIGIN to call the API (repeatable; default: none)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])


def run(args: argparse.Namespace) -> int:
    from ..errors import GleanError

    try:
        import uvicorn
        from PIL import Image

        from ..serve.app import create_app
        from ..serve.catalog import find_model, model_catalog, precisions
        from ..serve.config import ServeConfig, is_loopback
    except ImportError as exc:
        raise GleanError(f"gleansr serve needs the web extra ({exc.name} is missing): "
                         "pip install 'gleansr[serve]'") from None
    for flag in ("max_models", "max_queue", "max_batch", "port"):
        if getattr(args, flag) < (0 if flag == "port" else 1):
            raise GleanError(f"--{flag.replace('_', '-')} must be at least {0 if flag == 'port' else 1}")
    if args.model and not find_model(args.model, model_catalog()).present:
        raise GleanError(f"the weights of {args.model} are not installed; download them once "
                         f"(`gleansr upscale --model {args.model} --download IMAGE`) or choose another --model")
    if args.precision not in precisions():
        raise GleanError(f"--precision must be one of {', '.join(precisions())}, got {args.precision!r}")
    if not is_loopback(args.host):
        print(f"gleansr: warning: serving on {args.host}: anyone who can reach this machine can use the server; "
              "there is no authentication", file=sys.stderr)
    # This process is the server: Pillow's own decompression-bomb limit follows the server's.
    Image.MAX_IMAGE_PIXELS = args.max_pixels
    config = ServeConfig(default_model=args.model, device=args.device, precision=args.precision,
                         max_models=args.max_models, max_queue=args.max_queue, max_batch=args.max_batch,
                         max_upload_bytes=int(args.max_upload_mb * 1024 * 1024), max_pixels=args.max_pixels,
                         timeout_s=args.timeout, cors_origins=tuple(args.cors_origin))
    app = create_app(config)
    print(f"gleansr: serving on http://{args.host}:{args.port}/ (API description at /openapi.json); Ctrl-C stops", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0
