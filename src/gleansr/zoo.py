"""The model zoo: one declaration per model, read by every part of gleansr.

A :class:`ModelEntry` says what the model is (GLEAN configuration, sizes), where its weights come
from (a :class:`~gleansr.hub.WeightsSource`: a URL with the SHA-256 prefix OpenMMLab puts in file
names, or a file in ``gleansr/assets``), what it restores (domain, input kind, whether it is a
face model), how an image becomes its input (:class:`InputSpec`: normalisation and resize method,
as timm's pretrained configs record them), how well (the metrics reported on its test set), under
which licence, and how it was trained (:class:`TrainingRecipe`, used by ``gleansr train <name>``).
Adding a model is one declaration here and its manifest test.
"""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Literal, Union

from .errors import GleanError, WeightsError
from .glean_config import GLEANConfig
from .hub import WeightsSource, cache_dir, cache_state, resolve_weights, sha256_prefix_from_name

if TYPE_CHECKING:  # the zoo reads no tensors: torch is imported only to build a model
    from .models.glean import GLEANStyleGANv2

ASSETS = Path(__file__).resolve().parent / "assets"
SAMPLES = ASSETS / "samples"  # lr/<name>.png (in_size) and hr/<name>.png (out_size), held-out fonts
MMEDIT_BASE = "https://download.openmmlab.com/mmediting/restorers/glean/"
MMGEN_BASE = "https://download.openmmlab.com/mmgen/stylegan2/official_weights/"


def _openmmlab(base: str, filename: str) -> WeightsSource:
    """OpenMMLab names end in ``-<first 8 hex digits of the SHA-256>.pth``; no full hash or size is published
    (shared/reference has none either), so the first verified copy's hash is recorded (see gleansr.hub)."""
    return WeightsSource(filename, base + filename, sha256_prefix_from_name(filename))


@dataclass(frozen=True, kw_only=True)
class InputSpec:
    """How an image becomes the model's input: centre-cropped to a square, resized to ``in_size``
    by ``resize``, then ``(pixel / 255 - mean) / std`` per RGB channel (GLEAN's: [-1, 1]); the
    output is mapped back by the inverse."""

    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    resize: Literal["matlab-bicubic"] = "matlab-bicubic"  # MATLAB's imresize, antialiased (what GLEAN trains on)
    crop: Literal["center"] = "center"

    @property
    def value_range(self) -> tuple[float, float]:
        """The range pixel values 0..255 map to (per channel, the widest)."""
        return (min(-m / s for m, s in zip(self.mean, self.std)), max((1 - m) / s for m, s in zip(self.mean, self.std)))


GLEAN_INPUT = InputSpec()  # every GLEAN model: RGB in [-1, 1], MATLAB bicubic


@dataclass(frozen=True, kw_only=True)
class TrainingRecipe:
    """What the model was trained with; ``gleansr train <name>`` starts from it.

    ``settings`` are further TrainConfig values the recipe fixes (name, value), e.g. a learning rate.
    """

    batch_size: int  # per process
    processes: int  # upstream world size; total batch = batch_size * processes
    degradations: bool  # LR made on the fly by the in128 degradations (else MATLAB bicubic)
    perceptual_input_range: str  # "[-1,1]" or "[0,1]": the range images enter VGG's normalisation in
    bank: WeightsSource | None  # pretrained StyleGAN2: generator_ema -> bank, discriminator -> D
    settings: tuple[tuple[str, Any], ...] = ()

    @property
    def total_batch(self) -> int:
        return self.batch_size * self.processes


