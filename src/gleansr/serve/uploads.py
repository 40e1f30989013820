"""Uploaded bytes in, PNG bytes out: parsing, sniffing, limits and the refusal of large inputs.

Decoding goes through :func:`gleansr.pipeline.images.load_image` on a file in the server's private
temporary folder, so an upload is read exactly as the CLI reads the same file and gets the same
message (the client's file name stands in for the path; it is never used on disk).
"""
from __future__ import annotations

import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..errors import ImageError, OutOfMemory
from ..pipeline.images import LoadedImage, encode_image, load_image, looks_like_image, quantize
from ..pipeline.inmemory import to_loaded, to_planes
from ..pipeline.limits import Limits, TooManyPixels, decode_slot, memory_guard
from .catalog import ModelInfo, facts
from .errors import api_error, echo

_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}


@contextmanager
def scratch(root: Path) -> Iterator[Path]:
    """A fresh folder under the server's private ``root``, removed with all it holds on exit."""
    folder = Path(tempfile.mkdtemp(prefix="req-", dir=root))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def display_name(filename: str | None) -> str:
    """A client's file name fit for a message: its last component, printable, short."""
    base = re.split(r"[\\/]", filename or "")[-1]
    base = re.sub(r"[^\w.\- ]", "_", base)[:80].strip()
    return base or "upload"


def parse_bool(name: str, value: str | None) -> bool:
    text = (value or "").strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise api_error("bad_parameter", f"{name} must be true or false, got {echo(value)}")


def parse_scale(value: str | None) -> int | None:
    """An optional integer factor >= 1 (None when absent); 400 otherwise."""
    text = (value or "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise api_error("bad_parameter", f"scale must be an integer of at least 1, got {echo(value)}")
    return int(text)


def parse_multipart(body: bytes, content_type: str, max_parts: int = 16) -> tuple[bytes | None, str | None, dict[str, str]]:
    """(image bytes, its file name, the text fields) of a multipart/form-data body, in memory; 413
    as soon as it has more than ``max_parts`` parts. CPU-bound: the server calls it in a worker thread."""
    from python_multipart.exceptions import MultipartParseError
    from python_multipart.multipart import MultipartParser, parse_options_header

    boundary = parse_options_header(content_type)[1].get(b"boundary")
    if not boundary:
        raise api_error("bad_request", "the multipart upload has no boundary in its Content-Type")
    parts: list[dict] = []
    field, value = bytearray(), bytearray()

    def header_end() -> None:
        parts[-1]["headers"][bytes(field).lower()] = bytes(value)
        field.clear()
        value.clear()

    def part_begin() -> None:
        if len(parts) >= max_parts:
            raise api_error("too_many_parts", f"the multipart upload has more than {max_parts} parts; send the "
                                              "image and at most a few fields")
        parts.append({"headers": {}, "data": bytearray()})

    parser = MultipartParser(boundary, {
        "on_part_begin": part_begin,
        "on_header_field": lambda d, s, e: field.extend(d[s:e]),
        "on_header_value": lambda d, s, e: value.extend(d[s:e]),
        "on_header_end": header_end,
        "on_part_data": lambda d, s, e: parts[-1]["data"].extend(d[s:e]),
    })
    try:
        parser.write(body)
        parser.finalize()
    except MultipartParseError as exc:
        raise api_error("bad_request", f"the multipart upload cannot be parsed ({exc})") from None
    image, filename, fields = None, None, {}
    for part in parts:
        options = parse_options_header(part["headers"].get(b"content-disposition", b""))[1]
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" in options or name in ("image", "file"):
            if image is not None:
                raise api_error("bad_request", "send one image per request")
            image, filename = bytes(part["data"]), options.get(b"filename", b"").decode("utf-8", "replace")
        else:
            fields[name] = part["data"].decode("utf-8", "replace")
    return image, filename, fields


def decode_upload(data: bytes, name: str, limits: Limits, root: Path, retry_after_s: int = 1,
                  before_decoding: Callable[[int, int], None] | None = None) -> LoadedImage:
    """The upload as the CLI would load it; ApiError with the CLI's sentence: 400 empty or damaged
    (every truncated format alike), 413 over ``limits`` (from the header, nothing decoded), 415 not
    an image, 503 out of memory. ``before_decoding(width, height)`` (the upright size, from the
    header) may refuse a large image before it costs its decode."""
    def judge_large(width: int, height: int) -> None:  # a small image's decode costs nothing: judged after it
        if width * height > limits.small_pixels:
            before_decoding(width, height)

    with scratch(root) as folder:
        path = folder / "upload"
        path.write_bytes(data)
        try:
            return load_image(path, limits, judge_large if before_decoding is not None else None)
        except TooManyPixels as exc:
            raise api_error("too_many_pixels", str(exc).replace(str(path), name)) from None
        except OutOfMemory as exc:
            raise api_error("out_of_memory", str(exc).replace(str(path), name),
                            {"Retry-After": str(retry_after_s)}) from None
        except ImageError as exc:
            message = str(exc).replace(str(path), name)
            code = "empty_upload" if not data else "invalid_image" if looks_like_image(data) else "not_an_image"
            raise api_error(code, message) from None


def prepare(image: LoadedImage, name: str, upscaler, limits: Limits) -> np.ndarray:
    """The image cropped and resized to the model's input by ``upscaler.prepare`` (the CLI's rule;
    :class:`~gleansr.pipeline.policy.Refusal` when the policy says no),
    as the float32 (H, W, C) array the engine queues (C = 1|2 gray(+alpha), 3|4 RGB(+alpha)).
    Runs in the request's worker thread under a decode slot, so the model's device lock covers
    only the model."""
    with decode_slot(limits, image.rgb.shape[0] * image.rgb.shape[1]), memory_guard(f"resize {name}"):
        return np.ascontiguousarray(to_planes(upscaler.prepare(image, name).image), dtype=np.float32)


def check_size(image: LoadedImage | tuple[int, int], name: str, model: ModelInfo, resize: bool) -> None:
    """The input policy's verdict for this upload, or its ``(width, height)`` (the CLI's sentence);
    422 when it refuses."""
    from ..pipeline.policy import Resize, size_verdict

    width, height = image if isinstance(image, tuple) else image.rgb.shape[1::-1]
    verdict = size_verdict(width, height, facts(model), Resize.ANY if resize else Resize.UP, name=name)
    if not verdict.ok:
        raise api_error(verdict.code, verdict.sentence)


def to_array(image: LoadedImage) -> np.ndarray:
    """The image as ``Upscaler.upscale`` takes it, in its source's depth (uint8 or uint16, so the
    model's input is quantised as the CLI's is): (H, W, C), C = 1|2 gray(+alpha), 3|4 RGB(+alpha)."""
    return np.ascontiguousarray(quantize(to_planes(image), 16 if image.bit_depth == 16 else 8))


def encode_png(result: np.ndarray, source: LoadedImage) -> bytes:
    """The SR array (float in [0, 1] as :func:`prepare` gives, or uint8/uint16 as :func:`to_array`
    gives) as PNG bytes with the source's bit depth, greyness, alpha, ICC profile and EXIF."""
    out = to_loaded(result)  # the planes read back: colour, alpha
    return encode_image(out.rgb, ".png", out.alpha, bit_depth=source.bit_depth, grayscale=source.grayscale,
                        icc_profile=source.icc_profile, exif=source.exif)
