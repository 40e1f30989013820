"""The layers of ARCHITECTURE.md, read off the imports: a module imports only from its own layer
and the layers below it (lazy imports inside functions count too)."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "gleansr"

# ARCHITECTURE.md's table, lowest first: module path prefixes (relative to the package) per layer.
LAYERS = [
    ("base", ["errors", "atomic", "glean_config", "arch", "hardware", "tuning", "parity"]),
    ("ops", ["ops"]),
    ("models", ["models"]),
    ("loading", ["loading"]),
    ("zoo", ["zoo", "hub"]),
    ("imaging", ["imaging"]),
    ("inference", ["inference", "precision"]),  # precision: auto's calibration runs the snapshot
    ("pipeline", ["pipeline", "evaluate", "metrics", "perceptual_metrics"]),
    ("training", ["train", "data", "glyphs"]),
    ("deploy", ["onnx", "serve", "ray"]),
    ("commands", ["commands", "cli"]),
]


def layer_of(module: str) -> int | None:
    """The layer index of ``gleansr.<module>`` (dotted, without the package), None for the package root."""
    parts = module.split(".")
    for index, (_, prefixes) in enumerate(LAYERS):
        if parts[0] in prefixes:
            return index
    return None


def imports_of(path: Path) -> set[str]:
    """The gleansr modules ``path`` imports (absolute and relative, at any depth of the file)."""
    module = path.relative_to(PACKAGE).with_suffix("").as_posix().replace("/", ".")
    if path.name == "__init__.py":
        package = module.removesuffix("__init__").rstrip(".")
    else:
        package = module.rsplit(".", 1)[0] if "." in module else ""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join([*filter(None, base), *([node.module] if node.module else [])])
                if not node.module:
                    found.update(f"{target}.{alias.name}".lstrip(".") for alias in node.names)
                    continue
            elif node.module and node.module.startswith("gleansr."):
                target = node.module.removeprefix("gleansr.")
            else:
                continue
            found.add(target)
        elif isinstance(node, ast.Import):
            found.update(a.name.removeprefix("gleansr.") for a in node.names if a.name.startswith("gleansr."))
    return found


def violations() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE).with_suffix("").as_posix().replace("/", ".")
        own = layer_of(module)
        if own is None:
            continue
        for target in imports_of(path):
            other = layer_of(target)
            if other is not None and other > own:
                found.append(f"{module} ({LAYERS[own][0]}) imports {target} ({LAYERS[other][0]})")
    return found


def test_every_module_belongs_to_a_layer():
    modules = [p.relative_to(PACKAGE).with_suffix("").as_posix().replace("/", ".") for p in PACKAGE.rglob("*.py")]
    assert [m for m in modules if layer_of(m) is None and m != "__init__"] == []


def test_no_module_imports_from_a_layer_above_its_own():
    assert violations() == []


def test_the_pipeline_imports_nothing_from_training_or_deployment():
    pipeline = [p for p in (PACKAGE / "pipeline").rglob("*.py")]
    reached = {t for p in pipeline for t in imports_of(p)}
    assert not {t for t in reached if t.split(".")[0] in ("train", "data", "glyphs", "onnx", "serve", "commands")}
