"""Foreign StyleGAN2 files -> our layout: outputs must equal each layout's own forward pass."""
from __future__ import annotations

import io
import os
import pickle
import sys

import pytest
import torch

from gleansr.loading import load_state_dict_strict
from gleansr.cli import main
from gleansr.loading import detect_format, discriminator_path, load_bank, read_source
from gleansr.errors import CheckpointError
from gleansr.models import StyleGAN2Discriminator, StyleGAN2Generator

import stylegan2_foreign as foreign


def _ours(weights, dtype=torch.float64):
    g = StyleGAN2Generator.from_config(weights.generator_config).to(dtype)
    load_state_dict_strict(g, weights.generator)
    d = StyleGAN2Discriminator.from_config(weights.discriminator_config).to(dtype)
    load_state_dict_strict(d, weights.discriminator)
    return g, d


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.fixture
def rosinality_file(tmp_path):
    torch.manual_seed(1)
    g_state = foreign.rosinality_generator_state(32, style=16, n_mlp=2, width=16)
    d_state = foreign.rosinality_discriminator_state(32, width=16)
    path = tmp_path / "550000.pt"  # a train.py checkpoint: g_ema, d, optimizer state, argparse args
    torch.save({"g_ema": g_state, "g": g_state, "d": d_state, "g_optim": {"state": {}},
                "args": __import__("argparse").Namespace(size=32, latent=16, n_mlp=2)}, path)
    return path, g_state, d_state


