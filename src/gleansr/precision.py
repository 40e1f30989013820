"""The compute precisions gleansr runs in, one table for every caller (torch-free to import)."""
from __future__ import annotations

PRECISIONS = ("fp32", "bf16", "fp16")


def torch_dtype(name: str):
    """The torch dtype of precision ``name`` (imports torch only when called)."""
    import torch

    if name not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {name!r}")
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]
