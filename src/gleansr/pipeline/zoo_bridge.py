"""What the Upscaler and ``gleansr upscale`` need to know about zoo models, in one place.

Stand-in for ``gleansr.zoo`` (being written beside this module): the same names and fields
(``get_entry``, ``default_model_name``, ``load_model``; entries with ``name``, ``domain``,
``input_kind``, ``face_model``, ``in_size``, ``out_size``, ``scale``), read from today's
``presets``/``zoo_local``, so switching to the zoo is one import here.
"""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass

from ..errors import GleanError

# domain, input kind, face model: the facts the zoo's entries carry and presets do not yet.
_DOMAINS = {
    "glean_cat_8x": ("cats", "cat photos, the cat filling the square (LSUN cat)", False),
    "glean_cat_16x": ("cats", "cat photos, the cat filling the square (LSUN cat)", False),
    "glean_ffhq_16x": ("faces", "aligned face crops (FFHQ alignment)", True),
    "glean_in128out1024_4x2_300k_ffhq_celebahq": ("faces", "aligned face crops (FFHQ alignment)", True),
    "glean_glyphs_8x": ("glyphs", "text glyphs, black on white", False),
}


@dataclass(frozen=True)
class ZooFacts:
    """The part of a zoo entry the upscaling path reads."""

    name: str
    domain: str
    input_kind: str
    face_model: bool
    in_size: int
    out_size: int

    @property
    def scale(self) -> int:
        return self.out_size // self.in_size


def _configs() -> dict:
    from ..presets import PRESETS
    from ..zoo_local import BUNDLED

    return {name: p.config for name, p in PRESETS.items()} | {name: m.config for name, m in BUNDLED.items()}


def model_names() -> list[str]:
    """Every zoo model's name."""
    return list(_configs())


def get_entry(name: str) -> ZooFacts:
    """The zoo facts of model ``name``; GleanError with a "did you mean" for unknown names."""
    configs = _configs()
    if name not in configs:
        close = difflib.get_close_matches(name, configs, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise GleanError(f"unknown model {name!r}; {hint}`gleansr models` lists them ({', '.join(configs)})")
    domain, kind, face = _DOMAINS[name]
    return ZooFacts(name, domain, kind, face, configs[name].in_size, configs[name].out_size)


def face_model_names() -> list[str]:
    """The zoo models that take aligned face crops (the ones ``--faces`` accepts)."""
    return [name for name in model_names() if get_entry(name).face_model]


def default_model_name() -> str:
    """The model used when none is named."""
    from ..presets import default_model_name as default

    return default()


def load_model(name_or_path: str | os.PathLike, download: bool = False):
    """A ready GLEAN from a zoo name (its pretrained or bundled weights) or any GLEAN file."""
    from pathlib import Path

    from ..checkpoints import load_glean
    from ..presets import PRESETS, create_model
    from ..zoo_local import BUNDLED, load_bundled

    name = str(name_or_path)
    if Path(name).is_file():
        return load_glean(name)
    if name in BUNDLED:
        return load_bundled(name)
    if name in PRESETS:
        return create_model(name, weights="pretrained", download=download)
    if os.sep in name or Path(name).suffix:
        raise GleanError(f"weights file {name} does not exist")
    get_entry(name)  # raises with "did you mean"
    raise AssertionError(f"{name} is in the zoo but neither a preset nor bundled")


def create_model(name: str, weights=None, download: bool = False):
    """Build zoo model ``name``: random weights (None), its own (``"pretrained"``) or a file's."""
    from ..presets import create_model as create
    from ..zoo_local import BUNDLED, load_bundled

    if name not in BUNDLED:
        return create(name, weights=weights, download=download)
    if str(weights) == "pretrained":
        return load_bundled(name)
    from ..checkpoints import load_checkpoint
    from ..models.glean import GLEANStyleGANv2

    model = GLEANStyleGANv2(**BUNDLED[name].config.to_dict())
    if weights is not None:
        load_checkpoint(model, weights, prefix="generator.")
    return model
