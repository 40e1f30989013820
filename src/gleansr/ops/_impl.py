"""Choosing between the reference and the fast path of an op."""


def use_fast(impl: str) -> bool:
    """True for ``auto``/``fast``; raises for unknown names so typos never go unnoticed."""
    if impl in ("auto", "fast"):
        return True
    if impl == "ref":
        return False
    raise ValueError(f"impl must be 'auto', 'ref' or 'fast', got {impl!r}")
