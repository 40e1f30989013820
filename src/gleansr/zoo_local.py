"""Models that ship inside the package: usable offline, on a fresh clone, with no download.

``glean_glyphs_8x`` is a small GLEAN (16 -> 128, x8) trained by this project on glyph images
rendered from freely licensed fonts (``gleansr data glyphs``), with a StyleGAN2 latent bank
trained on the same glyphs; the test fonts are whole font designs neither network saw. The
recipe is ``scripts/train_glyph_model.sh``; data, figures and limits are in
``assets/MODEL_CARD.md``. The weights file is written by that recipe's export step.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from .errors import CheckpointError, GleanError
from .models.glean import GLEANConfig, GLEANStyleGANv2

ASSETS = Path(__file__).resolve().parent / "assets"
SAMPLES = ASSETS / "samples"  # lr/<name>.png (in_size) and hr/<name>.png (out_size), held-out fonts

# Small enough to train on 2 CPU cores and to ship (3.75 M parameters, 15 MB in float32); the
# 128 px layers are 32 wide (channel_multiplier 0.25) to halve the cost of CPU training.
GLYPHS_8X_CONFIG = GLEANConfig(in_size=16, out_size=128, rrdb_channels=16, num_rrdbs=2, style_channels=128,
                               num_mlps=4, channel_multiplier=0.25, channel_max=64)


@dataclass(frozen=True)
class BundledModel:
    """A model whose weights live in ``gleansr/assets``.

    The figures are RGB PSNR (dB) / SSIM on the held-out fonts' glyphs (clean MATLAB-bicubic
    x8 LR), as ``scripts/eval_ablation.py`` measures them; None until the model is trained.
    """

    name: str
    config: GLEANConfig
    filename: str
    trained_on: str
    test_set: str
    license: str
    psnr: float | None = None
    ssim: float | None = None
    bicubic_psnr: float | None = None
    bicubic_ssim: float | None = None

    @property
    def scale(self) -> int:
        return self.config.scale

    @property
    def path(self) -> Path:
        return ASSETS / self.filename

    def is_present(self) -> bool:
        return self.path.is_file()


BUNDLED: dict[str, BundledModel] = {
    m.name: m
    for m in (
        BundledModel(
            name="glean_glyphs_8x",
            config=GLYPHS_8X_CONFIG,
            filename="glean_glyphs_8x.safetensors",
            trained_on="glyphs (A-Z a-z 0-9 &?!@#%$) of Debian's free fonts, held-out designs excluded",
            test_set="held-out font designs",
            license="Apache-2.0 (weights trained by gleansr)",
            # scripts/train_glyph_model.sh, PROFILE=cpu (bank 4000, GLEAN 1000 iterations; runs/glyphs/results.md)
            psnr=24.19, ssim=0.9002, bicubic_psnr=16.58, bicubic_ssim=0.6620,
        ),
    )
}


def bundled_models() -> list[BundledModel]:
    """Every declared bundled model, present or not (see :meth:`BundledModel.is_present`)."""
    return list(BUNDLED.values())


def default_bundled_model() -> str | None:
    """The first bundled model whose weights are installed, or None."""
    return next((m.name for m in BUNDLED.values() if m.is_present()), None)


def bundled_weights_path(name: str) -> Path:
    """The weights file of bundled model ``name``; GleanError if unknown or not installed."""
    if name not in BUNDLED:
        raise GleanError(f"unknown bundled model {name!r}; bundled models: {', '.join(BUNDLED)}")
    path = BUNDLED[name].path
    if not path.is_file():
        raise GleanError(f"the weights of bundled model {name!r} are not installed (expected {path}); "
                         "build them with scripts/train_glyph_model.sh")
    return path


def load_bundled(name: str) -> GLEANStyleGANv2:
    """The bundled model, loaded strictly; its file's config must be the declared one."""
    from .checkpoints import load_glean

    path = bundled_weights_path(name)
    model = load_glean(path)
    declared = dataclasses.asdict(BUNDLED[name].config)
    if dataclasses.asdict(model.config) != declared:
        raise CheckpointError(f"{path}: its config {dataclasses.asdict(model.config)} is not the one declared "
                              f"for {name} ({declared})")
    return model