@dataclass(frozen=True, kw_only=True)
class ModelEntry:
    """One model of the zoo (see the module docstring)."""

    name: str
    config: GLEANConfig
    weights: WeightsSource
    domain: str  # short: "cats", "faces", "glyphs"
    input_kind: str  # what an input must look like
    face_model: bool  # True for the FFHQ models; `--faces` accepts only these
    psnr: float | None  # RGB PSNR (dB) reported on test_set
    ssim: float | None
    test_set: str
    trained_on: str
    licence: str
    recipe: TrainingRecipe | None  # None: no known recipe
    bicubic_psnr: float | None = None  # MATLAB bicubic on the same test set, where measured
    bicubic_ssim: float | None = None
    # PSNR (dB) of the bf16 output against fp32 after uint8 rounding, measured with these weights by
    # benchmarks/bench_deploy.py; precision "auto" picks bf16 only when it is known and >= 50 dB
    bf16_psnr: float | None = None
    preprocess: InputSpec = GLEAN_INPUT

    @property
    def scale(self) -> int:
        return self.config.scale

    @property
    def in_size(self) -> int:
        return self.config.in_size

    @property
    def out_size(self) -> int:
        return self.config.out_size


_CAT_BANK = _openmmlab(MMGEN_BASE, "stylegan2-cat-config-f-official_20210327_172444-15bc485b.pth")
_FFHQ_BANK = _openmmlab(MMGEN_BASE, "stylegan2-ffhq-config-f-official_20210327_171224-bce9310c.pth")
_MMEDIT_LICENCE = "Apache-2.0 (MMEditing release)"
_FACES = "aligned face crops (FFHQ alignment), {0}x{0}"
_CATS = "cat photos, the head centred and filling the crop, {0}x{0}"

# Small enough to train on 2 CPU cores and to ship (3.75 M parameters, 15 MB in float32); the
# 128 px layers are 32 wide (channel_multiplier 0.25) to halve the cost of CPU training.
GLYPHS_8X_CONFIG = GLEANConfig(in_size=16, out_size=128, rrdb_channels=16, num_rrdbs=2, style_channels=128,
                               num_mlps=4, channel_multiplier=0.25, channel_max=64)

_ENTRIES = (
    # Upstream recipes (REFERENCE.md): 2 GPUs x 8 (cats), 2 x 4 (ffhq_16x), 4 x 2 (in128); only in128
    # degrades its LR on the fly and feeds VGG images in [0, 1] (MMEditing's norm_img=True).
    ModelEntry(name="glean_cat_8x", config=GLEANConfig(in_size=32, out_size=256),
               weights=_openmmlab(MMEDIT_BASE, "glean_cat_8x_20210614-d3ac8683.pth"),
               domain="cats", input_kind=_CATS.format(32), face_model=False, psnr=23.98, ssim=None,
               test_set="Cat100 (CAT_03, 100 images)", trained_on="LSUN cat, 29,343 images", licence=_MMEDIT_LICENCE,
               recipe=TrainingRecipe(batch_size=8, processes=2, degradations=False, perceptual_input_range="[-1,1]",
                                     bank=_CAT_BANK)),
    ModelEntry(name="glean_cat_16x", config=GLEANConfig(in_size=16, out_size=256),
               weights=_openmmlab(MMEDIT_BASE, "glean_cat_16x_20210527-68912543.pth"),
               domain="cats", input_kind=_CATS.format(16), face_model=False, psnr=20.88, ssim=None,
               test_set="Cat100 (CAT_03, 100 images)", trained_on="LSUN cat", licence=_MMEDIT_LICENCE,
               recipe=TrainingRecipe(batch_size=8, processes=2, degradations=False, perceptual_input_range="[-1,1]",
                                     bank=_CAT_BANK)),
    ModelEntry(name="glean_ffhq_16x", config=GLEANConfig(in_size=64, out_size=1024),
               weights=_openmmlab(MMEDIT_BASE, "glean_ffhq_16x_20210527-61a3afad.pth"),
               domain="faces", input_kind=_FACES.format(64), face_model=True, psnr=26.91, ssim=None,
               test_set="CelebA-HQ 100 (00001-00100)", trained_on="FFHQ 70k", licence=_MMEDIT_LICENCE,
               recipe=TrainingRecipe(batch_size=4, processes=2, degradations=False, perceptual_input_range="[-1,1]",
                                     bank=_FFHQ_BANK)),
    ModelEntry(name="glean_in128out1024_4x2_300k_ffhq_celebahq", config=GLEANConfig(in_size=128, out_size=1024),
               weights=_openmmlab(MMEDIT_BASE, "glean_in128out1024_4x2_300k_ffhq_celebahq_20210812-acbcb04f.pth"),
               domain="faces", input_kind=_FACES.format(128) + ", blurred/noisy/JPEG inputs allowed", face_model=True,
               psnr=27.94, ssim=None, test_set="CelebA-HQ 100, clean bicubic x8",
               trained_on="FFHQ + CelebA-HQ, degraded on the fly", licence=_MMEDIT_LICENCE,
               recipe=TrainingRecipe(batch_size=2, processes=4, degradations=True, perceptual_input_range="[0,1]",
                                     bank=_FFHQ_BANK)),
    # Trained by scripts/train_glyph_model.sh (PROFILE=cpu: bank 4000, GLEAN 1000 iterations); the
    # figures are on the held-out fonts' glyphs (clean MATLAB-bicubic x8 LR), runs/glyphs/results.md.
    # Its bank comes from `gleansr bank train` (no download).
    ModelEntry(name="glean_glyphs_8x", config=GLYPHS_8X_CONFIG, weights=WeightsSource("glean_glyphs_8x.safetensors"),
               domain="glyphs", input_kind="text glyphs, black on white, one character centred, 16x16",
               face_model=False, psnr=24.19, ssim=0.9002, test_set="held-out font designs",
               trained_on="glyphs (A-Z a-z 0-9 &?!@#%$) of Debian's free fonts, held-out designs excluded",
               licence="Apache-2.0 (weights trained by gleansr)",
               recipe=TrainingRecipe(batch_size=8, processes=1, degradations=False, perceptual_input_range="[-1,1]",
                                     bank=None,
                                     settings=(("lr_g", 2e-4), ("lr_d", 2e-4), ("perceptual_weight", 0.0),
                                               ("gan_weight", 0.0), ("max_iters", 1000), ("precision", "bf16"))),
               bicubic_psnr=16.58, bicubic_ssim=0.6620, bf16_psnr=51.8),
)
ZOO: dict[str, ModelEntry] = {e.name: e for e in _ENTRIES}

