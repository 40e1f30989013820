"""ONNX export and the torch-free ONNX Runtime path: round trips against the torch model, metadata,
the CLI, users' mistakes, and a full upscale with torch unimportable."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap

import numpy as np
import onnx
import pytest
import torch

from gleansr.cli import main
from gleansr.loading import save_safetensors
from gleansr.errors import GleanError
from gleansr.metrics import psnr
from gleansr.models.glean import GLEANStyleGANv2
from gleansr.onnx.export import export_onnx, file_sha256, state_dict_sha256
from gleansr.onnx.runtime import OnnxRunner
from gleansr.pipeline.images import load_image, save_image
from gleansr.zoo import SAMPLES, ZOO, load_model, weights_file


@pytest.fixture(scope="module")
def glyphs_onnx(tmp_path_factory):
    """The bundled glyph model exported in fp32 (each export takes tens of seconds on 2 cores)."""
    return export_onnx("glean_glyphs_8x", tmp_path_factory.mktemp("onnx") / "glyphs.onnx")


TINY_CHANNELS = dict(rrdb_channels=8, num_rrdbs=1, style_channels=16, num_mlps=2, channel_max=16)


def _tiny(config):
    """The zoo architecture at a test size: same factor, sizes halved until out <= 64, in >= 4."""
    size_in, size_out = config.in_size, config.out_size
    while size_out > 64 and size_in > 4:
        size_in, size_out = size_in // 2, size_out // 2
    return dataclasses.replace(config, in_size=size_in, out_size=size_out, **TINY_CHANNELS)


def _tiny_architectures():
    """One tiny config per distinct architecture, with the zoo names it stands for."""
    covered: dict = {}
    for name, config in ((name, entry.config) for name, entry in ZOO.items()):
        covered.setdefault(_tiny(config), []).append(name)
    return [pytest.param(cfg, id="+".join(names)) for cfg, names in covered.items()]


def _uint8(y: np.ndarray) -> np.ndarray:
    return np.rint(np.clip((y + 1) / 2, 0, 1) * 255).astype(np.int16)


@pytest.mark.parametrize("config", _tiny_architectures())
def test_round_trip_of_every_zoo_architecture(config, tmp_path):
    torch.manual_seed(0)
    model = GLEANStyleGANv2(**config.to_dict()).eval()
    done = export_onnx(model, tmp_path / "tiny.onnx", name="tiny")
    run = OnnxRunner(done.path)
    assert (run.in_size, run.out_size, run.scale) == (config.in_size, config.out_size, config.scale)
    for batch in (1, 3):  # the batch dimension is dynamic
        x = torch.rand(batch, 3, config.in_size, config.in_size) * 2 - 1
        with torch.no_grad():
            want = model.set_impl("ref")(x).numpy()
        got = run(x.numpy())
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=2e-4 * max(1.0, np.abs(want).max()))


def test_bundled_model_round_trip_and_metadata(glyphs_onnx):
    model = load_model("glean_glyphs_8x")
    run = OnnxRunner(glyphs_onnx.path)
    assert run.meta == glyphs_onnx.meta  # what was written is what is read back
    assert (run.name, run.in_size, run.out_size, run.scale) == ("glean_glyphs_8x", 16, 128, 8)
    meta = run.meta
    assert meta["domain"] == "glyphs"
    assert meta["normalisation"] == "[-1,1] in, raw out, (y+1)/2 clamp"
    assert meta["weights_sha256"] == file_sha256(weights_file(ZOO["glean_glyphs_8x"]))
    assert meta["precision"] == "fp32" and meta["opset"] == "18"
    assert json.loads(meta["config"]) == json.loads(json.dumps(model.config.to_dict()))
    assert float(meta["check_psnr_db"]) > 60

    proto = onnx.load(str(glyphs_onnx.path))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch
    lr = np.stack([load_image(p).rgb for p in sorted((SAMPLES / "lr").glob("*.png"))[:4]])
    x = lr.transpose(0, 3, 1, 2) * 2 - 1
    with torch.no_grad():
        want = model.set_impl("ref")(torch.from_numpy(x)).numpy()
    assert np.abs(_uint8(run(x)) - _uint8(want)).max() <= 1


def test_fp16_export_holds_up_on_real_glyphs(glyphs_onnx, tmp_path):
    """fp16 is the precision for GPUs; here it must stay >= 50 dB from fp32 on the model's own samples."""
    done = export_onnx("glean_glyphs_8x", tmp_path / "glyphs16.onnx", precision="fp16")
    assert done.meta["precision"] == "fp16"
    assert done.path.stat().st_size < 0.6 * glyphs_onnx.path.stat().st_size  # half-size weights
    lr = np.stack([load_image(p).rgb for p in sorted((SAMPLES / "lr").glob("*.png"))])
    x = lr.transpose(0, 3, 1, 2) * 2 - 1
    half, full = OnnxRunner(done.path)(x), OnnxRunner(glyphs_onnx.path)(x)
    as_images = [(_uint8(a).astype(np.uint8).transpose(1, 2, 0), _uint8(b).astype(np.uint8).transpose(1, 2, 0))
                 for a, b in zip(half, full)]
    assert min(psnr(a, b) for a, b in as_images) >= 50


