"""Every layer's fused inference form against the layer itself (float64, reference ops)."""
import pytest
import torch
import torch.nn as nn

import gleansr.models.fused as fused
from conftest import with_nonzero_biases
from gleansr.models.fused import FuseTarget, fuse
from gleansr.models.glean import GLEANStyleGANv2, PixelShufflePack, build_uninitialised
from gleansr.models.layers import EqualConv2d
from gleansr.models.rrdb import RRDB, ResidualDenseBlock, RRDBFeatureExtractor
from gleansr.models.stylegan2 import ModulatedStyleConv

TARGETS = [FuseTarget(torch.float64), FuseTarget(torch.float64, channels_last=True),
           FuseTarget(torch.float64, channels_last=True, winograd=True)]


def _rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# (name, module factory, input shape): one entry per module type the walk fuses
PLAIN_LAYERS = [
    ("Conv2d", lambda: nn.Conv2d(6, 5, 3, 1, 1), (2, 6, 8, 8)),
    ("Conv2d-stride2", lambda: nn.Conv2d(6, 5, 3, 2, 1), (2, 6, 8, 8)),
    ("Sequential-conv-lrelu", lambda: nn.Sequential(nn.Conv2d(4, 4, 3, 1, 1), nn.LeakyReLU(0.2, True),
                                                    nn.Flatten(), nn.Linear(4 * 16, 7)), (2, 4, 4, 4)),
    ("EqualConv2d", lambda: EqualConv2d(4, 6, 3, padding=1), (2, 4, 8, 8)),
    ("ResidualDenseBlock", lambda: ResidualDenseBlock(8, 4), (2, 8, 8, 8)),
    ("RRDB", lambda: RRDB(8, 4), (2, 8, 8, 8)),
    ("RRDBFeatureExtractor", lambda: RRDBFeatureExtractor(3, 8, num_blocks=2, growth_channels=4), (2, 3, 8, 8)),
    ("PixelShufflePack", lambda: PixelShufflePack(6, 4), (2, 6, 8, 8)),
]


@pytest.fixture
def all_winograd(monkeypatch):
    """Route every 3x3 stride-1 convolution through Winograd, so the tiny layers test it too."""
    monkeypatch.setattr(fused, "WINOGRAD_MIN_CHANNELS", 0)


@pytest.mark.parametrize("target", TARGETS, ids=["nchw", "channels_last", "winograd"])
@pytest.mark.parametrize("name,make,shape", PLAIN_LAYERS, ids=[p[0] for p in PLAIN_LAYERS])
def test_fused_layer_matches_the_layer(name, make, shape, target, all_winograd):
    torch.manual_seed(0)
    layer = with_nonzero_biases(make()).double()
    x = _rand(*shape)
    with torch.no_grad():
        want = layer(x)
    got = fuse(layer, target)(target.activation(x))
    assert not list(fuse(layer, target).parameters()), "fused forms hold buffers only"
    torch.testing.assert_close(got, want, atol=1e-12, rtol=0)


@pytest.mark.parametrize("target", TARGETS, ids=["nchw", "channels_last", "winograd"])
@pytest.mark.parametrize("upsample", [False, True])
def test_fused_style_conv_matches_the_layer(upsample, target, all_winograd):
    torch.manual_seed(0)
    layer = with_nonzero_biases(ModulatedStyleConv(6, 5, 3, style_channels=7, upsample=upsample)).double()
    layer.conv.impl = layer.activate.impl = layer.conv.style_modulation.impl = "ref"
    x, w = _rand(2, 6, 8, 8), _rand(2, 7, seed=1)
    noise = _rand(1, 1, 16 if upsample else 8, 16 if upsample else 8, seed=2)
    with torch.no_grad():
        want = layer(x, w, noise=noise)
    got = layer.fused(target, noise)(target.activation(x), w)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=0)


@pytest.mark.parametrize("latent_bank", [True, False])
@pytest.mark.parametrize("target", TARGETS, ids=["nchw", "channels_last", "winograd"])
def test_fused_glean_matches_the_reference_path(tiny_glean, target, latent_bank, all_winograd):
    model = GLEANStyleGANv2(**{**tiny_glean.config.to_dict(), "latent_bank": latent_bank})
    model.load_state_dict(with_nonzero_biases(tiny_glean).state_dict())
    model = model.double().set_impl("ref")
    x = _rand(3, 3, 8, 8).clamp(-1, 1)
    with torch.no_grad():
        want = model(x)
    got = model.fused(target)(x)
    assert got.dtype == torch.float64 and got.is_contiguous()
    torch.testing.assert_close(got, want, atol=1e-12, rtol=0)


def test_an_unknown_layer_type_is_an_error_not_skipped(tiny_glean):
    tiny_glean.decoder[-1][1] = nn.GELU()
    with pytest.raises(TypeError, match="no fused inference form for GELU"):
        tiny_glean.fused(FuseTarget())
    with pytest.raises(TypeError, match="no fused form for Conv2d"):
        fuse(nn.Conv2d(4, 4, 3, padding=1, groups=2), FuseTarget())


# Module types inside a GLEAN whose fused form is their parent's (folded into it)
FOLDED_INTO_PARENT = {"ModulatedConv2d", "EqualLinearAct", "EqualLinear", "NoiseInjection", "FusedBiasLeakyReLU",
                      "Blur", "ConstantInput", "LeakyReLU"}
NOT_ON_THE_OUTPUT_PATH = ("generator.style_mapping", "generator.to_rgb", "fusion_skip")  # never fused


def test_every_module_type_of_glean_has_a_fused_form(tiny_glean):
    """A new layer type in GLEAN fails here until it gets a fused form (or is declared folded)."""
    for name, module in tiny_glean.named_modules():
        kind = type(module)
        if name.startswith(NOT_ON_THE_OUTPUT_PATH) or kind.__name__ in FOLDED_INTO_PARENT:
            continue
        assert hasattr(module, "fused") or hasattr(module, "fused_synthesis") or kind in fused.WALKED_TYPES, \
            f"{name}: {kind.__name__} has no fused inference form"
    assert isinstance(tiny_glean.fused(FuseTarget()), nn.Module)


def test_build_uninitialised_draws_no_random_numbers_and_loads_exactly(tiny_glean):
    rng = torch.get_rng_state()
    model = build_uninitialised(tiny_glean.config)
    assert torch.equal(torch.get_rng_state(), rng), "no random initialisation"
    assert all(not t.is_meta for t in [*model.parameters(), *model.buffers()])
    model.load_state_dict(tiny_glean.state_dict(), strict=True)
    assert model.config == tiny_glean.config
    x = _rand(2, 3, 8, 8).float().clamp(-1, 1)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), tiny_glean(x), atol=0, rtol=0)
