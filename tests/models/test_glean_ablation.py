"""``latent_bank=False``: the encoder-decoder ablation computes without the bank and round-trips."""
import torch

from gleansr.loading import load_glean, save_safetensors
from gleansr.models import GLEANStyleGANv2
from gleansr.models.glean import GLEANConfig


def _no_bank(glean):
    """The ablation of ``glean``'s architecture, initialised from the same seed."""
    torch.manual_seed(0)
    return GLEANStyleGANv2(**{**glean.config.to_dict(), "latent_bank": False}).eval()


def test_output_ignores_bank_and_latent_encoder(tiny_glean):
    model = _no_bank(tiny_glean)
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    with torch.no_grad():
        before = model(x)
        for name, p in model.named_parameters():
            if name.startswith(("generator.", "encoder.1", "encoder.2", "fusion_")):
                p.add_(torch.randn_like(p))
        after = model(x)
        with_bank = tiny_glean(x)
    assert before.shape == with_bank.shape == (2, 3, 32, 32)
    torch.testing.assert_close(before, after, atol=0, rtol=0)
    assert not torch.allclose(before, with_bank)  # same weights (seed 0), the bank's features removed


def test_only_trunk_and_decoder_train(tiny_glean):
    model = _no_bank(tiny_glean)
    trainable = {n.split(".")[0] + ("." + n.split(".")[1] if n.startswith("encoder.") else "")
                 for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"encoder.0", "decoder"}
    assert model.state_dict().keys() == tiny_glean.state_dict().keys()


def test_flag_round_trips_through_safetensors(tiny_glean, tmp_path):
    model = _no_bank(tiny_glean)
    path = save_safetensors(model, tmp_path / "ablation.safetensors", config=model.config.to_dict())
    loaded = load_glean(path)
    assert loaded.config.latent_bank is False
    x = torch.rand(1, 3, 8, 8) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), atol=0, rtol=0)
    # configs written before the flag existed mean the full GLEAN
    old = {k: v for k, v in model.config.to_dict().items() if k != "latent_bank"}
    assert GLEANConfig.from_dict(old).latent_bank is True