def test_module_export_hashes_its_state_dict(tiny_glean):
    first = state_dict_sha256(tiny_glean)
    assert first.startswith("state_dict:") and first == state_dict_sha256(tiny_glean)
    with torch.no_grad():
        next(tiny_glean.parameters()).add_(1e-3)
    assert state_dict_sha256(tiny_glean) != first


def test_cli_exports_a_weights_file_and_never_overwrites(tiny_glean, tmp_path, capsys):
    weights = tmp_path / "tiny_cats.safetensors"
    save_safetensors(tiny_glean, weights, config=tiny_glean.config.to_dict())
    out = tmp_path / "tiny.onnx"
    assert main(["export", str(weights), "-o", str(out), "--format", "onnx"]) == 0
    assert str(out) in capsys.readouterr().out
    run = OnnxRunner(out)
    assert run.name == "tiny_cats" and run.meta["weights_sha256"] == file_sha256(weights)
    x = np.random.default_rng(1).uniform(-1, 1, (2, 3, 8, 8)).astype(np.float32)
    with torch.no_grad():
        want = tiny_glean.set_impl("ref")(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run(x), want, atol=2e-4)

    before = out.read_bytes()
    assert main(["export", str(weights), "-o", str(out)]) == 2  # .onnx OUT: the format follows
    assert "already exists" in capsys.readouterr().err
    assert out.read_bytes() == before


def test_mistakes_are_one_line_errors_before_any_work(tmp_path, tiny_glean):
    with pytest.raises(GleanError, match="unknown model .glean_dogs_8x.; did you mean"):
        export_onnx("glean_dogs_8x", tmp_path / "a.onnx")
    with pytest.raises(GleanError, match="precision must be one of fp32, fp16"):
        export_onnx(tiny_glean, tmp_path / "a.onnx", precision="bf16")
    taken = tmp_path / "taken.onnx"
    taken.write_bytes(b"mine")
    with pytest.raises(GleanError, match="already exists"):
        export_onnx(tiny_glean, taken)
    assert taken.read_bytes() == b"mine"



def test_runner_refuses_what_it_cannot_run(tmp_path, glyphs_onnx):
    with pytest.raises(GleanError, match="no such ONNX model file"):
        OnnxRunner(tmp_path / "missing.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a protobuf at all")
    with pytest.raises(GleanError, match="ONNX Runtime cannot load it"):
        OnnxRunner(garbage)
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 3, 4, 4])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["n", 3, 4, 4])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "identity", [x], [y])
    foreign = tmp_path / "identity.onnx"
    foreign.write_bytes(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)])
                        .SerializeToString())
    with pytest.raises(GleanError, match="not a gleansr GLEAN export"):
        OnnxRunner(foreign)
    with pytest.raises(ValueError, match=r"expects input of shape \(N, 3, 16, 16\)"):
        OnnxRunner(glyphs_onnx.path)(np.zeros((1, 3, 32, 32), np.float32))


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

    from gleansr.cli import main

    code = main(sys.argv[1:])  # `gleansr upscale --backend onnx ...`, as a user types it
    assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules), "torch was imported"
    sys.exit(code)
""")


def test_upscale_command_through_onnx_runtime_without_torch(glyphs_onnx, tmp_path):
    lr = sorted((SAMPLES / "lr").glob("*.png"))[0]
    big = tmp_path / "big.png"  # not the model's size: exercises the torch-free resize
    save_image(big, load_image(sorted((SAMPLES / "hr").glob("*.png"))[1]).rgb[:96, :96])
    out = tmp_path / "out"
    command = ["upscale", str(lr), str(big), "--backend", "onnx", "--weights", str(glyphs_onnx.path), "--resize",
               "-o", str(out)]
    done = subprocess.run([sys.executable, "-c", TORCH_FREE_UPSCALE, *command], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "2 written" in done.stderr

    torch_out = tmp_path / "torch_out"  # the same command on the torch backend, as the reference
    assert main(["upscale", str(lr), str(big), "--model", "glean_glyphs_8x", "--precision", "fp32", "--resize",
                 "--device", "cpu", "-o", str(torch_out)]) == 0
    for source in (lr, big):
        name = f"{source.stem}_x8.png"
        want, got = (np.rint(load_image(folder / name).rgb * 255).astype(np.int16) for folder in (torch_out, out))
        assert got.shape == want.shape == (128, 128, 3)
        assert np.abs(got - want).max() <= 1

    again = subprocess.run([sys.executable, "-c", TORCH_FREE_UPSCALE, *command], capture_output=True, text=True,
                           timeout=300)  # a rerun skips what is done, as the torch path does
    assert again.returncode == 0 and "2 skipped" in again.stderr, again.stderr
