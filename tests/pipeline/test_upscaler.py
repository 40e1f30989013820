"""The Upscaler API: every kind of in-memory input, exact and resized sizes, alpha, depth."""
import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from gleansr.imaging.imresize import imresize
from gleansr.errors import GleanError
from gleansr.pipeline.upscaler import Upscaler


@pytest.fixture
def up(tiny_glean):
    return Upscaler(tiny_glean, device="cpu", precision="fp32")  # the fp32 numbers the tests compare


def direct(model, rgb01: np.ndarray) -> np.ndarray:
    """What the restorer does: [-1, 1] in, (y + 1) / 2 clamped out, float (H, W, 3)."""
    x = torch.from_numpy(rgb01).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        y = model.set_impl("ref")((x - 0.5) / 0.5)
    return ((y[0] + 1) / 2).clamp(0, 1).permute(1, 2, 0).numpy()


def test_exact_size_input_is_used_as_is(up, tiny_glean):
    lr = data.astronaut()[200:208, 200:208]
    sr = up.upscale(lr)
    assert sr.shape == (32, 32, 3) and sr.dtype == np.uint8
    want = np.rint(direct(tiny_glean, lr.astype(np.float32) / 255) * 255)
    assert np.abs(sr.astype(int) - want).max() <= 1  # fast path vs reference path, rounding


def test_larger_inputs_are_refused_unless_resize_any(up, tiny_glean):
    with pytest.raises(GleanError, match="image is 451x300, larger than the 8x8 input of the model: .*resize='any' in Python"):
        up.upscale(data.chelsea())
    photo = data.chelsea()  # 300 x 451
    sr = Upscaler(tiny_glean, device="cpu", resize="any").upscale(photo)
    assert sr.shape == (32, 32, 3)
    off = (451 - 300) // 2
    lr = imresize(photo[:, off:off + 300].astype(np.float32) / 255, output_shape=(8, 8))
    lr = np.rint(np.clip(lr, 0, 1) * 255) / 255
    want = np.rint(direct(tiny_glean, lr.astype(np.float32)) * 255)
    assert np.abs(sr.astype(int) - want).max() <= 1


def test_smaller_inputs_are_cropped_and_enlarged(up, tiny_glean):
    small = data.astronaut()[100:105, 200:206]  # 6 x 5: centre 5 x 5, enlarged to 8 x 8
    sr = up.upscale(small)
    lr = imresize(small[:, :5].astype(np.float32) / 255, output_shape=(8, 8))
    want = np.rint(direct(tiny_glean, (np.rint(np.clip(lr, 0, 1) * 255) / 255).astype(np.float32)) * 255)
    assert sr.shape == (32, 32, 3) and np.abs(sr.astype(int) - want).max() <= 1


def test_exact_refuses_other_sizes(tiny_glean):
    up = Upscaler(tiny_glean, device="cpu", resize="exact")
    with pytest.raises(GleanError, match="is 6x5, and the model takes exactly 8x8"):
        up.upscale(data.astronaut()[:5, :6])
    with pytest.raises(GleanError, match="resize must be one of exact, up, any"):
        Upscaler(tiny_glean, resize=True)


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "LA", "P"])
def test_pil_modes_round_trip(up, mode):
    im = Image.fromarray(data.astronaut()).resize((8, 8)).convert(mode)
    out = up.upscale(im)
    assert isinstance(out, Image.Image) and out.size == (32, 32)
    expected_mode = {"P": "RGB"}.get(mode, mode)
    assert out.mode == expected_mode


def test_alpha_is_upscaled_separately(up):
    rgba = np.dstack([data.astronaut()[:8, :8], np.linspace(0, 255, 64).reshape(8, 8).astype(np.uint8)])
    out = up.upscale(rgba)
    assert out.shape == (32, 32, 4)
    want = np.rint(np.clip(imresize(rgba[..., 3].astype(np.float32) / 255, output_shape=(32, 32)), 0, 1) * 255)
    assert np.array_equal(out[..., 3], want.astype(np.uint8))


def test_16bit_and_float_arrays_keep_their_precision(up):
    rgb16 = (data.astronaut()[:8, :8].astype(np.uint16) * 257 + 3)
    out16 = up.upscale(rgb16)
    assert out16.dtype == np.uint16 and out16.shape == (32, 32, 3)
    assert np.any(out16 % 257 != 0)  # not squeezed through 8 bits
    outf = up.upscale(rgb16.astype(np.float32) / 65535)
    assert outf.dtype == np.float32 and 0 <= outf.min() and outf.max() <= 1


def test_grayscale_array_stays_grayscale(up):
    out = up.upscale(data.camera()[:8, :8])
    assert out.shape == (32, 32) and out.dtype == np.uint8


