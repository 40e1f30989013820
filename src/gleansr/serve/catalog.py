"""The models the server offers, read from the zoo through one accessor (:func:`model_catalog`).

Everything else in :mod:`gleansr.serve` sees only :class:`ModelInfo`, so a change in how the zoo
is declared touches this file alone.
"""
from __future__ import annotations

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
    face_model: bool = False  # takes aligned face crops: the only kind that restores whole photos (faces=true)

    @property
    def scale(self) -> int:
        return self.out_size // self.in_size

    def to_json(self) -> dict:
        return {**asdict(self), "scale": self.scale}


def model_catalog() -> dict[str, ModelInfo]:
    """Every model of the zoo by name, bundled ones first (the one place the zoo is read)."""
    from ..zoo import ZOO, is_present

    return {e.name: ModelInfo(e.name, e.domain, e.input_kind, e.in_size, e.out_size, is_present(e),
                              e.weights.url is not None, e.face_model) for e in ZOO.values()}


def find_model(name: str, catalog: dict[str, ModelInfo]) -> ModelInfo:
    """The named model; GleanError with a "did you mean" for a typo."""
    if name in catalog:
        return catalog[name]
    from ..zoo import did_you_mean
    from .errors import echo

    hint = did_you_mean(name, catalog) if len(name) <= 100 else ""  # a long name is no typo of a short one
    raise GleanError(f"unknown model {echo(name)}; {hint}GET /v1/models lists the models this server offers")


def default_model() -> str | None:
    """The model used when a request names none: the library's one default (the first bundled
    model), None when it is not installed."""
    from ..errors import GleanError
    from ..zoo import default_model as zoo_default

    try:
        return zoo_default().name
    except GleanError:
        return None


def facts(info: ModelInfo):
    """The input policy's view of a catalogue model (:mod:`gleansr.pipeline.policy`)."""
    from ..pipeline.policy import ModelFacts

    return ModelFacts(info.name, info.in_size, info.domain, info.input_kind, info.face_model)


def precisions() -> tuple[str, ...]:
    """The precisions a request may ask for (the project's one precision table; ``auto``: the
    loaded model's calibrated choice)."""
    from ..precision import AUTO, PRECISIONS

    return (*PRECISIONS, AUTO)  # exact fp32 first: what the page offers before anything is chosen
