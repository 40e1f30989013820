"""16-bit PNG and TIFF encoders: Pillow cannot write 48/64-bit colour, so these few lines do.

Used only by :func:`gleansr.pipeline.images.encode_image`, the one image writer.
"""
from __future__ import annotations

import struct
import zlib

import numpy as np


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png16_bytes(samples: np.ndarray, icc: bytes | None, exif: bytes | None) -> bytes:
    """A 16-bit PNG of uint16 (H, W, C) samples, C = 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA."""
    height, width, channels = samples.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    rows = samples.astype(">u2").reshape(height, -1).view(np.uint8)
    # "Sub" filter (type 1): each byte minus the same byte of the previous pixel, modulo 256.
    filtered = rows.copy()
    filtered[:, 2 * channels :] -= rows[:, : -2 * channels]
    scanlines = np.concatenate([np.ones((height, 1), np.uint8), filtered], axis=1)
    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    chunks = [_png_chunk(b"IHDR", header)]
    if icc:
        chunks.append(_png_chunk(b"iCCP", b"ICC profile\0\0" + zlib.compress(icc)))
    if exif:
        chunks.append(_png_chunk(b"eXIf", exif.removeprefix(b"Exif\0\0")))
    chunks.append(_png_chunk(b"IDAT", zlib.compress(scanlines.tobytes(), 6)))
    chunks.append(_png_chunk(b"IEND", b""))
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


def tiff16_bytes(samples: np.ndarray, icc: bytes | None) -> bytes:
    """A little-endian, deflate-compressed, single-strip 16-bit TIFF of uint16 (H, W, C) samples."""
    if samples.shape[2] == 2:  # gray+alpha 16-bit TIFF is not readable by Pillow: store RGBA
        samples = samples[..., [0, 0, 0, 1]]
    height, width, channels = samples.shape
    strip = zlib.compress(samples.astype("<u2").tobytes(), 6)
    strip += b"\0" * (len(strip) % 2)  # the IFD must start on a word boundary
    short, long, undefined = 3, 4, 7
    tags: dict[int, tuple[int, list[int] | bytes]] = {
        256: (long, [width]),
        257: (long, [height]),
        258: (short, [16] * channels),  # bits per sample
        259: (short, [8]),  # compression: deflate
        262: (short, [2 if channels >= 3 else 1]),  # photometric: RGB or black-is-zero
        273: (long, [8]),  # strip offset: right after the header
        277: (short, [channels]),
        278: (long, [height]),  # rows per strip
        279: (long, [len(strip)]),
        284: (short, [1]),  # samples interleaved
    }
    if channels == 4:
        tags[338] = (short, [2])  # extra sample is unassociated alpha
    if icc:
        tags[34675] = (undefined, icc)
    ifd_offset = 8 + len(strip)
    extra_offset = ifd_offset + 2 + 12 * len(tags) + 4
    entries, extra = [], b""
    for tag, (kind, values) in sorted(tags.items()):
        payload = bytes(values) if kind == undefined else struct.pack(
            f"<{len(values)}{'H' if kind == short else 'I'}", *values
        )
        if len(payload) <= 4:
            field = payload.ljust(4, b"\0")
        else:
            field = struct.pack("<I", extra_offset + len(extra))
            extra += payload + b"\0" * (len(payload) % 2)
        entries.append(struct.pack("<HHI", tag, kind, len(values)) + field)
    ifd = struct.pack("<H", len(entries)) + b"".join(entries) + struct.pack("<I", 0)
    return b"II*\0" + struct.pack("<I", ifd_offset) + strip + ifd + extra
