import numpy as np
import pytest
import tifffile
from PIL import Image, ImageCms, ImageOps

from gleansr.errors import GleanError, ImageError
from gleansr.pipeline.images import FORMATS, format_can_hold, image_from_pil, load_image, save_image

H, W = 11, 17  # non-square, so a wrong transpose cannot pass
RNG = np.random.default_rng(0)


def u8(*shape):
    return RNG.integers(0, 256, size=(H, W, *shape), dtype=np.uint8).squeeze()


def u16(channels):
    values = RNG.integers(0, 65536, size=(H, W, channels), dtype=np.uint16)
    values[0, 0, 0] = 12345
    return values


def smooth_rgb():
    """Gradients: what lossy codecs keep well, unlike per-pixel noise."""
    y, x = np.mgrid[0:H, 0:W]
    return np.stack([x * 12, y * 20, (x + y) * 8 + 30], axis=2).astype(np.uint8)


def as_u8(values):
    return np.rint(values * 255).astype(np.int64)


def as_u16(values):
    return np.rint(values * 65535).astype(np.int64)


# --- reading every mode ----------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".png", ".tif", ".webp"])
def test_rgb_and_rgba_8bit_are_exact_in_lossless_formats(tmp_path, suffix):
    rgba = u8(4)
    path = tmp_path / f"a{suffix}"
    options = {"lossless": True, "exact": True} if suffix == ".webp" else {}
    Image.fromarray(rgba, "RGBA").save(path, **options)
    image = load_image(path)
    assert image.rgb.dtype == np.float32 and image.rgb.shape == (H, W, 3)
    assert (as_u8(image.rgb) == rgba[..., :3]).all() and (as_u8(image.alpha) == rgba[..., 3]).all()
    assert image.bit_depth == 8 and not image.grayscale and image.mode == "RGBA"

    Image.fromarray(rgba[..., :3], "RGB").save(path, **options)
    image = load_image(path)
    assert image.alpha is None and (as_u8(image.rgb) == rgba[..., :3]).all()


def test_jpeg_rgb_loads_close_to_the_source(tmp_path):
    rgb = smooth_rgb()
    Image.fromarray(rgb).save(tmp_path / "a.jpg", quality=98)
    image = load_image(tmp_path / "a.jpg")
    assert image.format == "JPEG" and image.alpha is None
    assert np.abs(as_u8(image.rgb) - rgb).mean() < 4


@pytest.mark.parametrize("mode", ["L", "LA", "1"])
def test_gray_modes_are_replicated_and_remembered(tmp_path, mode):
    source = Image.fromarray(u8(2), "LA").convert(mode)
    source.save(tmp_path / "g.png")
    image = load_image(tmp_path / "g.png")
    gray = np.asarray(source.convert("L")).astype(np.int64)
    assert image.grayscale and image.mode == mode and image.bit_depth == 8
    for channel in range(3):
        assert (as_u8(image.rgb[..., channel]) == gray).all()
    if mode == "LA":
        assert (as_u8(image.alpha) == np.asarray(source)[..., 1]).all()
    else:
        assert image.alpha is None


def test_gray_with_transparent_value_gets_alpha(tmp_path):
    gray = u8()
    Image.fromarray(gray, "L").save(tmp_path / "t.png", transparency=int(gray[0, 0]))
    image = load_image(tmp_path / "t.png")
    assert image.grayscale
    assert ((image.alpha == 0) == (gray == gray[0, 0])).all()


@pytest.mark.parametrize("transparency", [None, 3])
def test_palette_images_become_rgb_or_rgba(tmp_path, transparency):
    source = Image.fromarray(u8(3)).quantize(16)
    options = {} if transparency is None else {"transparency": transparency}
    source.save(tmp_path / "p.png", **options)
    image = load_image(tmp_path / "p.png")
    reference = Image.open(tmp_path / "p.png").convert("RGBA")
    assert image.mode == "P" and not image.grayscale
    assert (as_u8(image.rgb) == np.asarray(reference)[..., :3]).all()
    if transparency is None:
        assert image.alpha is None
    else:
        assert (as_u8(image.alpha) == np.asarray(reference)[..., 3]).all()
        assert (image.alpha == 0).any()


