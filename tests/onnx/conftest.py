"""Exports shared by the ONNX tests (each export takes tens of seconds on 2 cores)."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def glyphs_onnx(tmp_path_factory):
    """The bundled glyph model exported in fp32, and what export_onnx returned."""
    from gleansr.onnx.export import export_onnx

    return export_onnx("glean_glyphs_8x", tmp_path_factory.mktemp("onnx") / "glyphs.onnx")
