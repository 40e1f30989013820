"""Which faces of a glyph data set are held out for testing, and which are dropped as copies.

Split: whole designs are held out. A face's group is the first word of its typographic family
("Latin Modern Roman Demi" -> "latin"), so stylistic siblings stay together; groups with any two
faces that render alike (RMS difference at 1/8 resolution over their shared characters at most
``related_tolerance`` grey levels: metric clones such as Arimo / Liberation Sans, the URW fonts and
their TeX Gyre and FreeFont derivatives, Hack / DejaVu Sans Mono) are joined into one cluster,
named after its alphabetically first group. A cluster is in the test split iff
``sha256(f"{seed}:{cluster}")`` read as a fraction is below ``test_fraction``.

Deduplication: faces with the same family and style keep one copy (the one covering most
characters, :func:`.glyph_fonts.one_face_per_style`); then, within a cluster, faces whose
renderings differ by at most ``duplicate_tolerance`` keep one copy (same outlines in another
format, version or package).
"""
from __future__ import annotations

import hashlib

import numpy as np

from ..errors import GleanError
from .fonts import FINGERPRINT, RenderedFace

__all__ = ["is_held_out", "split_by_design"]


def is_held_out(cluster: str, test_fraction: float, seed: int = 0) -> bool:
    """Whether a design cluster goes to the test split: a hash of seed and name as a fraction in [0, 1)."""
    digest = hashlib.sha256(f"{seed}:{cluster}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < test_fraction


def _rendering_distances(items: list[RenderedFace]) -> np.ndarray:
    """(N, N) RMS grey-level difference of the thumbnails over the characters both faces have;
    ``inf`` where they share fewer than half of the smaller face's characters."""
    x = np.stack([r.fingerprint.ravel() for r in items]).astype(np.float64)  # (N, C*P), zeros where absent
    m = np.stack([r.present for r in items]).astype(np.float64)  # (N, C)
    pixels = FINGERPRINT**2
    sq = (x * x).reshape(len(items), -1, pixels).sum(-1)  # (N, C) per-character squared norms
    shared = m @ m.T
    sum_sq = sq @ m.T + m @ sq.T - 2 * (x @ x.T)  # sum over shared characters of |xi - xj|^2
    rms = np.sqrt(np.maximum(sum_sq, 0) / np.maximum(shared * pixels, 1))
    counts = m.sum(1)
    rms[shared < 0.5 * np.minimum.outer(counts, counts)] = np.inf
    return rms


def _clusters(groups: list[str], distances: np.ndarray, tolerance: float) -> dict[str, str]:
    """``{group: cluster}``: groups joined whenever two of their faces are within ``tolerance``."""
    parent = {g: g for g in groups}

    def root(g: str) -> str:
        while parent[g] != g:
            g = parent[g]
        return g

    for i, j in zip(*np.nonzero(distances <= tolerance)):
        a, b = root(groups[i]), root(groups[j])
        if a != b:
            parent[max(a, b)] = min(a, b)  # the alphabetically first group names the cluster
    return {g: root(g) for g in groups}


def _duplicates(order: list[int], distances: np.ndarray, tolerance: float) -> dict[int, tuple[int, float]]:
    """``{dropped: (kept, distance)}``: going through ``order``, a face within ``tolerance`` of a
    face already kept is dropped."""
    dropped: dict[int, tuple[int, float]] = {}
    kept: list[int] = []
    for i in order:
        match = next((k for k in kept if distances[i, k] <= tolerance), None)
        if match is None:
            kept.append(i)
        else:
            dropped[i] = (match, float(distances[i, match]))
    return dropped


def split_by_design(rendered: list[RenderedFace], test_fraction: float, seed: int, duplicate_tolerance: float,
                    related_tolerance: float, skipped: list[dict]) -> tuple[dict[str, list[RenderedFace]], dict[str, str]]:
    """Drop copies, join related groups into clusters, and put each cluster in train or test."""
    distances = _rendering_distances(rendered)
    cluster_of = _clusters([r.face.group for r in rendered], distances, related_tolerance)
    order = sorted(range(len(rendered)), key=lambda i: (-len(rendered[i].pngs), rendered[i].face.root,
                                                        rendered[i].face.source, rendered[i].face.index))
    duplicates = _duplicates(order, distances, duplicate_tolerance)
    for i, (k, rms) in sorted(duplicates.items()):
        skipped.append({"source": rendered[i].face.source, "face_index": rendered[i].face.index,
                        "reason": f"same design as {rendered[k].face.source} (RMS difference {rms:.2f})"})
    splits: dict[str, list[RenderedFace]] = {"train": [], "test": []}
    for i, r in enumerate(rendered):
        if i not in duplicates:
            splits["test" if is_held_out(cluster_of[r.face.group], test_fraction, seed) else "train"].append(r)
    if not splits["train"]:
        raise GleanError(f"every design cluster fell into the test split (--test-fraction {test_fraction}, "
                         f"--seed {seed}); add fonts or lower the fraction")
    if test_fraction > 0 and not splits["test"]:
        clusters = len(set(cluster_of.values()))
        raise GleanError(f"no design cluster fell into the test split ({clusters} clusters, --test-fraction "
                         f"{test_fraction}, --seed {seed}); add fonts or raise the fraction")
    return splits, cluster_of


