"""Every ```python block of README.md runs as written, so the documented API cannot rot."""
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), flags=re.S | re.M)


def test_the_readme_has_python_snippets():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_snippet_runs(index, tmp_path, monkeypatch, capsys):
    """Each block on its own (a reader copies one), in an empty folder, offline."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GLEANSR_HOME", str(tmp_path / "no-downloads"))
    # a reader runs it again: a block that exports a model must work on the second run too (#25)
    for _ in range(2 if "export_onnx(" in BLOCKS[index] else 1):
        exec(compile(BLOCKS[index], f"README.md python block {index + 1}", "exec"), {"__name__": "__readme__"})
    saved = re.findall(r"\.save\(\"([^\"]+)\"\)", BLOCKS[index])
    for name in saved:  # what a snippet says it writes is there, and is an image
        from PIL import Image

        with Image.open(tmp_path / name) as im:
            assert im.size[0] > 0
    assert saved or capsys.readouterr().out  # every snippet shows something: a file or a line
