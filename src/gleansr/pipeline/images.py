"""Image files in and out: every common mode, 8 and 16 bits, alpha, EXIF orientation.

Images become float32 arrays in [0, 1]: ``rgb`` (H, W, 3) and an optional ``alpha`` (H, W).
Pillow decodes everything. Pillow has no 48/64-bit colour mode, so 16-bit colour PNG and TIFF
are decoded twice through Pillow's own decoder, once keeping each sample's high byte and once its
low byte, and 16-bit files are written by the small PNG and TIFF encoders of ``_encode16``.

The one image module: one reader (:func:`load_image`, with the uint8 view :func:`read_rgb_uint8` that training
and evaluation share), one extension table (:data:`FORMATS`), one encoder/writer (:func:`encode_image`,
:func:`save_image`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import struct
import sys
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image, features

from ..atomic import atomic_write_bytes
from ..errors import ImageError
from ._encode16 import png16_bytes, tiff16_bytes
from .limits import DEFAULT_LIMITS, Limits, decode_slot, memory_guard


@dataclass(frozen=True)
class ImageFormat:
    """What a writable file format can hold."""

    pillow_name: str
    holds_alpha: bool
    max_bit_depth: int


# Writable formats by lower-case extension; folder scans pick up exactly these extensions.
FORMATS: dict[str, ImageFormat] = {
    ".png": ImageFormat("PNG", holds_alpha=True, max_bit_depth=16),
    ".tif": ImageFormat("TIFF", holds_alpha=True, max_bit_depth=16),
    ".tiff": ImageFormat("TIFF", holds_alpha=True, max_bit_depth=16),
    ".webp": ImageFormat("WEBP", holds_alpha=True, max_bit_depth=8),
    ".bmp": ImageFormat("BMP", holds_alpha=False, max_bit_depth=8),  # Pillow reads BMP alpha as RGB
    ".jpg": ImageFormat("JPEG", holds_alpha=False, max_bit_depth=8),
    ".jpeg": ImageFormat("JPEG", holds_alpha=False, max_bit_depth=8),
}

_ORIENTATION_TAG = 0x0112
_GRAY16_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
# How Pillow unpacks 16-bit colour PNG/TIFF samples (keeping 8 bits); see _decode_16bit_colour.
_COLOUR16_RAWMODES = frozenset(
    {"RGB;16B", "RGB;16L", "RGB;16N", "RGBA;16B", "RGBA;16L", "RGBA;16N", "LA;16B"}
)


@dataclass
class LoadedImage:
    """A decoded image, already turned upright by its EXIF orientation.

    ``rgb``: float32 (H, W, 3) in [0, 1]; grayscale sources are replicated to three channels.
    ``alpha``: float32 (H, W) in [0, 1], or None when the source has no transparency.
    ``bit_depth``: 16 for 16-bit and float sources, else 8: the depth worth writing back.
    ``grayscale``: the source had no colour, so the output can be written as grayscale.
    ``mode``/``format``: Pillow's mode and format name of the file as stored.
    ``icc_profile``/``exif``: raw metadata to carry over (EXIF without its orientation tag).
    """

    rgb: np.ndarray
    alpha: np.ndarray | None
    bit_depth: int
    grayscale: bool
    mode: str
    format: str | None
    icc_profile: bytes | None = None
    exif: bytes | None = None

    def rebuilt(self, rgb: np.ndarray) -> "LoadedImage":
        """This image's metadata around new pixels ``rgb`` (H', W', 3), e.g. its super-resolved form:
        the alpha resized to match (MATLAB bicubic), a grayscale source's colour collapsed to grey,
        bit depth, mode, ICC profile and EXIF carried over, so every output keeps its source's kind."""
        alpha = None
        if self.alpha is not None:
            from ..imaging.imresize import imresize

            alpha = np.clip(imresize(self.alpha, output_shape=rgb.shape[:2]), 0, 1).astype(np.float32)
        if self.grayscale:
            rgb = np.repeat(rgb.mean(axis=2, keepdims=True), 3, axis=2)
        return dataclasses.replace(self, rgb=rgb, alpha=alpha)


