"""The web app and HTTP API (FastAPI): routes, error answers, the static page.

``create_app(config)`` builds the application; ``gleansr serve`` runs it with uvicorn
(:mod:`.server`). Every request must name this server in its ``Host`` (DNS rebinding) and a
state-changing one may come only from this server's own page or a ``--cors-origin``. One
upload: read the body (capped in size and in time), parse a multipart form in a worker thread
(capped in parts), decode the image as the CLI would (its header judged by the decode limits
first) and crop/resize it to the model's input in a worker thread under a decode slot, refuse
inputs larger than the model's unless ``resize``, queue it on the :class:`~.engine.Engine`,
wait (time limit, client disconnect), encode PNG. With ``faces=true`` a face model restores a whole photo
(``Upscaler.upscale_photo``): no input-size refusal, one photo per run. Nothing is written outside
one private temporary folder.
"""
from __future__ import annotations

import asyncio
import base64
import logging
import shutil
import tempfile
import time
import urllib.parse
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from .. import __version__
from ..errors import GleanError, OutOfMemory, WeightsError
from ..pipeline.images import encode_image
from ..pipeline.policy import Refusal, face_model_verdict
from . import uploads
from .catalog import ModelInfo, default_model, facts, find_model, model_catalog, precisions
from .config import ServeConfig
from .engine import Engine, Job, QueueFull
from .errors import CODES, ApiError, api_error, echo

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static"
_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
_UPLOAD_TYPES = ("application/octet-stream", "image/", "multipart/form-data")
_CSP = "default-src 'self'; img-src 'self' blob: data:; connect-src 'self'; object-src 'none'; frame-ancestors 'none'"


class _ClientGone(Exception):
    """The client closed the connection before its answer was ready."""


def _default_loader(device: str):
    def load(name: str, precision: str):
        from ..pipeline.upscaler import Upscaler

        # the size check is the server's (check_size, 422); resize=true must reach the model
        return Upscaler(name, device=device, precision=precision, resize="any")
    return load


