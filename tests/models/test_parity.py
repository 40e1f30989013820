"""Parity with the upstream MMEditing GLEAN on the shared fixture (see shared/reference/fixture)."""
import pytest
import torch

from gleansr import GLEANStyleGANv2, StyleGAN2Discriminator, load_checkpoint


def load_fixture(path, ref):
    g = GLEANStyleGANv2(**ref["generator_kwargs"])
    load_checkpoint(g, path)
    return g.eval()


@pytest.mark.parametrize("impl", ["ref", "fast"])
@pytest.mark.parametrize("variant", ["canonical", "perturbed_kernels"])
def test_float64_output_matches_upstream(variant, impl, fixture_ref, fixture_ckpt, fixture_ckpt_perturbed):
    path, key = ((fixture_ckpt, "output_float64") if variant == "canonical"
                 else (fixture_ckpt_perturbed, "output_float64_perturbed_kernels"))
    g = load_fixture(path, fixture_ref).double().set_impl(impl)
    with torch.no_grad():
        y = g(fixture_ref["input"].double())
    assert y.dtype == torch.float64
    torch.testing.assert_close(y, fixture_ref[key], atol=1e-9, rtol=0)


@pytest.mark.parametrize("impl", ["ref", "fast"])
def test_float32_output_matches_upstream(impl, fixture_ref, fixture_ckpt):
    g = load_fixture(fixture_ckpt, fixture_ref).set_impl(impl)
    with torch.no_grad():
        y = g(fixture_ref["input"])
    torch.testing.assert_close(y, fixture_ref["output_float32"], atol=2e-4, rtol=0)
    torch.testing.assert_close(y.double(), fixture_ref["output_float64"], atol=2e-4, rtol=0)


def test_intermediates_match_upstream(fixture_ref, fixture_ckpt, fixture_intermediates):
    """Every hooked module output, including the RGB branch that never reaches the output."""
    g = load_fixture(fixture_ckpt, fixture_ref).double().set_impl("ref")
    seen = {}
    modules = dict(g.named_modules())
    handles = [modules[name].register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, o))
               for name in fixture_intermediates]
    with torch.no_grad():
        g(fixture_ref["input"].double())
    for h in handles:
        h.remove()
    assert set(seen) == set(fixture_intermediates)
    for name, want in fixture_intermediates.items():
        got = seen[name]
        assert got.shape == want.shape, name
        # stored as float32 copies of float64 values: compare at float32 resolution
        tol = 2e-6 * max(1.0, want.abs().max().item())
        assert (got.float() - want).abs().max().item() <= tol, name


def test_fixture_discriminator_loads_strictly(fixture_ckpt):
    d = StyleGAN2Discriminator(16)
    load_checkpoint(d, fixture_ckpt, prefix="discriminator.")
    with torch.no_grad():
        logits = d(torch.randn(4, 3, 16, 16))
    assert logits.shape == (4, 1) and torch.isfinite(logits).all()


def test_wrong_input_size_is_a_clear_error(fixture_ref):
    g = GLEANStyleGANv2(**fixture_ref["generator_kwargs"])
    with pytest.raises(ValueError, match=r"expects input of shape \(N, 3, 8, 8\), got \(1, 3, 9, 8\)"):
        g(torch.zeros(1, 3, 9, 8))