@pytest.mark.parametrize("suffix", [".tif", ".jpg"])
def test_cmyk_becomes_rgb(tmp_path, suffix):
    Image.fromarray(smooth_rgb()).convert("CMYK").save(tmp_path / f"c{suffix}")
    image = load_image(tmp_path / f"c{suffix}")
    assert image.mode == "CMYK" and image.rgb.shape == (H, W, 3) and image.alpha is None
    with Image.open(tmp_path / f"c{suffix}") as reference:
        assert (as_u8(image.rgb) == np.asarray(reference.convert("RGB"))).all()


@pytest.mark.parametrize("byteorder", ["<", ">"])
def test_16bit_gray_png_and_tiff_keep_every_bit(tmp_path, byteorder):
    gray = u16(1)[..., 0]
    Image.fromarray(gray).save(tmp_path / "g.png")
    tifffile.imwrite(tmp_path / "g.tif", gray, byteorder=byteorder)
    for name in ("g.png", "g.tif"):
        image = load_image(tmp_path / name)
        assert image.bit_depth == 16 and image.grayscale and image.mode.startswith("I")
        assert (as_u16(image.rgb[..., 1]) == gray).all()


@pytest.mark.parametrize("channels", [3, 4])
@pytest.mark.parametrize(
    "options", [{}, {"byteorder": ">"}, {"compression": "zlib", "rowsperstrip": 4}]
)
def test_16bit_colour_tiff_keeps_every_bit(tmp_path, channels, options):
    values = u16(channels)
    extra = {"extrasamples": ["unassalpha"]} if channels == 4 else {}
    tifffile.imwrite(tmp_path / "c.tif", values, photometric="rgb", **extra, **options)
    image = load_image(tmp_path / "c.tif")
    assert image.bit_depth == 16 and not image.grayscale
    assert (as_u16(image.rgb) == values[..., :3]).all()
    if channels == 4:
        assert (as_u16(image.alpha) == values[..., 3]).all()


def test_float_tiff_is_read_as_16bit_gray(tmp_path):
    values = RNG.random((H, W), dtype=np.float32) * 1.2 - 0.1
    tifffile.imwrite(tmp_path / "f.tif", values)
    image = load_image(tmp_path / "f.tif")
    assert image.mode == "F" and image.bit_depth == 16 and image.grayscale
    assert np.allclose(image.rgb[..., 0], np.clip(values, 0, 1))


# --- writing and reading back ------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".png", ".tif", ".tiff"])
@pytest.mark.parametrize("grayscale", [False, True])
@pytest.mark.parametrize("with_alpha", [False, True])
def test_16bit_round_trip_is_exact(tmp_path, suffix, grayscale, with_alpha):
    values = u16(4)
    if grayscale:
        values[..., 1] = values[..., 2] = values[..., 0]
    alpha = values[..., 3] / 65535 if with_alpha else None
    rgb = values[..., :3] / 65535
    path = save_image(tmp_path / f"o{suffix}", rgb, alpha, bit_depth=16, grayscale=grayscale)
    image = load_image(path)
    tiff_gray_alpha_stored_as_rgba = with_alpha and suffix != ".png"
    assert image.bit_depth == 16
    assert image.grayscale == (grayscale and not tiff_gray_alpha_stored_as_rgba)
    assert (as_u16(image.rgb) == values[..., :3]).all()
    assert as_u16(image.rgb)[0, 0, 0] == 12345
    if with_alpha:
        assert (as_u16(image.alpha) == values[..., 3]).all()
    else:
        assert image.alpha is None


def test_16bit_writers_agree_with_independent_readers(tmp_path):
    values = u16(3)
    save_image(tmp_path / "o.png", values / 65535, bit_depth=16)
    save_image(tmp_path / "o.tif", values / 65535, bit_depth=16)
    with Image.open(tmp_path / "o.png") as png:  # Pillow keeps only the high byte of each sample
        assert png.mode == "RGB" and (np.asarray(png) == values >> 8).all()
    assert (tifffile.imread(tmp_path / "o.tif") == values).all()