# torchvision's VGG16, the perceptual loss's network in every recipe.
VGG16_WEIGHTS = WeightsSource("vgg16-397923af.pth", "https://download.pytorch.org/models/vgg16-397923af.pth",
                              "397923af")


def get_entry(name: str) -> ModelEntry:
    """The declaration of model ``name``; GleanError with "did you mean ...?" for a near miss."""
    if name not in ZOO:
        raise GleanError(unknown_model_message(name))
    return ZOO[name]


def trainable_names() -> list[str]:
    """The models ``gleansr train <name>`` accepts: those that declare a training recipe."""
    return [name for name, entry in ZOO.items() if entry.recipe is not None]


def face_model_names() -> list[str]:
    """The models that take aligned face crops: the only ones ``--faces`` accepts."""
    return [name for name, entry in ZOO.items() if entry.face_model]


def did_you_mean(name: str, names: Iterable[str] | None = None) -> str:
    """"did you mean 'x'? " for the closest of ``names`` (default: the zoo's), or "" if none is close."""
    close = difflib.get_close_matches(str(name), list(ZOO if names is None else names), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}? " if close else ""


def unknown_model_message(name: str) -> str:
    """'unknown model ...; did you mean ...?' with the closest zoo name, if one is close."""
    return f"unknown model {name!r}; {did_you_mean(name)}models: {', '.join(ZOO)} (see `gleansr models`)"


