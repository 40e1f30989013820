"""State-dict keys, shapes and order against the upstream manifests, for the four MMEditing releases."""
import json

import pytest
import torch

from conftest import MANIFEST_DIR
from gleansr import GLEANStyleGANv2, StyleGAN2Discriminator, create_model
from gleansr.zoo import ZOO

NAMES = sorted(n for n, e in ZOO.items() if not e.weights.bundled)


def manifest(name):
    return json.loads((MANIFEST_DIR / f"{name}.json").read_text())


def test_every_manifest_has_a_preset():
    assert sorted(p.stem for p in MANIFEST_DIR.glob("*.json")) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_generator_and_discriminator_layout(name):
    m = manifest(name)
    with torch.device("meta"):
        g = GLEANStyleGANv2(**m["generator_kwargs"])
        d = StyleGAN2Discriminator(**m["discriminator_kwargs"])
    got_g = [["generator." + k, list(v.shape)] for k, v in g.state_dict().items()]
    got_d = [["discriminator." + k, list(v.shape)] for k, v in d.state_dict().items()]
    assert got_g == m["generator_state_dict"]
    assert got_d == m["discriminator_state_dict"]
    assert sum(p.numel() for p in g.parameters()) == m["generator_num_params"]
    assert sum(p.numel() for p in g.parameters() if p.requires_grad) == m["generator_num_params_trainable"]
    assert sum(p.numel() for p in d.parameters()) == m["discriminator_num_params"]
    assert sorted("generator." + k for k, _ in g.named_buffers()) == sorted(m["generator_buffers"])


@pytest.mark.parametrize("name", NAMES)
def test_preset_declaration_matches_manifest_and_runs(name):
    m, p = manifest(name), ZOO[name]
    assert p.config.to_dict() == {**m["generator_kwargs"], "channel_max": 512, "latent_bank": True}  # extensions at upstream values
    assert p.weights.url == m["release_checkpoint"]
    # the reference gives the bank's plain-http address; the same file is fetched over https (#23)
    assert p.recipe.bank.url == m["stylegan2_init_checkpoint"].replace("http://", "https://", 1)
    assert p.psnr == m["reported_psnr_rgb"]
    assert p.scale == m["scale"]
    assert p.weights.sha256_prefix == p.weights.url.rsplit("-", 1)[1][:8]
    assert p.recipe.bank.sha256_prefix == p.recipe.bank.url.rsplit("-", 1)[1][:8]
    # a forward pass on the meta device checks every declared size without any compute
    with torch.device("meta"):
        model = create_model(name)
        y = model(torch.empty(2, 3, p.config.in_size, p.config.in_size))
    assert tuple(y.shape) == (2, 3, m["out_size"], m["out_size"])
