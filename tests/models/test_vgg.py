"""VGG16 trunk: torchvision key layout, truncation, strict loading of torchvision-layout files."""
from __future__ import annotations

from pathlib import Path

import pytest
import safetensors.torch
import torch

from gleansr.errors import CheckpointError
from gleansr.loading.backbones import load_vgg16_weights
from gleansr.models.vgg import VGG16Features, collect_outputs

# torchvision vgg16().features: the convs sit at these indices (ReLUs and pools in between).
TORCHVISION_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)


def random_torchvision_vgg16_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A full torchvision-layout VGG16 state dict with random trunk weights.

    The real classifier is 123.6M parameters; tiny stand-ins are enough because the loader
    ignores ``classifier.*`` whatever its shapes.
    """
    generator = torch.Generator().manual_seed(seed)
    state = {
        key: torch.randn(value.shape, generator=generator) * 0.05
        for key, value in VGG16Features().state_dict().items()
    }
    state.update({"classifier.0.weight": torch.randn(8, 4), "classifier.6.bias": torch.randn(8)})
    return state


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    state = random_torchvision_vgg16_state()
    path = tmp_path_factory.mktemp("vgg") / "vgg16.pth"
    torch.save(state, path)
    return path, state


def test_state_dict_keys_and_sizes_match_torchvision():
    module = VGG16Features()
    expected_keys = [f"features.{i}.{kind}" for i in TORCHVISION_CONV_INDICES for kind in ("weight", "bias")]
    assert list(module.state_dict()) == expected_keys
    assert module.state_dict()["features.0.weight"].shape == (64, 3, 3, 3)
    assert module.state_dict()["features.21.weight"].shape == (512, 512, 3, 3)
    # torchvision documents 138,357,544 parameters for vgg16; the classifier holds the rest.
    classifier = (25088 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 1000 + 1000)
    assert sum(p.numel() for p in module.parameters()) == 138_357_544 - classifier


def test_truncated_trunk_is_a_prefix_of_the_full_one():
    torch.manual_seed(0)
    full = VGG16Features()
    truncated = VGG16Features(last_layer=21)
    assert len(truncated.features) == 22
    truncated.load_state_dict({k: v for k, v in full.state_dict().items() if k in truncated.state_dict()})
    x = torch.randn(2, 3, 32, 32)
    out = truncated(x)
    assert out.shape == (2, 512, 4, 4)
    (tap,) = collect_outputs(full.features, x, [21])
    torch.testing.assert_close(out, tap)
    assert out.min() < 0  # layer 21 is conv4_3 before its ReLU


def test_collect_outputs_returns_requested_layers_in_order():
    module = VGG16Features(last_layer=8)
    x = torch.randn(1, 3, 16, 16)
    relu_1_2, relu_2_2 = collect_outputs(module.features, x, [8, 3])
    torch.testing.assert_close(relu_1_2, module.features[:4](x))
    torch.testing.assert_close(relu_2_2, module.features(x))
    with pytest.raises(ValueError):
        collect_outputs(module.features, x, [9])


def test_rejects_out_of_range_truncation():
    with pytest.raises(ValueError):
        VGG16Features(last_layer=31)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_loads_full_torchvision_file_into_truncated_trunk(vgg_file, tmp_path, suffix):
    path, state = vgg_file
    if suffix == ".safetensors":
        path = tmp_path / "vgg16.safetensors"
        safetensors.torch.save_file(state, str(path))
    module = VGG16Features(last_layer=21)
    load_vgg16_weights(module, path)
    for key, value in module.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0)


@pytest.mark.parametrize(
    ("edit", "named_key"),
    [
        (lambda s: s.pop("features.28.bias"), "features.28.bias"),  # missing, even beyond the truncation
        (lambda s: s.__setitem__("features.21.weight", torch.zeros(512, 256, 3, 3)), "features.21.weight"),
        (lambda s: s.__setitem__("features.1.weight", torch.zeros(3)), "features.1.weight"),
        (lambda s: s.__setitem__("module.features.0.weight", torch.zeros(64, 3, 3, 3)), "module.features.0.weight"),
    ],
    ids=["missing", "wrong-shape", "unexpected", "prefixed"],
)
def test_strict_loading_names_the_offending_key(vgg_file, tmp_path, edit, named_key):
    state = dict(vgg_file[1])
    edit(state)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=named_key.replace(".", r"\.")) as info:
        load_vgg16_weights(VGG16Features(last_layer=21), path)
    assert "\n" not in str(info.value)


def test_unreadable_files_raise_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_vgg16_weights(VGG16Features(last_layer=3), tmp_path / "absent.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="garbage.pth"):
        load_vgg16_weights(VGG16Features(last_layer=3), garbage)