def weights_file(entry_or_source: ModelEntry | WeightsSource | str, download: bool = False) -> Path:
    """The weights file of a zoo model or source: bundled, cached, or (``download=True``) downloaded and verified.

    Builds nothing: a missing file is a one-line GleanError (with the URL and the cache path to
    save it under) before any model exists.
    """
    if isinstance(entry_or_source, str):
        entry_or_source = get_entry(entry_or_source)
    source = entry_or_source.weights if isinstance(entry_or_source, ModelEntry) else entry_or_source
    if source.bundled:
        path = ASSETS / source.filename
        if not path.is_file():
            raise WeightsError(f"the bundled weights {source.filename} are not installed (expected {path}); "
                               "build them with scripts/train_glyph_model.sh",
                               f"the bundled weights {source.filename} are not installed on this server")
        return path
    return resolve_weights(source, download_ok=download)


def is_present(entry: ModelEntry) -> bool:
    """Whether the weights are on this machine (bundled or cached), without downloading or verifying."""
    folder = ASSETS if entry.weights.bundled else cache_dir()
    return (folder / entry.weights.filename).is_file()


def weights_status(entry: ModelEntry, verify: bool = False) -> str:
    """The state of a model's weights in words: "bundled", or the cache's :class:`~gleansr.hub.CacheState`
    ("present, verified", "present, not verified", "corrupt", "missing").

    ``verify=True`` hashes a cached file not verified yet (once: the result is recorded).
    """
    if entry.weights.bundled:
        return "bundled" if is_present(entry) else "not built (scripts/train_glyph_model.sh)"
    return cache_state(entry.weights, verify).value


WeightsArg = Union[str, "os.PathLike[str]", None]


def create_model(name: str, weights: WeightsArg = None, download: bool = False,
                 allow_nonfinite: bool = False) -> GLEANStyleGANv2:
    """The zoo model ``name``: random (``weights=None``, for training), ``"pretrained"`` or from a file.

    The weights file is found and read before the network is built; a file for another
    architecture than the declaration's, or holding NaN/inf (unless ``allow_nonfinite``), is refused.
    """
    from .loading import load_glean_state, load_state_dict_strict
    from .models.glean import GLEANStyleGANv2, build_uninitialised

    entry = get_entry(name)
    if weights is None:
        return GLEANStyleGANv2.from_config(entry.config)
    path = weights_file(entry, download) if str(weights) == "pretrained" else Path(weights)
    config, state = load_glean_state(path, allow_nonfinite)
    if config.to_dict() != entry.config.to_dict():
        raise GleanError(f"{path} holds a GLEAN {config.in_size} -> {config.out_size} with config "
                         f"{config.to_dict()}, not the {name} declared in the zoo ({entry.config.to_dict()})")
    model = build_uninitialised(entry.config)  # weights are loaded next: no random init
    load_state_dict_strict(model, state, str(path))
    return model.eval()


def load_model(name_or_path: str | os.PathLike[str], download: bool = False,
               allow_nonfinite: bool = False) -> GLEANStyleGANv2:
    """A ready GLEAN from a zoo name (its weights) or any GLEAN file or run folder the loader reads;
    weights holding NaN/inf are refused unless ``allow_nonfinite`` (for forensics)."""
    name = str(name_or_path)
    path = Path(name).expanduser()
    if name not in ZOO and path.exists():
        from .loading import load_glean

        return load_glean(path, allow_nonfinite)
    if name not in ZOO and (path.suffix or "/" in name or os.sep in name):
        raise GleanError(f"weights file not found: {path}")
    return create_model(name, "pretrained", download, allow_nonfinite)  # an unknown name: "did you mean ...?"


def default_model() -> ModelEntry:
    """The model used when none is named, by every door: the first bundled one whose weights are
    installed (release weights in the cache never change the default)."""
    for entry in ZOO.values():
        if entry.weights.bundled and is_present(entry):
            return entry
    raise GleanError("no default model is installed: name one (`gleansr models` lists them) or give a weights file")


def default_model_note(entry: ModelEntry) -> str:
    """The line a command prints when it runs the default model because none was named."""
    return (f"note: no --model given, using the default {entry.name} ({entry.domain}: {entry.input_kind}; "
            f"{entry.in_size}x{entry.in_size} -> {entry.out_size}x{entry.out_size}); `gleansr models` lists the others")