def create_app(config: ServeConfig = ServeConfig(), loader=None) -> FastAPI:
    """The application; ``loader(name, precision)`` builds an Upscaler (default: from the zoo) that
    resizes any input (``resize="any"``): the size check is the server's, per request."""
    engine = Engine(loader or _default_loader(config.device), device=config.device, max_models=config.max_models,
                    max_queue=config.max_queue, max_batch=config.max_batch, batch_wait_s=config.batch_wait_ms / 1000)
    temp_root = Path(tempfile.mkdtemp(prefix="gleansr-serve-"))  # mode 0700: this user's only

    @asynccontextmanager
    async def lifespan(_app):
        asyncio.get_running_loop().set_exception_handler(_quiet_resource_errors)
        try:
            yield
        finally:
            engine.close(timeout=config.shutdown_timeout_s)
            shutil.rmtree(temp_root, ignore_errors=True)

    # /openapi.json is the API's description; FastAPI's /docs and /redoc pages load their scripts from
    # a CDN, which this offline, same-origin-only server does not allow, so they are off.
    app = FastAPI(title="gleansr", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="GLEAN super-resolution on this machine. Errors are JSON: "
                              '`{"error": {"code": "stable_code", "message": "one sentence"}}`.')
    app.state.config, app.state.engine, app.state.temp_root = config, engine, temp_root
    if config.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(config.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["*"], expose_headers=["*"])
    app.add_middleware(_Guard, config=config)
    app.add_middleware(_SecurityHeaders)
    _add_error_handlers(app)
    _add_routes(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


class _SecurityHeaders:
    """nosniff everywhere; the page may load only from this server (works offline, no leaks)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] += [(b"x-content-type-options", b"nosniff"),
                                       (b"content-security-policy", _CSP.encode())]
            await send(message)
        await self.app(scope, receive, send_with_headers if scope["type"] == "http" else send)


_RESOURCE_ERRORS = {"count": 0, "logged": 0.0}


def _quiet_resource_errors(loop: asyncio.AbstractEventLoop, context: dict) -> None:
    """The event loop's errors, with running out of file descriptors or memory as one line per
    10 s (asyncio retries accepting on its own, up to thousands of times a second, each
    with a traceback) instead of a flood."""
    exc = context.get("exception")
    if not isinstance(exc, (OSError, MemoryError)) or isinstance(exc, ConnectionError):
        loop.default_exception_handler(context)
        return
    _RESOURCE_ERRORS["count"] += 1
    if time.monotonic() - _RESOURCE_ERRORS["logged"] > 10:
        _RESOURCE_ERRORS["logged"] = time.monotonic()
        log.error("%s: %s (%d times so far)", context.get("message", "event loop"), exc, _RESOURCE_ERRORS["count"])


class _Guard:
    """Refuses, before any route runs: a ``Host`` that does not name this server (403
    ``host_not_allowed``: DNS rebinding, a misdirected proxy) and a state-changing request whose
    ``Origin`` is neither this server's page nor a ``--cors-origin`` (403 ``origin_not_allowed``:
    another site's page posting here)."""

    def __init__(self, app, config: ServeConfig):
        self.app, self.config = app, config

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            host, origin = headers.get("host", ""), headers.get("origin")
            error = None
            if not self.config.host_allowed(host):
                error = api_error("host_not_allowed", f"this server does not answer to the host {echo(host)}; "
                                                      "ask for it by its address, or start it with --allowed-host")
            elif scope["method"] not in _SAFE_METHODS and origin is not None \
                    and not self.config.origin_allowed(origin, host):
                error = api_error("origin_not_allowed", f"pages from {echo(origin)} may not use this server; "
                                                        "start it with --cors-origin to allow them")
            if error is not None:
                response = _error_response(error)
                response.headers["Connection"] = "close"
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _error_response(err: ApiError) -> JSONResponse:
    return JSONResponse(err.body(), status_code=err.status, headers=err.headers)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def on_api_error(_request, exc: ApiError):
        return _error_response(exc)

    @app.exception_handler(Exception)
    async def on_unexpected(request, exc: Exception):
        """Whatever escaped the routes is still one JSON sentence: the machine short of memory (or of
        threads, which is the same under an address-space limit) is 503, anything else 500."""
        if isinstance(exc, MemoryError) or (isinstance(exc, RuntimeError) and "new thread" in str(exc)):
            log.warning("%s %s: out of memory (%s)", request.method, request.url.path, type(exc).__name__)
            return _error_response(api_error("out_of_memory", "the server ran out of memory on this request; retry "
                                             "in a moment", {"Retry-After": str(app.state.config.retry_after_s)}))
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return _error_response(api_error("internal_error", "the server failed on this request; its log has the details"))

    @app.exception_handler(HTTPException)
    async def on_http_error(request, exc: HTTPException):
        if exc.status_code == 404:
            return _error_response(api_error("not_found", f"no such page or endpoint: {request.url.path}"))
        if exc.status_code == 405:
            return _error_response(api_error("method_not_allowed", f"{request.method} is not allowed on "
                                                                   f"{request.url.path}", exc.headers))
        return _error_response(ApiError(exc.status_code, "bad_request", str(exc.detail)))

    @app.exception_handler(RequestValidationError)
    async def on_bad_parameter(_request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "body"))
        return _error_response(api_error("bad_parameter", f"{where or 'a parameter'}: {first.get('msg', 'invalid')}"))


def _add_routes(app: FastAPI) -> None:
    config, engine = app.state.config, app.state.engine

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html")

    @app.get("/healthz", summary="Liveness and load")
    async def healthz():
        return {"status": "ok", "version": __version__, "device": config.device, "loaded": engine.loaded(),
                "queue": {"waiting": engine.pending(), "max": config.max_queue}, "stats": dict(engine.stats)}

    @app.get("/v1/models", summary="The models this server offers")
    async def models():
        catalog = model_catalog()
        return {"default": config.default_model or default_model(), "precisions": list(precisions()),
                "models": [m.to_json() for m in catalog.values()]}

    @app.post("/v1/upscale", summary="Super-resolve one image; answers image/png", response_class=Response,
              responses={200: {"content": {"image/png": {}}, "description": "the SR image (PNG)"},
                         **{s: {"description": d} for s, d in _ERROR_DOCS.items()}},
              openapi_extra={"requestBody": _UPLOAD_BODY})
    async def upscale(request: Request,
                      model: str | None = Query(None, description="a name from /v1/models (default: the server's)"),
                      precision: str | None = Query(None, description="fp32 | bf16 | fp16"),
                      resize: str | None = Query(None, description="true: shrink inputs larger than the model's"),
                      faces: str | None = Query(None, description="true: a whole photo, its faces restored by a "
                                                                  "face model, the rest bicubic"),
                      scale: str | None = Query(None, description="with faces: the photo's factor (default: "
                                                                  "the model's)"),
                      model_input: str | None = Query(None, description=_MODEL_INPUT_DOC)):
        return await _upscale(request, config, engine, {"model": model, "precision": precision, "resize": resize,
                                                        "faces": faces, "scale": scale, "model_input": model_input})