@pytest.mark.parametrize("suffix", [".png", ".tif", ".bmp", ".webp", ".jpg", ".jpeg"])
@pytest.mark.parametrize("grayscale", [False, True])
def test_8bit_round_trip(tmp_path, suffix, grayscale):
    values = smooth_rgb()
    if grayscale:
        values = np.repeat(values[..., :1], 3, axis=2)
    path = save_image(tmp_path / f"o{suffix}", values / 255, grayscale=grayscale)
    image = load_image(path)
    error = np.abs(as_u8(image.rgb) - values)
    lossy = suffix in (".jpg", ".jpeg", ".webp")
    assert (error.mean() < 4) if lossy else (error.max() == 0)
    assert image.grayscale == (grayscale and suffix != ".webp") and image.bit_depth == 8


@pytest.mark.parametrize("suffix", [".png", ".tif", ".webp"])
@pytest.mark.parametrize("grayscale", [False, True])
def test_8bit_alpha_round_trip(tmp_path, suffix, grayscale):
    values = u8(4)
    if grayscale:
        values[..., 1] = values[..., 2] = values[..., 0]
    options = {"quality": 100} if suffix == ".webp" else {}
    rgb, alpha = values[..., :3] / 255, values[..., 3] / 255
    path = save_image(tmp_path / f"o{suffix}", rgb, alpha, grayscale=grayscale, **options)
    image = load_image(path)
    assert (as_u8(image.alpha) == values[..., 3]).all()
    if suffix != ".webp":
        assert (as_u8(image.rgb) == values[..., :3]).all()


def test_values_are_rounded_and_clipped(tmp_path):
    rgb = np.full((2, 3, 3), 0.5, np.float32)
    rgb[0, 0] = [-0.2, 1.7, np.nan]
    image = load_image(save_image(tmp_path / "o.png", rgb))
    assert as_u8(image.rgb)[0, 0].tolist() == [0, 255, 0]
    assert as_u8(image.rgb)[1, 1].tolist() == [128, 128, 128]


def test_save_refuses_what_the_format_cannot_hold(tmp_path):
    rgb = np.zeros((4, 4, 3))
    with pytest.raises(ImageError, match=r"o\.jpg.*alpha.*\.png"):
        save_image(tmp_path / "o.jpg", rgb, np.ones((4, 4)))
    with pytest.raises(ImageError, match=r"o\.bmp.*alpha.*\.png"):
        save_image(tmp_path / "o.bmp", rgb, np.ones((4, 4)))
    with pytest.raises(ImageError, match=r"o\.webp.*16-bit.*\.png"):
        save_image(tmp_path / "o.webp", rgb, bit_depth=16)
    with pytest.raises(ImageError, match=r"o\.gif.*unknown image extension"):
        save_image(tmp_path / "o.gif", rgb)
    assert list(tmp_path.iterdir()) == []
    assert format_can_hold(".PNG", alpha=True, bit_depth=16)
    assert not format_can_hold(".jpg", alpha=False, bit_depth=16)
    assert not format_can_hold(".gif", alpha=False, bit_depth=8)
    assert set(FORMATS) == {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp"}


def test_save_never_overwrites_unless_asked(tmp_path):
    path = save_image(tmp_path / "o.png", np.zeros((4, 4, 3)))
    with pytest.raises(GleanError, match="o.png"):
        save_image(path, np.ones((4, 4, 3)))
    assert load_image(path).rgb.max() == 0
    save_image(path, np.ones((4, 4, 3)), overwrite=True)
    assert load_image(path).rgb.min() == 1


# --- metadata ------------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_like_pillow(tmp_path, orientation):
    source = Image.fromarray(u8(3))
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "gleansr-test"  # Make
    source.save(tmp_path / "o.png", exif=exif)
    image = load_image(tmp_path / "o.png")
    expected = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "o.png")))
    assert (as_u8(image.rgb) == expected).all()
    carried = Image.Exif()
    carried.load(image.exif)
    assert 0x0112 not in carried and carried[0x010F] == "gleansr-test"


