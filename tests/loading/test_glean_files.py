"""Reading and strictly loading checkpoints: release layouts, safetensors, and every bad input."""
import pickle
from collections import OrderedDict

import pytest
import torch

from conftest import TINY_GLEAN
from gleansr import GLEANStyleGANv2, StyleGAN2Discriminator, load_checkpoint
from gleansr.loading import infer_glean_config, load_glean, read_checkpoint, save_safetensors
from gleansr.errors import CheckpointError, GleanError


def release_file(path, generator, discriminator=None, legacy=True):
    """Write ``generator`` the way MMEditing's publish_model did (optionally zip format)."""
    state = OrderedDict(("generator." + k, v) for k, v in generator.state_dict().items())
    if discriminator is not None:
        state.update(("discriminator." + k, v) for k, v in discriminator.state_dict().items())
    state["perceptual_loss.vgg.mean"] = torch.zeros(1, 3, 1, 1)  # present in real release files
    torch.save({"meta": {"iter": 1, "mmedit_version": "0.16.1"}, "state_dict": state}, path,
               _use_new_zipfile_serialization=not legacy)
    return path


def outputs_equal(a, b):
    x = torch.rand(2, 3, a.in_size, a.in_size) * 2 - 1
    with torch.no_grad():
        return torch.equal(a.eval()(x), b.eval()(x))


@pytest.mark.parametrize("legacy", [True, False])
def test_release_layout_round_trip(tmp_path, tiny_glean, legacy):
    path = release_file(tmp_path / "g.pth", tiny_glean, legacy=legacy)
    fresh = GLEANStyleGANv2(**TINY_GLEAN)
    load_checkpoint(fresh, path)
    assert outputs_equal(fresh, tiny_glean)


def test_safetensors_round_trip_with_config(tmp_path, tiny_glean):
    path = save_safetensors(tiny_glean, tmp_path / "g.safetensors", config=tiny_glean.config.to_dict())
    state, meta = read_checkpoint(path)
    assert "gleansr_config" in meta and set(state) == set(tiny_glean.state_dict())
    assert outputs_equal(load_glean(path), tiny_glean)
    fresh = GLEANStyleGANv2(**TINY_GLEAN)
    load_checkpoint(fresh, path)  # bare keys: the default prefix is not required
    assert outputs_equal(fresh, tiny_glean)
    with pytest.raises(GleanError, match="already exists"):
        save_safetensors(tiny_glean, path)  # never overwritten unless asked


def test_architecture_is_read_off_a_release_file(tmp_path, tiny_glean):
    path = release_file(tmp_path / "g.pth", tiny_glean)
    model = load_glean(path)
    assert model.config == tiny_glean.config
    assert outputs_equal(model, tiny_glean)


@pytest.mark.parametrize("kwargs", [
    dict(in_size=16, out_size=128, rrdb_channels=8, num_rrdbs=2, style_channels=8, num_mlps=3,
         channel_multiplier=1, channel_max=64),
    dict(in_size=4, out_size=64, rrdb_channels=4, num_rrdbs=1, style_channels=8, num_mlps=1,
         channel_multiplier=0.25, channel_max=32),
])
def test_infer_config_for_other_shapes(kwargs):
    with torch.device("meta"):
        g = GLEANStyleGANv2(**kwargs)
    cfg = infer_glean_config(g.state_dict())
    with torch.device("meta"):
        rebuilt = GLEANStyleGANv2(**cfg.to_dict())
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in g.state_dict().items()}


def test_infer_config_of_the_real_presets():
    from gleansr.zoo import ZOO

    for p in ZOO.values():
        with torch.device("meta"):
            g = GLEANStyleGANv2(**p.config.to_dict())
        assert infer_glean_config(g.state_dict()) == p.config


