"""The models the server offers, read from the zoo through one accessor (:func:`model_catalog`).

Everything else in :mod:`gleansr.serve` sees only :class:`ModelInfo`, so a change in how the zoo
is declared touches this file alone.
"""
from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass

from ..errors import GleanError


@dataclass(frozen=True)
class ModelInfo:
    """What a client needs to pick a model: its domain, its sizes, whether it can run now."""

    name: str
    domain: str  # short: "cats", "faces", "glyphs"
    input_kind: str  # what the model expects, in words
    in_size: int
    out_size: int
    present: bool  # weights on disk: the model can run offline now
    downloadable: bool  # weights can be fetched (`gleansr models --download`)

    @property
    def scale(self) -> int:
        return self.out_size // self.in_size

    def to_json(self) -> dict:
        return {**asdict(self), "scale": self.scale}


def model_catalog() -> dict[str, ModelInfo]:
    """Every model of the zoo by name, bundled ones first (the one place the zoo is read)."""
    try:
        from ..zoo import ZOO, weights_file
    except ImportError:
        return _legacy_catalog()

    def present(entry) -> bool:
        try:
            return weights_file(entry).is_file()
        except GleanError:
            return False

    return {e.name: ModelInfo(e.name, e.domain, e.input_kind, e.in_size, e.out_size, present(e),
                              e.weights.url is not None) for e in ZOO.values()}


_LEGACY_KINDS = {"cat": ("cats", "cat photos, LSUN-style crops"),
                 "ffhq": ("faces", "aligned face crops (FFHQ alignment)")}


def _legacy_catalog() -> dict[str, ModelInfo]:
    """Today's two registries (bundled models, release presets); goes when ``gleansr.zoo`` lands."""
    from ..hub import cache_dir
    from ..presets import PRESETS
    from ..zoo_local import BUNDLED

    out = {m.name: ModelInfo(m.name, "glyphs", "text glyphs, black on white", m.config.in_size,
                             m.config.out_size, m.is_present(), False) for m in BUNDLED.values()}
    for p in PRESETS.values():
        domain, kind = next(v for k, v in _LEGACY_KINDS.items() if k in p.name)
        out[p.name] = ModelInfo(p.name, domain, kind, p.config.in_size, p.config.out_size,
                                (cache_dir() / p.filename).is_file(), True)
    return out


def find_model(name: str, catalog: dict[str, ModelInfo]) -> ModelInfo:
    """The named model; GleanError with a "did you mean" for a typo."""
    if name in catalog:
        return catalog[name]
    close = difflib.get_close_matches(name, catalog, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise GleanError(f"unknown model {name!r}; {hint}GET /v1/models lists the models this server offers")


def default_model(catalog: dict[str, ModelInfo]) -> str | None:
    """The first model whose weights are installed (the bundled one on a fresh install)."""
    return next((m.name for m in catalog.values() if m.present), None)


def precisions() -> tuple[str, ...]:
    """The precisions a request may ask for (the project's one precision table)."""
    try:
        from ..precision import PRECISIONS
    except ImportError:  # until gleansr.precision lands
        from ..pipeline.upscaler import PRECISIONS
    return tuple(PRECISIONS)
