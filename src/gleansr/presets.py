"""The model zoo: one declaration per released model, resolved by :func:`create_model`."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import GleanError
from .models.glean import GLEANConfig, GLEANStyleGANv2

MMEDIT_BASE = "https://download.openmmlab.com/mmediting/restorers/glean/"
MMGEN_BASE = "http://download.openmmlab.com/mmgen/stylegan2/official_weights/"


@dataclass(frozen=True)
class Preset:
    """A released GLEAN model.

    ``sha256_prefix`` is the first 8 hex digits of the file's SHA-256 (OpenMMLab puts
    them in the file name). ``psnr`` is the RGB PSNR reported upstream on ``test_set``.
    """

    name: str
    config: GLEANConfig
    filename: str
    psnr: float
    test_set: str
    trained_on: str
    bank_filename: str
    license: str = "Apache-2.0 (MMEditing release)"
    source_format: str = "mmedit"

    @property
    def url(self) -> str:
        return MMEDIT_BASE + self.filename

    @property
    def sha256_prefix(self) -> str:
        return self.filename.rsplit("-", 1)[1].split(".")[0]

    @property
    def bank_url(self) -> str:
        return MMGEN_BASE + self.bank_filename

    @property
    def scale(self) -> int:
        return self.config.scale


_CAT_BANK = "stylegan2-cat-config-f-official_20210327_172444-15bc485b.pth"
_FFHQ_BANK = "stylegan2-ffhq-config-f-official_20210327_171224-bce9310c.pth"

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("glean_cat_8x", GLEANConfig(32, 256), "glean_cat_8x_20210614-d3ac8683.pth", 23.98,
               "Cat100 (CAT_03, 100 images)", "LSUN cat, 29,343 images", _CAT_BANK),
        Preset("glean_cat_16x", GLEANConfig(16, 256), "glean_cat_16x_20210527-68912543.pth", 20.88,
               "Cat100 (CAT_03, 100 images)", "LSUN cat", _CAT_BANK),
        Preset("glean_ffhq_16x", GLEANConfig(64, 1024), "glean_ffhq_16x_20210527-61a3afad.pth", 26.91,
               "CelebA-HQ 100 (00001-00100)", "FFHQ 70k", _FFHQ_BANK),
        Preset("glean_in128out1024_4x2_300k_ffhq_celebahq", GLEANConfig(128, 1024),
               "glean_in128out1024_4x2_300k_ffhq_celebahq_20210812-acbcb04f.pth", 27.94,
               "CelebA-HQ 100, clean bicubic x8", "FFHQ + CelebA-HQ, degraded on the fly", _FFHQ_BANK),
    )
}


def default_model_name() -> str:
    """The model used when none is named: the bundled one, when its weights are installed."""
    from .zoo_local import default_bundled_model

    name = default_bundled_model()
    if name is None:
        raise GleanError("no default model is installed: pass --model NAME (see `gleansr models`) or --weights PATH")
    return name


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise GleanError(f"unknown model {name!r}; choose one of: {', '.join(PRESETS)}") from None


def create_model(name: str, weights: str | os.PathLike | None = None, download: bool = False) -> GLEANStyleGANv2:
    """Build the preset's generator; load ``weights`` (a file) strictly if given.

    ``weights="pretrained"`` resolves the release file from the cache (``$GLEANSR_HOME``)
    and, with ``download=True``, fetches and verifies it. Without weights the model is
    randomly initialised, which is only useful for training.
    """
    from .checkpoints import load_checkpoint

    preset = get_preset(name)
    model = GLEANStyleGANv2(**preset.config.to_dict())
    if weights is None:
        return model
    if str(weights) == "pretrained":
        from .hub import resolve_weights

        weights = resolve_weights(preset.filename, preset.url, preset.sha256_prefix, download_ok=download)
    load_checkpoint(model, Path(weights), prefix="generator.")
    return model.eval()