_ERROR_DOCS = {400: "bad parameter or unreadable image", 404: "unknown model", 409: "model weights not installed",
               413: "upload or pixel count over the limit", 415: "not an image",
               422: "input larger than the model's, refused by the model, or faces=true with another model",
               501: "faces=true, but face support is not installed on the server",
               503: "queue full (see Retry-After)", 504: "time limit reached"}
_UPLOAD_BODY = {"required": True, "content": {
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    "image/*": {"schema": {"type": "string", "format": "binary"}},
    "multipart/form-data": {"schema": {"type": "object", "required": ["image"], "properties": {
        "image": {"type": "string", "format": "binary"}, "model": {"type": "string"},
        "precision": {"type": "string"}, "resize": {"type": "boolean"}, "faces": {"type": "boolean"},
        "scale": {"type": "integer", "minimum": 1}}}}}}


@dataclass(frozen=True)
class _Ask:
    """One parsed request: the upload, the name to show for it, the model and what to do."""

    data: bytes
    name: str
    info: ModelInfo
    precision: str
    resize: bool
    photo_scale: int | None  # faces=true: a whole photo, upscaled by this factor


async def _read_body(request: Request, limit: int, seconds: float) -> bytes:
    """The request body, refused as soon as it exceeds ``limit`` bytes (413) or takes more than
    ``seconds`` to arrive (408: a slow client holds a connection, not the server)."""
    too_large = api_error("upload_too_large", f"the upload is larger than this server accepts ({limit:,} bytes)",
                          {"Connection": "close"})
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise too_large
    body = bytearray()
    try:
        async with asyncio.timeout(seconds):
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    raise too_large
    except TimeoutError:
        log.info("%s: upload not received within %g s (%s bytes so far); answered 408", _client(request),
                 seconds, f"{len(body):,}")
        raise api_error("upload_timeout", f"the upload did not arrive within {seconds:g} s; send it at once",
                        {"Connection": "close"}) from None
    except ClientDisconnect:
        raise _ClientGone(f"went away during its upload ({len(body):,} bytes received)") from None
    return bytes(body)


def _client(request: Request) -> str:
    return f"{request.client.host}:{request.client.port}" if request.client else "a client"


async def _parse(request: Request, config: ServeConfig, params: dict) -> _Ask:
    """The upload and its parameters from a raw or multipart request."""
    content_type = request.headers.get("content-type", "")
    if content_type and not content_type.lower().startswith(_UPLOAD_TYPES):
        raise api_error("unsupported_media_type", f"the upload's Content-Type is {echo(content_type)}; send the "
                                                  "image as image/*, application/octet-stream or multipart/form-data")
    body = await _read_body(request, config.max_upload_bytes, config.read_timeout_s)
    filename = None
    if content_type.lower().startswith("multipart/form-data"):
        body, filename, fields = await run_in_threadpool(uploads.parse_multipart, body, content_type,
                                                         config.max_parts)
        if body is None:
            raise api_error("bad_request", "the multipart upload has no file part (name it 'image')")
        params = {**params, **{k: v for k, v in fields.items() if k in params}}
    catalog = model_catalog()
    name = params["model"] or config.default_model or default_model()
    if not name:
        raise api_error("model_unavailable", "no model is installed; GET /v1/models lists what can be downloaded")
    try:
        info = find_model(name, catalog)
    except GleanError as exc:
        raise api_error("unknown_model", str(exc)) from None
    if not info.present:
        raise api_error("model_unavailable", f"the weights of {info.name} are not installed on this server; download them "
                                             f"once (`gleansr upscale --model {info.name} --download IMAGE`) and retry")
    precision = params["precision"] or config.precision
    if precision not in precisions():
        raise api_error("bad_parameter", f"precision must be one of {', '.join(precisions())}, got {echo(precision)}")
    filename = filename or urllib.parse.unquote(request.headers.get("x-filename", ""))  # percent-encoded: any name
    return _Ask(body, uploads.display_name(filename), info, precision, uploads.parse_bool("resize", params["resize"]),
                _photo_scale(params, info))