def test_rosinality_matches_its_own_forward(rosinality_file):
    path, g_state, d_state = rosinality_file
    weights = load_bank(path)
    assert weights.source_format == "rosinality"
    assert weights.generator_config.out_size == 32 and weights.generator_config.channel_max == 16
    g, d = _ours(weights)
    latent = torch.randn(3, g.num_latents, 16, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(g.synthesis(latent), foreign.rosinality_synthesis(g_state, latent), rtol=0, atol=1e-10)
        z = torch.randn(3, 16, dtype=torch.float64)  # the z normalisations differ by their epsilons only
        assert _relative_error(g.mapping(z), foreign.rosinality_mapping(g_state, z)) < 1e-5
        img = torch.randn(4, 3, 32, 32, dtype=torch.float64)
        assert torch.allclose(d(img), foreign.rosinality_discriminator(d_state, img), rtol=0, atol=1e-10)


def test_rosinality_float32_file_matches_within_float32_rounding(tmp_path):
    torch.manual_seed(2)
    g_state = {k: v.float() for k, v in foreign.rosinality_generator_state(32, 16, 2, 16).items()}
    torch.save({"g_ema": g_state}, tmp_path / "g.pt")
    g = load_bank(tmp_path / "g.pt").build_generator()
    latent = torch.randn(2, g.num_latents, 16)
    with torch.no_grad():
        assert _relative_error(g.synthesis(latent), foreign.rosinality_synthesis(g_state, latent)) < 1e-5


@pytest.fixture
def nvidia_networks():
    torch.manual_seed(3)
    # 64 px with channel_base 512: widths 16 up to 32 px, 8 at 64 px (exercises the multiplier)
    g = foreign.nvidia_generator(64, w_dim=16, n_mlp=2, channel_base=512, channel_max=16, conv_clamp=256)
    d = foreign.nvidia_discriminator(64, channel_base=512, channel_max=16)
    return g, d


def test_nvidia_pickle_matches_its_own_forward_and_runs_no_code(tmp_path, nvidia_networks):
    g_net, d_net = nvidia_networks
    marker = tmp_path / "executed"
    path = tmp_path / "network-snapshot-000100.pkl"
    path.write_bytes(foreign.nvidia_pickle({"G": g_net, "D": d_net, "G_ema": g_net},
                                           marker_source=f"open({str(marker)!r}, 'w').close()\n"))
    assert "torch_utils" not in sys.modules and "dnnlib" not in sys.modules
    with pytest.raises(ModuleNotFoundError):  # only the restricted unpickler can read it here
        pickle.loads(path.read_bytes())

    weights = load_bank(path)
    assert not marker.exists()
    assert weights.source_format == "nvidia"
    assert weights.generator_config.channel_multiplier == 512 / 16384
    assert any("conv_clamp=256" in note for note in weights.notes)
    g, d = _ours(weights)
    ws = torch.randn(3, g.num_latents, 16, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(g.synthesis(ws), foreign.nvidia_synthesis(g_net, ws), rtol=0, atol=1e-10)
        z = torch.randn(3, 16, dtype=torch.float64)
        assert _relative_error(g.mapping(z), foreign.nvidia_mapping(g_net, z)) < 1e-5
        img = torch.randn(4, 3, 64, 64, dtype=torch.float64)
        assert torch.allclose(d(img), foreign.nvidia_discriminator_forward(d_net, img), rtol=0, atol=1e-10)


class _Evil:
    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _EvilStorage:
    """A tensor storage whose embedded legacy torch file holds the os.system call."""

    def __init__(self, command: str):
        buffer = io.BytesIO()
        torch.save(_Evil(command), buffer, _use_new_zipfile_serialization=False)
        self.blob = buffer.getvalue()

    def __reduce__(self):
        from torch.storage import _load_from_bytes

        return (_load_from_bytes, (self.blob,))


@pytest.mark.parametrize("payload", [_Evil, _EvilStorage])
def test_malicious_pickle_is_refused_without_running(tmp_path, payload):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G_ema": payload(f"touch {marker}")}, protocol=4))
    with pytest.raises(CheckpointError, match="refusing to load .*evil.pkl.*nothing from the file was run"):
        read_source(path)
    assert not marker.exists()


def test_tensorflow_pickle_gets_a_hint(tmp_path):
    # protocol 2: GLOBAL dnnlib.tflib.network.Network, EMPTY_TUPLE, NEWOBJ, STOP
    (tmp_path / "tf.pkl").write_bytes(b"\x80\x02cdnnlib.tflib.network\nNetwork\n)\x81.")
    with pytest.raises(CheckpointError, match="TensorFlow-era .*legacy.py"):
        read_source(tmp_path / "tf.pkl")


def test_mmgen_file_round_trips_exactly(tmp_path):
    torch.manual_seed(4)
    g = StyleGAN2Generator(32, style_channels=16, num_mlps=2, channel_max=16).eval()
    d = StyleGAN2Discriminator(32, channel_max=16)
    state = {**{f"generator_ema.{k}": v for k, v in g.state_dict().items()},
             **{f"generator.{k}": torch.zeros_like(v) for k, v in g.state_dict().items()},
             **{f"discriminator.{k}": v for k, v in d.state_dict().items()}}
    path = tmp_path / "stylegan2-official.pth"
    torch.save({"meta": {"iter": 1}, "state_dict": state}, path, _use_new_zipfile_serialization=False)
    weights = load_bank(path)
    assert weights.source_format == "mmgen"
    assert all(torch.equal(weights.generator[k], v) for k, v in g.state_dict().items())
    z = torch.randn(2, 16)
    with torch.no_grad():
        assert torch.equal(weights.build_generator()(z), g(z))


def test_unknown_and_missing_keys_are_named(tmp_path, rosinality_file):
    _, g_state, d_state = rosinality_file
    torch.save({"g_ema": {**g_state, "style.1.extra": torch.zeros(1)}}, tmp_path / "extra.pt")
    with pytest.raises(CheckpointError, match=r"extra\.pt.*no rule maps: style\.1\.extra"):
        load_bank(tmp_path / "extra.pt")
    missing = {k: v for k, v in g_state.items() if k != "convs.2.noise.weight"}
    torch.save({"g_ema": missing}, tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match=r"'convs\.2\.noise\.weight' is missing"):
        load_bank(tmp_path / "missing.pt")
    bad_d = {k: v for k, v in d_state.items() if k != "final_linear.1.bias"}
    torch.save({"g_ema": g_state, "d": bad_d}, tmp_path / "bad_d.pt")
    with pytest.raises(CheckpointError, match=r"discriminator.*'final_linear\.1\.bias' is missing"):
        load_bank(tmp_path / "bad_d.pt")
    torch.save({"state_dict": {"generator_ema.constant_input.input": torch.zeros(1, 16, 4, 4), "ema.x": torch.zeros(1)}},
               tmp_path / "stray.pth")
    with pytest.raises(CheckpointError, match=r"no rule maps: ema\.x"):
        load_bank(tmp_path / "stray.pth")


def test_unrepresentable_nvidia_networks_are_refused(tmp_path, nvidia_networks):
    g_net, _ = nvidia_networks
    g_net.c_dim = 10
    (tmp_path / "cond.pkl").write_bytes(foreign.nvidia_pickle({"G_ema": g_net}))
    with pytest.raises(CheckpointError, match="conditional generator"):
        load_bank(tmp_path / "cond.pkl")
    g_net.c_dim = 0
    g_net.synthesis.b8.register_buffer("unexpected", torch.zeros(2))
    (tmp_path / "odd.pkl").write_bytes(foreign.nvidia_pickle({"G_ema": g_net}))
    with pytest.raises(CheckpointError, match=r"no rule maps: synthesis\.b8\.unexpected"):
        load_bank(tmp_path / "odd.pkl")


def test_each_layout_is_detected_by_exactly_one_adapter(rosinality_file, tmp_path, nvidia_networks):
    path, g_state, _ = rosinality_file
    assert detect_format(read_source(path)) == "rosinality"
    assert detect_format(g_state) == "rosinality"  # a bare generator state dict
    (tmp_path / "n.pkl").write_bytes(foreign.nvidia_pickle({"G_ema": nvidia_networks[0]}))
    assert detect_format(read_source(tmp_path / "n.pkl")) == "nvidia"
    with pytest.raises(CheckpointError, match="no known StyleGAN2 layout"):
        detect_format({"weight": torch.zeros(1)})


def test_convert_cli_writes_generator_and_discriminator(tmp_path, rosinality_file, capsys):
    path, g_state, d_state = rosinality_file
    out = tmp_path / "bank.safetensors"
    assert main(["convert", str(path), "-o", str(out)]) == 0
    assert "rosinality" in capsys.readouterr().out
    assert out.is_file() and discriminator_path(out).is_file()
    weights = load_bank(out)
    assert weights.source_format == "gleansr-bank"
    g, d = _ours(weights)
    latent = torch.randn(2, g.num_latents, 16, dtype=torch.float64)
    with torch.no_grad():  # stored as float64 in the .pt, so the export is float64 too
        assert torch.allclose(g.synthesis(latent), foreign.rosinality_synthesis(g_state, latent), rtol=0, atol=1e-10)
    assert main(["convert", str(path), "-o", str(out)]) == 2  # never overwrites unasked
    assert "already exists" in capsys.readouterr().err
    assert main(["convert", str(path), "-o", str(tmp_path / "x.safetensors"), "--from", "nvidia"]) == 2
    assert "not in the nvidia layout" in capsys.readouterr().err


def test_convert_command_offers_the_loader_formats():
    from gleansr.commands import convert as convert_command
    from gleansr.loading import FORMATS

    assert convert_command._FORMATS == FORMATS  # the command keeps its own copy to import without torch