def test_batch_equals_single(up):
    ims = [data.astronaut()[i:i + 8, i:i + 8] for i in (0, 100, 300)]
    batch = up.upscale_batch(ims, batch_size=2)
    for im, b in zip(ims, batch):
        assert np.abs(up.upscale(im).astype(int) - b.astype(int)).max() <= 1


def test_bad_arrays_are_clear_errors(up):
    with pytest.raises(GleanError, match="dtype"):
        up.upscale(np.zeros((8, 8, 3), dtype=np.int64))
    with pytest.raises(GleanError, match="shape"):
        up.upscale(np.zeros((8, 8, 5), dtype=np.uint8))


def test_bad_precision_and_model(tiny_glean, tmp_path):
    with pytest.raises(GleanError, match="precision"):
        Upscaler(tiny_glean, precision="fp8")
    with pytest.raises(GleanError, match="weights file not found: .*missing.pth"):
        Upscaler(str(tmp_path / "missing.pth"))
    with pytest.raises(GleanError, match="did you mean 'glean_cat_8x'"):
        Upscaler("glean_cat8x")


def test_one_upscaler_shared_by_threads_gives_the_serial_results(up):
    """A web server shares one Upscaler: the model run is locked, the rest runs in parallel."""
    from concurrent.futures import ThreadPoolExecutor

    photo = data.astronaut()
    images = [photo[i * 37 % 500:i * 37 % 500 + 8, i * 53 % 500:i * 53 % 500 + 8] for i in range(24)]
    serial = [up.upscale(im) for im in images]
    with ThreadPoolExecutor(max_workers=6) as pool:
        parallel = list(pool.map(up.upscale, images))
    assert all(np.array_equal(a, b) for a, b in zip(serial, parallel))


def test_run_is_the_numpy_runner_contract(up, tiny_glean):
    x = np.random.default_rng(0).uniform(-1, 1, (3, 3, 8, 8)).astype(np.float32)
    y = up.run(x)
    assert isinstance(y, np.ndarray) and y.dtype == np.float32 and y.shape == (3, 3, 32, 32)
    with torch.no_grad():
        want = tiny_glean.set_impl("ref")(torch.from_numpy(x)).numpy()
    assert np.abs(y - want).max() < 1e-4
    lrs = data.astronaut()[None, :8, :8]
    want_u8 = np.rint(np.clip((up.run((lrs.transpose(0, 3, 1, 2) / 255 - 0.5).astype(np.float32) * 2) + 1) / 2, 0, 1)
                      * 255).transpose(0, 2, 3, 1)
    assert np.array_equal(up.sr_uint8(lrs), want_u8.astype(np.uint8))


def test_a_zoo_model_knows_its_entry_and_only_face_models_do_whole_photos(up):
    glyphs = Upscaler("glean_glyphs_8x", device="cpu")
    assert (glyphs.entry.name, glyphs.entry.domain, glyphs.entry.face_model) == ("glean_glyphs_8x", "glyphs", False)
    assert (glyphs.in_size, glyphs.out_size, glyphs.scale) == (16, 128, 8)
    with pytest.raises(GleanError, match="large.*glean_glyphs_8x \\(glyphs: text glyphs"):
        glyphs.upscale(data.astronaut())
    with pytest.raises(GleanError, match=r"glean_glyphs_8x \(glyphs: .*\) is not a face model.*glean_ffhq_16x"):
        glyphs.upscale_photo(data.astronaut())
    assert up.entry is None and not up.face_model
    with pytest.raises(GleanError, match="cannot tell whether the model is a face model"):
        up.upscale_photo(data.astronaut())


def test_importing_the_upscaler_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, gleansr.pipeline.upscaler, gleansr.pipeline.inmemory; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_a_runner_is_used_as_it_is(tiny_glean, tmp_path):
    """Any Runner (name, sizes, precision, call) drives the Upscaler: how ONNX Runtime plugs in."""
    from gleansr.loading import save_safetensors

    path = save_safetensors(tiny_glean, tmp_path / "tiny.safetensors", config=tiny_glean.config.to_dict())
    reference = Upscaler(path, device="cpu", precision="fp32")

    class Doubled:
        name, in_size, out_size, precision = "doubled", 8, 32, "fp32"
        calls = 0

        def __call__(self, x):
            Doubled.calls += 1
            return reference.run(x)

    up = Upscaler(Doubled())
    assert (up.name, up.in_size, up.out_size, up.precision, up.entry) == ("doubled", 8, 32, "fp32", None)
    lr = data.astronaut()[:8, :8]
    assert np.array_equal(up.upscale(lr), reference.upscale(lr)) and Doubled.calls == 1