def format_can_hold(suffix: str, *, alpha: bool, bit_depth: int) -> bool:
    """Whether the format of extension ``suffix`` (".jpg") can store this alpha and bit depth."""
    fmt = FORMATS.get(suffix.lower())
    return fmt is not None and (fmt.holds_alpha or not alpha) and bit_depth <= fmt.max_bit_depth


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turn every decoding failure, including oversized images, into a one-line ImageError."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except FileNotFoundError:
        raise ImageError(f"cannot read image {path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"cannot read image {path}: it is a folder") from None
    except Image.UnidentifiedImageError:
        raise ImageError(f"cannot read image {path}: not an image file Pillow can decode") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        try:
            width, height = header_size(path)
            size = f"it is {width}x{height} ({width * height:,} pixels), "
        except Exception:  # noqa: BLE001 - an image already open, or gone: the sentence goes without its size
            size = ""
        raise ImageError(f"cannot read image {path}: {size}too large for Pillow's decompression-bomb limit "
                         f"(PIL.Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS:,})") from None
    except (OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImageError(f"cannot read image {path}: truncated or corrupt ({reason})") from None


def _rawmode(tile: tuple) -> str:
    args = tile[3]
    return args if isinstance(args, str) else args[0]


def _with_rawmode(tile: tuple, rawmode: str) -> tuple:
    args = rawmode if isinstance(tile[3], str) else (rawmode, *tile[3][1:])
    return tile._replace(args=args) if hasattr(tile, "_replace") else (*tile[:3], args)


def _is_16bit_colour(im: Image.Image) -> bool:
    return bool(im.tile) and im.mode in ("RGB", "RGBA") and _rawmode(im.tile[0]) in _COLOUR16_RAWMODES


def _low_byte_rawmode(rawmode: str) -> str:
    """The rawmode that unpacks each 16-bit sample's low byte instead of its high byte."""
    order = rawmode[-1]
    if order == "N":
        order = "L" if sys.byteorder == "little" else "B"
    return rawmode[:-1] + {"B": "L", "L": "B"}[order]


def _decode_16bit_colour(path: Path) -> np.ndarray:
    """Samples of a 16-bit colour PNG/TIFF as uint16 (H, W, C), C = 2 (gray+alpha), 3 or 4.

    Pillow unfilters/decompresses the file and its unpacker keeps one byte per sample; swapping
    the byte order in the tile's rawmode selects the other byte, so two decodes give all 16 bits.
    """
    with Image.open(path) as im:
        rawmode = _rawmode(im.tile[0])
        if rawmode.startswith("LA;16"):
            # Gray+alpha 16-bit PNG: 4 bytes per pixel, which plain 8-bit RGBA copies verbatim.
            im.tile = [_with_rawmode(t, "RGBA") for t in im.tile]
            im.load()
            pairs = np.asarray(im).astype(np.uint16).reshape(im.height, im.width, 2, 2)
            return pairs[..., 0] << 8 | pairs[..., 1]
        im.load()
        high = np.asarray(im).astype(np.uint16)
    with Image.open(path) as im:
        im.tile = [_with_rawmode(t, _low_byte_rawmode(_rawmode(t))) for t in im.tile]
        im.load()
        return high << 8 | np.asarray(im).astype(np.uint16)


def _decode(im: Image.Image) -> tuple[np.ndarray, int]:
    """Pixels as float32 (H, W, C) in [0, 1], C = 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA; bit depth."""
    if im.mode in _GRAY16_MODES:
        # Mode "I" is how some Pillow versions open 16-bit gray; values beyond 16 bits are clipped.
        gray = np.clip(np.asarray(im, dtype=np.float32) / 65535, 0, 1)
        return gray[..., None], 16
    if im.mode == "F":
        return np.clip(np.asarray(im, dtype=np.float32), 0, 1)[..., None], 16
    has_alpha = "A" in im.getbands() or "transparency" in im.info
    if im.mode in ("1", "L", "LA", "La"):
        target = "LA" if has_alpha else "L"
    else:
        target = "RGBA" if has_alpha else "RGB"  # palette, CMYK, YCbCr, premultiplied RGBa ...
    pixels = np.asarray(im.convert(target), dtype=np.float32) / 255
    return pixels.reshape(im.height, im.width, len(target)), 8


def _orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to (H, W, C) pixels, as ImageOps.exif_transpose does."""
    return {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],
        8: lambda a: np.rot90(a, 1),
    }.get(orientation, lambda a: a)(pixels)


def _exif_to_carry(im: Image.Image, exif: Image.Exif) -> bytes | None:
    """The EXIF block to write back, or None; TIFF tags also show up as EXIF and are not carried."""
    if "exif" not in im.info:
        return None
    try:
        return exif.tobytes()
    except (ValueError, TypeError, struct.error):  # odd tag types: carrying EXIF is optional
        return None


def header_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(width, height) from the file's header, nothing decoded, whatever Pillow's own
    decompression-bomb limit says (its plugins read the header; :class:`Limits` judges it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as im:
                return im.size
        except Image.DecompressionBombError:  # over twice Pillow's limit: ask its plugins directly
            pass
    with open(path, "rb") as fp:
        prefix = fp.read(16)
        for factory, accept in Image.OPEN.values():
            accepted = accept is None or accept(prefix)
            if accepted and not isinstance(accepted, str):
                fp.seek(0)
                with contextlib.suppress(SyntaxError, IndexError, TypeError, struct.error):
                    return factory(fp, str(path)).size
    raise Image.UnidentifiedImageError(f"cannot identify image file {path}")


def upright_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(width, height) as :func:`load_image` will give them (turned by an EXIF orientation the
    header carries), from the header alone: what a size rule can judge before anything is decoded."""
    width, height = header_size(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with contextlib.suppress(Exception), Image.open(path) as im:  # no orientation known: as stored
            exif = Image.Exif()
            if im.info.get("exif"):  # JPEG, WebP, PNG with eXIf before its pixels: read at open
                exif.load(im.info["exif"])
            elif im.format == "TIFF":
                exif = im.getexif()  # the tags are the header
            if exif.get(_ORIENTATION_TAG, 1) in (5, 6, 7, 8):
                return height, width
    return width, height


def looks_like_image(data: bytes) -> bool:
    """Whether ``data`` starts as a format Pillow reads starts (its plugins' signatures), whole or
    not: a damaged image and a file that is no image at all deserve different answers."""
    Image.init()
    prefix = data[:16]
    for _factory, accept in Image.OPEN.values():
        with contextlib.suppress(Exception):  # a plugin's check on too short a prefix
            hit = accept is not None and accept(prefix)
            if hit and not isinstance(hit, str):
                return True
    return False


def load_image(path: str | os.PathLike[str], limits: Limits = DEFAULT_LIMITS,
               before_decoding: Callable[[int, int], None] | None = None) -> LoadedImage:
    """Read any image Pillow decodes (first frame of animations) into a LoadedImage.

    Raises ImageError naming the file if it is missing, empty, not an image, truncated, corrupt,
    or larger than ``limits`` allow (:class:`~gleansr.pipeline.limits.TooManyPixels`, judged from
    the header before anything is decoded) or than Pillow's decompression-bomb limit
    (``PIL.Image.MAX_IMAGE_PIXELS``); :class:`~gleansr.errors.OutOfMemory` if decoding runs out of
    memory. At most ``limits.max_decodes`` large decodes run at once in this process.
    ``before_decoding(width, height)`` gets the upright size from the header once the limits
    pass and may raise to refuse the image before its decode (the input policy, asked early).
    """
    path = Path(path)
    with _reading(path):
        if path.is_file() and path.stat().st_size == 0:
            raise ImageError(f"cannot read image {path}: the file is empty")
        width, height = header_size(path)
        limits.check(str(path), width, height)
        if before_decoding is not None:
            before_decoding(*upright_size(path))
        with decode_slot(limits, width * height), memory_guard(f"decode {path}"), Image.open(path) as im:
            return _read(im, path)


def image_from_pil(im: Image.Image, name: str = "PIL image") -> LoadedImage:
    """A PIL image as a LoadedImage, decoded as :func:`load_image` decodes files.

    The caller's image is left as it is. 16-bit colour survives only while the image is still
    backed by its file (Pillow keeps 8 bits per colour sample in memory).
    """
    source = getattr(im, "filename", "") or None
    with _reading(Path(source or name)):
        return _read(im, Path(source) if source else None, copy_exif=True)


def _read(im: Image.Image, path: Path | None, copy_exif: bool = False) -> LoadedImage:
    """Decode an opened image (``path``: its file, for 16-bit colour) with its orientation applied."""
    mode, fmt = im.mode, im.format
    colour16 = path is not None and _is_16bit_colour(im)  # before getexif(), which may decode a PNG
    icc = im.info.get("icc_profile") or None
    exif = im.getexif()
    if copy_exif:  # the caller's image keeps its EXIF (reading the orientation pops it)
        exif = _copy_exif(exif)
    orientation = exif.pop(_ORIENTATION_TAG, 1)
    exif_bytes = _exif_to_carry(im, exif)
    if colour16:
        pixels, bit_depth = _decode_16bit_colour(path).astype(np.float32) / 65535, 16
    else:
        pixels, bit_depth = _decode(im)
    pixels = np.ascontiguousarray(_orient(pixels, orientation))
    channels = pixels.shape[2]
    has_alpha = channels in (2, 4)
    colour = pixels[..., : channels - has_alpha]
    return LoadedImage(
        rgb=np.repeat(colour, 3, axis=2) if colour.shape[2] == 1 else np.ascontiguousarray(colour),
        alpha=pixels[..., -1].copy() if has_alpha else None,
        bit_depth=bit_depth,
        grayscale=channels <= 2,
        mode=mode,
        format=fmt,
        icc_profile=icc,
        exif=exif_bytes,
    )


def _copy_exif(exif: Image.Exif) -> Image.Exif:
    copy = Image.Exif()
    try:
        copy.load(exif.tobytes())
    except (ValueError, TypeError, struct.error):  # odd tag types: carrying EXIF is optional
        pass
    return copy


def quantize(values: np.ndarray, bit_depth: int) -> np.ndarray:
    """Float samples in [0, 1] -> integer levels of ``bit_depth`` (8 or 16), rounded half to even."""
    top = (1 << bit_depth) - 1
    scaled = np.rint(np.clip(np.nan_to_num(values, nan=0.0), 0.0, 1.0) * top)
    return scaled.astype(np.uint16 if bit_depth == 16 else np.uint8)


def to_uint8(values: np.ndarray) -> np.ndarray:
    """Float samples in [0, 1] -> uint8 ``round(v * 255)`` (half to even, as the restorer rounds).

    The one 8-bit rounding of the package: a 16-bit sample ``v`` read by :func:`load_image`
    becomes ``round(v * 255 / 65535)`` (0x01FF -> 2), in training, evaluation and on writing.
    """
    return quantize(values, 8)


def read_rgb_uint8(path: str | os.PathLike[str]) -> np.ndarray:
    """uint8 (H, W, 3) RGB of an image file: :func:`load_image` then :func:`to_uint8`.

    The view training and evaluation read, so both see the same pixels: EXIF orientation applied,
    grayscale replicated, alpha dropped (not composited), 16-bit rounded as :func:`to_uint8` says.
    """
    return to_uint8(load_image(path).rgb)


def center_square(pixels: np.ndarray) -> np.ndarray:
    """The largest centred square of (H, W, ...) pixels (a view); the extra row/column, if odd, is
    dropped at the bottom/right."""
    h, w = pixels.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return pixels[top:top + side, left:left + side]


def _icc_matches(icc: bytes | None, channels: int) -> bytes | None:
    """Keep an ICC profile only if its colour space (header bytes 16-20) fits what is written."""
    if not icc or len(icc) < 20:
        return None
    return icc if icc[16:20] == (b"GRAY" if channels <= 2 else b"RGB ") else None


def _as_float_rgb(rgb: np.ndarray) -> tuple[np.ndarray, bool]:
    """(H, W, 3) or (H, W) pixels, uint8 or float in [0, 1] -> float (H, W, 3) and whether gray."""
    if rgb.dtype == np.uint8:
        rgb = rgb.astype(np.float32) / 255  # exact: to_uint8 gives the same bytes back
    elif not np.issubdtype(rgb.dtype, np.floating):
        raise ValueError(f"pixels must be uint8 or float in [0, 1], got {rgb.dtype}")
    if rgb.ndim == 2:
        return rgb[..., None].repeat(3, axis=2), True
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb must be (H, W, 3) or (H, W), got {rgb.shape}")
    return rgb, False


def encode_image(
    rgb: np.ndarray,
    suffix: str = ".png",
    alpha: np.ndarray | None = None,
    bit_depth: int = 8,
    grayscale: bool = False,
    quality: int = 95,
    icc_profile: bytes | None = None,
    exif: bytes | None = None,
    name: str | None = None,
) -> bytes:
    """The bytes of an image file of format ``suffix`` (".png", see FORMATS): the one encoder.

    ``rgb``: float (H, W, 3) in [0, 1], or uint8 (H, W, 3) written as it is; a 2-D array is gray.
    ``alpha``: optional (H, W), same kinds. ``grayscale`` writes the channel mean as one gray
    channel (WebP has no gray mode and stays RGB). JPEG and BMP cannot hold alpha, and only
    PNG/TIFF hold 16 bits: asking for either raises ImageError naming ``name`` and suggesting
    .png, never losing data. JPEG is written with 4:4:4 chroma so fine detail keeps its colour.
    """
    rgb, gray_input = _as_float_rgb(np.asarray(rgb))
    if alpha is not None:
        alpha = np.asarray(alpha, dtype=np.float32) / (255 if np.asarray(alpha).dtype == np.uint8 else 1)
        if alpha.shape != rgb.shape[:2]:
            raise ValueError(f"alpha must be {rgb.shape[:2]}, got {alpha.shape}")
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    name = name or f"a {suffix} image"
    fmt = FORMATS.get(suffix.lower())
    if fmt is None:
        raise ImageError(f"cannot write {name}: unknown image extension (use one of {', '.join(FORMATS)})")
    if not format_can_hold(suffix, alpha=alpha is not None, bit_depth=bit_depth):
        what = "an alpha channel" if alpha is not None and not fmt.holds_alpha else f"{bit_depth}-bit"
        raise ImageError(f"cannot write {name}: {fmt.pillow_name} cannot hold {what}; use .png")
    gray = (grayscale or gray_input) and fmt.pillow_name != "WEBP"
    planes = [rgb.mean(axis=2, keepdims=True) if gray else rgb]
    if alpha is not None:
        planes.append(alpha[..., None])
    samples = quantize(np.concatenate(planes, axis=2), bit_depth)  # (H, W, C)
    icc = _icc_matches(icc_profile, samples.shape[2])
    if bit_depth == 16 and fmt.pillow_name == "PNG":
        return png16_bytes(samples, icc, exif)
    if bit_depth == 16:
        return tiff16_bytes(samples, icc)
    return _encode_8bit(samples, fmt.pillow_name, quality, icc, exif)


def save_image(
    path: str | os.PathLike[str],
    rgb: np.ndarray,
    alpha: np.ndarray | None = None,
    bit_depth: int = 8,
    grayscale: bool = False,
    overwrite: bool = False,
    quality: int = 95,
    icc_profile: bytes | None = None,
    exif: bytes | None = None,
) -> Path:
    """Write an image atomically, the format following the extension: :func:`encode_image`'s
    pixels and options; an existing file is replaced only with ``overwrite``."""
    path = Path(path)
    data = encode_image(rgb, path.suffix, alpha, bit_depth, grayscale, quality, icc_profile, exif, name=str(path))
    return atomic_write_bytes(path, data, overwrite)


def save_loaded(path: str | os.PathLike[str], image: LoadedImage, overwrite: bool = False) -> Path:
    """Write ``image`` as :func:`save_image` does, with its own bit depth, greyness, alpha, ICC
    profile and EXIF (a result keeps its source's kind)."""
    return save_image(path, image.rgb, image.alpha, bit_depth=image.bit_depth, grayscale=image.grayscale,
                      overwrite=overwrite, icc_profile=image.icc_profile, exif=image.exif)


def _encode_8bit(samples: np.ndarray, pillow_name: str, quality: int, icc: bytes | None, exif: bytes | None) -> bytes:
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[samples.shape[2]]
    image = Image.fromarray(samples[..., 0] if mode == "L" else samples, mode)
    options: dict[str, object] = {}
    if icc and pillow_name != "BMP":
        options["icc_profile"] = icc
    if exif and pillow_name in ("JPEG", "PNG", "WEBP"):
        options["exif"] = exif
    if pillow_name in ("JPEG", "WEBP"):
        options["quality"] = quality
    if pillow_name == "JPEG":
        options["subsampling"] = 0
    if pillow_name == "TIFF" and features.check("libtiff"):
        options["compression"] = "tiff_deflate"
    buffer = io.BytesIO()
    image.save(buffer, format=pillow_name, **options)
    return buffer.getvalue()
