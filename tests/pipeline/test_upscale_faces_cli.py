"""`gleansr upscale --faces`: whole photos through a face model, the rest bicubic."""
import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

pytest.importorskip("dlib")

from gleansr import GLEANStyleGANv2  # noqa: E402
from gleansr.loading import save_safetensors  # noqa: E402
from gleansr.cli import main  # noqa: E402
from gleansr.pipeline.faces import bicubic_upscale  # noqa: E402
from gleansr.pipeline.images import load_image  # noqa: E402


def test_photo_with_and_without_faces(tmp_path, capsys):
    torch.manual_seed(0)
    g = GLEANStyleGANv2(in_size=16, out_size=64, rrdb_channels=8, num_rrdbs=1, style_channels=16, num_mlps=2,
                        channel_max=16)
    weights = save_safetensors(g, tmp_path / "face.safetensors", config=g.config.to_dict())
    Image.fromarray(data.astronaut()).save(tmp_path / "astro.png")
    Image.fromarray(data.coffee()).save(tmp_path / "coffee.png")
    args = ["upscale", str(tmp_path / "astro.png"), str(tmp_path / "coffee.png"), "-o", str(tmp_path / "out"),
            "--weights", str(weights), "--faces", "--scale", "2", "--draw-boxes", "--face-landmarks", "5"]
    assert main(args) == 2  # a file is a face model only when the user says so
    assert "face.safetensors is a face model; if it was trained on aligned" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    rc = main(args + ["--face-model-ok"])
    err = capsys.readouterr().err
    assert rc == 0
    assert "astro.png: 1 of 1 face(s) restored" in err
    assert "coffee.png: no face found" in err
    astro = load_image(tmp_path / "out" / "astro_x2.png").rgb
    assert astro.shape == (1024, 1024, 3)
    background = bicubic_upscale(data.astronaut().astype(np.float32) / 255, 2)
    # far from the face (bottom rows) the photo is exactly the background upscaler's output
    assert np.abs(astro[900:] - background[900:]).max() <= 1 / 255 + 1e-6
    # the face region was replaced by the (random) face model's output
    assert np.abs(astro[200:300, 400:500] - background[200:300, 400:500]).mean() > 0.02
    coffee = load_image(tmp_path / "out" / "coffee_x2.png").rgb
    want = bicubic_upscale(data.coffee().astype(np.float32) / 255, 2)
    assert np.abs(coffee - want).max() <= 1 / 255 + 1e-6
    assert (tmp_path / "out" / "astro_x2_faces.png").is_file()


def test_upscale_photo_is_the_library_face_path(tmp_path):
    """What `--faces` runs, from Python: the same inputs as Upscaler.upscale, the kind given back."""
    from gleansr.errors import GleanError
    from gleansr.pipeline.upscaler import Upscaler

    torch.manual_seed(0)
    g = GLEANStyleGANv2(in_size=16, out_size=64, rrdb_channels=8, num_rrdbs=1, style_channels=16, num_mlps=2,
                        channel_max=16)
    with pytest.raises(GleanError, match="cannot tell whether the model is a face model"):
        Upscaler(g, device="cpu").upscale_photo(data.astronaut())
    up = Upscaler(g, device="cpu", face_model=True)
    result = up.upscale_photo(data.astronaut(), 2, landmarks="5")
    assert result.image.dtype == np.uint8 and result.image.shape == (1024, 1024, 3)
    assert len(result.restored) == 1 and result.messages[-1] == "1 of 1 face(s) restored by the face model"
    Image.fromarray(data.astronaut()).save(tmp_path / "astro.png")
    again = up.upscale_photo(tmp_path / "astro.png", 2, landmarks="5")
    assert isinstance(again.image, Image.Image) and np.array_equal(np.asarray(again.image), result.image)