def _photo_scale(params: dict, info: ModelInfo) -> int | None:
    """The whole photo's factor when faces=true (None otherwise): only a face model restores faces,
    and only a face model takes a scale other than its own, as ``gleansr upscale --faces``."""
    scale = uploads.parse_scale(params["scale"])
    if not uploads.parse_bool("faces", params["faces"]):
        if scale not in (None, info.scale):
            raise api_error("bad_parameter", f"scale: {info.name} upscales by {info.scale}; "
                                              "other scales need faces=true and a face model")
        return None
    verdict = face_model_verdict(facts(info))
    if not verdict.ok:
        raise api_error(verdict.code, verdict.sentence)
    from ..pipeline.face_detect import check_installed  # imports torch: only for faces=true

    try:
        check_installed()
    except GleanError as exc:
        raise api_error("faces_unavailable", str(exc)) from None
    return scale or info.scale


def _check_output(image, ask: _Ask, max_pixels: int) -> None:
    """A whole photo's result must stay under the server's output limit (413): a large factor on a
    large photo would otherwise take the memory of the whole machine."""
    h, w = image.rgb.shape[:2]
    out_w, out_h = w * ask.photo_scale, h * ask.photo_scale
    if out_w * out_h > max_pixels:
        raise api_error("too_many_pixels", f"{ask.name} upscaled by {ask.photo_scale} would be {out_w}x{out_h} "
                                           f"({out_w * out_h:,} pixels), more than this server returns "
                                           f"({max_pixels:,}); ask a smaller scale")