def test_bank_from_mmgeneration_layout(tmp_path, tiny_glean):
    bank = tiny_glean.generator
    state = {"generator_ema." + k: v for k, v in bank.state_dict().items()}
    state.update({"generator." + k: torch.zeros_like(v) for k, v in bank.state_dict().items()})
    torch.save({"state_dict": state, "meta": {}}, tmp_path / "sg2.pth")
    fresh = GLEANStyleGANv2(**TINY_GLEAN)
    load_checkpoint(fresh.generator, tmp_path / "sg2.pth", prefix="generator_ema.")
    for k, v in bank.state_dict().items():
        assert torch.equal(fresh.generator.state_dict()[k], v), k
    assert not any(p.requires_grad for p in fresh.generator.parameters())  # the bank stays frozen


def test_missing_key_is_named(tmp_path, tiny_glean):
    path = release_file(tmp_path / "g.pth", tiny_glean)
    ckpt = torch.load(path, weights_only=True)
    del ckpt["state_dict"]["generator.decoder.2.0.bias"]
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match=r"missing key 'decoder.2.0.bias'.*shape \(64,\)"):
        load_checkpoint(GLEANStyleGANv2(**TINY_GLEAN), path)


def test_unexpected_key_is_named(tmp_path, tiny_glean):
    path = release_file(tmp_path / "g.pth", tiny_glean)
    ckpt = torch.load(path, weights_only=True)
    ckpt["state_dict"]["generator.extra.weight"] = torch.zeros(1)
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match="unexpected key 'extra.weight'"):
        load_checkpoint(GLEANStyleGANv2(**TINY_GLEAN), path)


def test_shape_mismatch_is_named(tmp_path, tiny_glean):
    path = release_file(tmp_path / "g.pth", tiny_glean)
    other = dict(TINY_GLEAN, rrdb_channels=4)
    with pytest.raises(CheckpointError, match=r"'encoder.0.0.conv_first.weight' has shape \(8, 3, 3, 3\), the model expects \(4, 3, 3, 3\)"):
        load_checkpoint(GLEANStyleGANv2(**other), path)


def test_wrong_prefix_lists_what_is_there(tmp_path, tiny_glean):
    path = release_file(tmp_path / "g.pth", tiny_glean, StyleGAN2Discriminator(32, channel_max=16))
    with pytest.raises(CheckpointError, match=r"no keys start with 'generator_ema.'.*discriminator\., generator\."):
        load_checkpoint(GLEANStyleGANv2(**TINY_GLEAN).generator, path, prefix="generator_ema.")


@pytest.mark.parametrize("legacy", [True, False])
def test_truncated_file_is_a_clear_error(tmp_path, tiny_glean, legacy):
    path = release_file(tmp_path / "g.pth", tiny_glean, legacy=legacy)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(GLEANStyleGANv2(**TINY_GLEAN), path)


def test_truncated_safetensors_is_a_clear_error(tmp_path, tiny_glean):
    path = save_safetensors(tiny_glean, tmp_path / "g.safetensors")
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="safetensors"):
        load_glean(path)


@pytest.mark.parametrize("content", [b"", b"hello, I am not a checkpoint\n", bytes(range(256)) * 4])
def test_non_checkpoint_files(tmp_path, content):
    path = tmp_path / "x.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=str(path)):
        read_checkpoint(path)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path / "nope.pth")


class _Evil:
    def __reduce__(self):
        return (exec, ("open('PWNED', 'w').write('x')",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickled_code_is_never_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with open("evil.pth", "wb") as f:
        pickle.dump({"state_dict": {"a": _Evil()}}, f)
    with pytest.raises(CheckpointError, match="safe load refuses|not a readable|refusing to load"):
        read_checkpoint("evil.pth")
    assert not (tmp_path / "PWNED").exists()


def test_non_glean_file_for_load_glean(tmp_path):
    torch.save({"state_dict": {"foo.weight": torch.zeros(2)}}, tmp_path / "x.pth")
    with pytest.raises(CheckpointError, match="not a GLEAN checkpoint"):
        load_glean(tmp_path / "x.pth")