def test_jpeg_orientation_6_is_turned_upright(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.zeros((16, 32, 3), np.uint8)).save(tmp_path / "o.jpg", exif=exif)
    assert load_image(tmp_path / "o.jpg").rgb.shape == (32, 16, 3)


def test_16bit_colour_orientation(tmp_path):
    values = u16(3)
    exif = Image.Exif()
    exif[0x0112] = 8
    save_image(tmp_path / "o.png", values / 65535, bit_depth=16, exif=exif.tobytes())
    assert (as_u16(load_image(tmp_path / "o.png").rgb) == np.rot90(values, 1)).all()


def test_icc_profile_is_carried_when_it_fits(tmp_path):
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(u8(3)).save(tmp_path / "in.png", icc_profile=srgb)
    image = load_image(tmp_path / "in.png")
    assert image.icc_profile == srgb
    for suffix, bit_depth in [(".png", 8), (".jpg", 8), (".tif", 8), (".png", 16), (".tif", 16)]:
        out = tmp_path / f"o{bit_depth}{suffix}"
        save_image(out, image.rgb, bit_depth=bit_depth, icc_profile=srgb)
        assert load_image(out).icc_profile == srgb, out
    gray = save_image(tmp_path / "g.png", image.rgb, grayscale=True, icc_profile=srgb)
    assert load_image(gray).icc_profile is None  # an RGB profile does not describe gray pixels


# --- failures --------------------------------------------------------------------------------


def good_jpeg_and_png(tmp_path):
    Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "ok.jpg")
    Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "ok.png")
    return (tmp_path / "ok.jpg").read_bytes(), (tmp_path / "ok.png").read_bytes()


def test_unreadable_files_raise_one_line_image_errors(tmp_path):
    jpeg, png = good_jpeg_and_png(tmp_path)
    cases = {
        "missing.png": (None, "no such file"),
        "empty.png": (b"", "empty"),
        "notes.jpg": (b"just some text, not pixels\n" * 10, "not an image"),
        "cut.jpg": (jpeg[: len(jpeg) // 2], "truncated"),
        "cut.png": (png[: len(png) // 2], "truncated"),
        "garbled.png": (png[:100] + bytes(200) + png[300:], "corrupt"),
    }
    for name, (data, reason) in cases.items():
        if data is not None:
            (tmp_path / name).write_bytes(data)
        with pytest.raises(ImageError, match=reason) as info:
            load_image(tmp_path / name)
        message = str(info.value)
        assert name in message and "\n" not in message
    with pytest.raises(ImageError, match="folder"):
        load_image(tmp_path)


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageError, match=r"big\.png.*too large"):
        load_image(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000 // 2)  # beyond twice the limit: an error
    with pytest.raises(ImageError, match=r"big\.png.*too large"):
        load_image(tmp_path / "big.png")


def test_loading_leaves_the_input_untouched(tmp_path):
    values = u16(3)
    paths = [save_image(tmp_path / "a.png", values / 65535, bit_depth=16)]
    Image.fromarray(u8(3)).save(tmp_path / "b.jpg")
    paths.append(tmp_path / "b.jpg")
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in paths}
    for p in paths:
        load_image(p)
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in paths} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.jpg"]


def test_pil_image_decodes_like_its_file_and_is_left_alone(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "gleansr-test"
    Image.fromarray(u8(3)).save(tmp_path / "o.png", exif=exif)
    with Image.open(tmp_path / "o.png") as im:
        got = image_from_pil(im)
        assert im.getexif()[0x0112] == 6  # the caller's EXIF still has its orientation
    want = load_image(tmp_path / "o.png")
    assert (got.rgb == want.rgb).all() and got.exif == want.exif and got.bit_depth == 8
    values = u16(3)
    save_image(tmp_path / "c16.png", values / 65535, bit_depth=16)
    with Image.open(tmp_path / "c16.png") as im:  # still file-backed: all 16 bits
        assert (as_u16(image_from_pil(im).rgb) == values).all()
    in_memory = Image.fromarray(u8(3)).convert("CMYK")
    assert image_from_pil(in_memory).rgb.shape == (*u8(3).shape[:2], 3)