async def _wait_disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _wait(request: Request, engine: Engine, job: Job, deadline: float):
    """The job's result, or the exception its run raised; cancels the job when the client goes
    away or the time limit passes."""
    result = asyncio.wrap_future(job.future)
    gone = asyncio.ensure_future(_wait_disconnect(request))
    try:
        done, _ = await asyncio.wait({result, gone}, timeout=max(0.0, deadline - time.perf_counter()),
                                     return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if result in done:
        return result.exception() or result.result()
    engine.cancel(job)
    if gone in done:
        raise _ClientGone("went away while its image waited or ran")
    engine.stats["timed_out"] += 1
    raise api_error("timeout", "the request took longer than this server's time limit; retry when it is less busy")


async def _upscale(request: Request, config: ServeConfig, engine: Engine, params: dict) -> Response:
    start = time.perf_counter()
    deadline = start + config.timeout_s
    show_input = uploads.parse_bool("model_input", params["model_input"])
    try:
        ask = await _parse(request, config, params)
        try:
            engine.check_room()  # full already: no decoding for a job that cannot wait
            image, array = await run_in_threadpool(_decode_and_prepare, ask, config, engine,
                                                   request.app.state.temp_root)
            decoded = time.perf_counter()
            job = engine.submit(ask.info.name, ask.precision, array, ask.photo_scale)
        except QueueFull:
            raise _queue_full(config) from None
        result = await _result(await _wait(request, engine, job, deadline), ask, config)
    except _ClientGone as gone:
        engine.stats["disconnected"] += 1
        log.info("%s %s", _client(request), gone)  # one line: a client that leaves is not an error
        return Response(status_code=499)
    ran = time.perf_counter()
    faces = None
    if ask.photo_scale:  # a FaceResult: the photo, and how many faces the model restored
        result, faces = result.image, len(result.restored)
    png = await run_in_threadpool(uploads.encode_png, result, image)
    headers = _result_headers(ask.info, ask.precision, image, result, job, (start, decoded, ran, time.perf_counter()))
    if faces is not None:
        headers["X-Gleansr-Faces"] = str(faces)
    elif show_input:
        headers["X-Gleansr-Model-Input"] = await run_in_threadpool(_model_input_uri, array)
    return Response(png, media_type="image/png", headers=headers)


_MODEL_INPUT_DOC = ("true: add the image the model saw (after crop and resize to its input) as a PNG data URI in the "
                    "X-Gleansr-Model-Input header; not with faces=true")


def _model_input_uri(seen) -> str:
    """What the model saw: the array the request queued (cropped and resized to the model's input
    by the upscaler that ran it), as a ``data:image/png;base64,...`` URI (8-bit, no metadata): the
    page's *before* view."""
    from ..pipeline.inmemory import to_loaded

    seen = to_loaded(seen)
    png = encode_image(seen.rgb, ".png", seen.alpha, bit_depth=8, grayscale=seen.grayscale)
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _decode_and_prepare(ask: _Ask, config: ServeConfig, engine: Engine, root: Path):
    """(the decoded upload, the array to queue) in a worker thread: the size rule (a large image
    judged from its header, before its decode), decoding, and the crop and resize to the model's
    input, each under a decode slot and never under the device lock."""
    judge = None if ask.photo_scale else lambda w, h: uploads.check_size((w, h), ask.name, ask.info, ask.resize)
    image = uploads.decode_upload(ask.data, ask.name, config.limits, root, config.retry_after_s, judge)
    if ask.photo_scale:
        _check_output(image, ask, config.max_output_pixels)
        return image, uploads.to_array(image)
    uploads.check_size(image, ask.name, ask.info, ask.resize)
    try:
        upscaler = engine.upscaler(ask.info.name, ask.precision)
    except OutOfMemory as exc:
        raise _out_of_memory(exc, config) from None
    except GleanError as exc:
        raise _weights_unavailable(exc, ask) from None
    try:
        return image, uploads.prepare(image, ask.name, upscaler, config.limits)
    except OutOfMemory as exc:
        raise _out_of_memory(exc, config) from None
    except Refusal as exc:
        raise api_error(exc.code if exc.code in CODES else "input_rejected", exc.sentence) from None
    except GleanError as exc:
        raise api_error("input_rejected", str(exc)) from None


def _weights_unavailable(exc: GleanError, ask: _Ask) -> ApiError:
    """A model that cannot be loaded is this server's problem, not the request's: 503, logged in
    full, answered without the server's paths (WeightsError's ``public`` sentence, else a generic one)."""
    log.error("cannot load %s (%s): %s", ask.info.name, ask.precision, exc)
    public = exc.public if isinstance(exc, WeightsError) else (
        f"the model {ask.info.name} cannot be loaded on this server (its weights are unusable); its operator "
        "finds the reason in the server's log")
    return api_error("weights_unavailable", public)


def _queue_full(config: ServeConfig) -> ApiError:
    return api_error("queue_full", "the server is busy (its queue is full); retry in a moment",
                     {"Retry-After": str(config.retry_after_s)})


def _out_of_memory(exc: Exception, config: ServeConfig) -> ApiError:
    return api_error("out_of_memory", str(exc), {"Retry-After": str(config.retry_after_s)})


async def _result(outcome, ask: _Ask, config: ServeConfig):
    """The model's result, or the model run's failure as one sentence (the trace goes to the log)."""
    if not isinstance(outcome, BaseException):
        return outcome
    if isinstance(outcome, ApiError):
        raise outcome
    if isinstance(outcome, (MemoryError, OutOfMemory)):
        log.error("out of memory upscaling %s with %s: %s", ask.name, ask.info.name, outcome)
        raise api_error("out_of_memory", f"the server ran out of memory upscaling {ask.name}; retry in a moment",
                        {"Retry-After": str(config.retry_after_s)})
    if isinstance(outcome, WeightsError):  # the model was unloaded and loaded again for this run
        raise _weights_unavailable(outcome, ask)
    if isinstance(outcome, GleanError):
        raise api_error("input_rejected", str(outcome))
    log.error("upscaling %s with %s failed", ask.name, ask.info.name, exc_info=outcome)
    raise api_error("internal_error", "the model run failed on the server; its log has the details")


def _result_headers(info: ModelInfo, precision: str, image, result, job: Job, marks: tuple) -> dict[str, str]:
    start, decoded, ran, end = marks
    queue_ms = ((job.started or ran) - job.submitted) * 1000
    timing = {"decode": (decoded - start) * 1000, "queue": queue_ms, "run": job.run_s * 1000,
              "encode": (end - ran) * 1000, "total": (end - start) * 1000}
    h, w = image.rgb.shape[:2]
    scale = job.photo_scale or info.scale
    return {"X-Gleansr-Model": info.name, "X-Gleansr-Precision": precision, "X-Gleansr-Scale": str(scale),
            "X-Gleansr-Input-Size": f"{w}x{h}", "X-Gleansr-Output-Size": f"{result.shape[1]}x{result.shape[0]}",
            "X-Gleansr-Batch-Size": str(job.batch_size), "X-Gleansr-Total-Ms": f"{timing['total']:.1f}",
            "Server-Timing": ", ".join(f"{k};dur={v:.1f}" for k, v in timing.items())}
