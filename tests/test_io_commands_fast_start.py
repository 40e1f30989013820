"""`eval`, `demo` and `make-lr` build their parsers without importing torch (PLAN's fast-start convention).

The package's own ``__init__`` is bypassed (a bare package object stands in for it), so this checks
what these command modules import, whatever the top-level API imports.
"""
import subprocess
import sys
from pathlib import Path

import gleansr

CHECK = """
import argparse, importlib, sys, types
package = types.ModuleType("gleansr")
package.__path__ = [sys.argv[1]]
sys.modules["gleansr"] = package
for name in ("eval", "demo", "make_lr"):
    module = importlib.import_module(f"gleansr.commands.{name}")
    module.add_arguments(argparse.ArgumentParser())
print(sorted(m for m in sys.modules if m.split(".")[0] == "torch"))
"""


def test_io_commands_import_without_torch():
    folder = str(Path(gleansr.__file__).parent)
    result = subprocess.run([sys.executable, "-c", CHECK, folder], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
