"""The ONNX Runtime path super-resolves with torch unimportable, and matches the torch path."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np

from gleansr.pipeline.images import load_image, save_image
from gleansr.pipeline.upscaler import Upscaler
from gleansr.zoo_local import SAMPLES

# Runs in a fresh interpreter: any import of torch (or a torch submodule) raises ImportError, as
# on a machine where only numpy, Pillow and onnxruntime are installed.
TORCH_FREE_UPSCALE = textwrap.dedent("""
    import sys

    class NoTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError(f"torch is not installed here ({name})")
            return None

    sys.meta_path.insert(0, NoTorch())

    import numpy as np
    from gleansr.data.imresize import imresize
    from gleansr.onnx.runtime import OnnxRunner
    from gleansr.pipeline.images import load_image, save_image

    model, pairs = sys.argv[1], sys.argv[2:]
    run = OnnxRunner(model)
    for source, target in zip(pairs[::2], pairs[1::2]):
        rgb = load_image(source).rgb
        if rgb.shape[:2] != (run.in_size, run.in_size):  # as Upscaler.prepare: MATLAB bicubic, 8-bit levels
            rgb = imresize(rgb, output_shape=(run.in_size, run.in_size))
            rgb = np.rint(np.clip(rgb, 0, 1) * 255).astype(np.float32) / 255
        y = run(rgb.transpose(2, 0, 1)[None] * 2 - 1)
        save_image(target, np.clip((y[0] + 1) / 2, 0, 1).transpose(1, 2, 0))
    assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules), "torch was imported"
    print("ok", len(pairs) // 2)
""")


def test_upscale_through_onnx_runtime_without_torch(glyphs_onnx, tmp_path):
    lr = sorted((SAMPLES / "lr").glob("*.png"))[0]
    big = tmp_path / "big.png"  # not the model's size: exercises the torch-free resize
    save_image(big, load_image(sorted((SAMPLES / "hr").glob("*.png"))[1]).rgb[:96, :96])
    inputs = [lr, big]
    outputs = [tmp_path / f"sr_{i}.png" for i in range(len(inputs))]
    args = [str(a) for pair in zip(inputs, outputs) for a in pair]
    done = subprocess.run([sys.executable, "-c", TORCH_FREE_UPSCALE, str(glyphs_onnx.path), *args],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ok", "2"]

    torch_path = Upscaler("glean_glyphs_8x", device="cpu", precision="fp32")
    for source, onnx_out in zip(inputs, outputs):
        src = load_image(source)
        want = np.rint(torch_path.upscale(np.rint(src.rgb * 255).astype(np.uint8))).astype(np.int16)
        got = np.rint(load_image(onnx_out).rgb * 255).astype(np.int16)
        assert got.shape == want.shape == (128, 128, 3)
        assert np.abs(got - want).max() <= 1
