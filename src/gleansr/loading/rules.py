"""Key tables for the foreign-format adapters: one :class:`Rule` per target key, applied strictly.

Equalized learning rate: every code base multiplies a stored weight by a run-time gain, but
not the same one (ours: ``sqrt(1 / fan_in)`` rounded through float32, see
:func:`~gleansr.models.layers.equalized_lr_scale`; rosinality: the float64 value; NVIDIA: none
at all for demodulated convs). Conversions rescale the stored weight so that the weight used
at run time equals the source's: ``weight_orig = w * their_gain / our_gain``.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

import torch

from ..errors import CheckpointError
from ..models.layers import equalized_lr_scale

Transform = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Rule:
    """Fill our key ``target`` from the source's key ``source`` through ``transform``."""

    target: str
    source: str
    transform: Transform = lambda t: t


def table_rules(table: Iterable[tuple[str, str, Transform | None]], ours: str, theirs: str) -> list[Rule]:
    """Rules from a table of (our key suffix, their key suffix, transform or None), under two prefixes."""
    return [Rule(ours + a, theirs + b, fn) if fn else Rule(ours + a, theirs + b) for a, b, fn in table]


def apply_rules(rules: Iterable[Rule], source: Mapping[str, torch.Tensor], ignored: Iterable[str] = (),
                what: str = "generator") -> dict[str, torch.Tensor]:
    """Run a key table; ``ignored`` are regular expressions (full match) of source keys to drop."""
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for rule in rules:
        if rule.target in out:
            raise CheckpointError(f"{what}: the key table fills {rule.target!r} twice")
        if rule.source not in source:
            raise CheckpointError(f"{what}: source key {rule.source!r} is missing (needed for {rule.target!r})")
        out[rule.target] = rule.transform(source[rule.source])
        used.add(rule.source)
    patterns = [re.compile(p) for p in ignored]
    leftovers = [k for k in source if k not in used and not any(p.fullmatch(k) for p in patterns)]
    if leftovers:
        more = f" (and {len(leftovers) - 5} more)" if len(leftovers) > 5 else ""
        raise CheckpointError(f"{what}: source keys that no rule maps: {', '.join(leftovers[:5])}{more}")
    return out


def fan_in(weight: torch.Tensor) -> int:
    """Inputs per output of a linear (out, in) or conv ([1,] out, in, k, k) weight."""
    return math.prod(weight.shape[-3:]) if weight.ndim >= 4 else int(weight.shape[1])


def rescale_gain(weight: torch.Tensor, their_gain: float) -> torch.Tensor:
    """Stored weight for us so that ``weight_orig * our_gain == weight * their_gain`` (in float64)."""
    ratio = their_gain / equalized_lr_scale(fan_in(weight))
    return weight if ratio == 1.0 else (weight.double() * ratio).to(weight.dtype)


def equalized(weight: torch.Tensor) -> torch.Tensor:
    """Source applies ``1 / sqrt(fan_in)`` in float64 (rosinality; NVIDIA's weight_gain)."""
    return rescale_gain(weight, 1.0 / math.sqrt(fan_in(weight)))


def count(state: Mapping[str, Any], pattern: str) -> int:
    """How many distinct integers fill the ``(\\d+)`` group of ``pattern`` among the keys."""
    rx = re.compile(pattern)
    return len({m.group(1) for k in state if (m := rx.fullmatch(k))})
