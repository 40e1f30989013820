"""LPIPS (with its AlexNet / VGG16 backbones) and FID (with the FID Inception) on random weights."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import he_initialised
from gleansr.errors import CheckpointError
from gleansr.models.alexnet import AlexNetFeatures
from gleansr.loading.backbones import load_fid_inception_weights
from gleansr.models.inception import InceptionV3FID
from gleansr.models.vgg import VGG16Features
from gleansr.perceptual_metrics import LPIPS, feature_statistics, fid_from_features, frechet_distance

CHANNELS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory) -> dict[str, tuple[Path, Path, dict[str, torch.Tensor]]]:
    """Per net: (backbone file in torchvision layout, lin file in the lpips layout, all tensors)."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("lpips")
    files = {}
    for net, module in (("alex", AlexNetFeatures()), ("vgg", VGG16Features())):
        backbone = he_initialised(module.state_dict())
        lins = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate(CHANNELS[net])}
        torch.save({**backbone, "classifier.1.weight": torch.zeros(4, 4)}, folder / f"{net}_backbone.pth")
        torch.save(lins, folder / f"{net}_lin.pth")
        files[net] = (folder / f"{net}_backbone.pth", folder / f"{net}_lin.pth", {**backbone, **lins})
    return files


def lpips_by_hand(net: str, weights: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """LPIPS v0.1 written out with functional ops, straight from the paper and the lpips package."""
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

    def conv(h, i, **kw):
        return F.relu(F.conv2d(h, weights[f"features.{i}.weight"], weights[f"features.{i}.bias"], **kw))

    def relu_features(h):
        h = (h - shift) / scale
        if net == "alex":
            f1 = conv(h, 0, stride=4, padding=2)
            f2 = conv(F.max_pool2d(f1, 3, 2), 3, padding=2)
            f3 = conv(F.max_pool2d(f2, 3, 2), 6, padding=1)
            f4 = conv(f3, 8, padding=1)
            return [f1, f2, f3, f4, conv(f4, 10, padding=1)]
        taps = []
        for block, convs in enumerate(((0, 2), (5, 7), (10, 12, 14), (17, 19, 21), (24, 26, 28))):
            if block:
                h = F.max_pool2d(h, 2)
            for i in convs:
                h = conv(h, i, padding=1)
            taps.append(h)
        return taps

    total = torch.zeros(x.shape[0])
    for i, (fx, fy) in enumerate(zip(relu_features(x), relu_features(y))):
        fx = fx / (fx.norm(dim=1, keepdim=True) + 1e-10)
        fy = fy / (fy.norm(dim=1, keepdim=True) + 1e-10)
        total += ((fx - fy) ** 2 * weights[f"lin{i}.model.1.weight"]).sum(1).mean(dim=(1, 2))
    return total


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_matches_hand_computation(weight_files, net):
    backbone_file, lin_file, weights = weight_files[net]
    metric = LPIPS(net, backbone_file, lin_file)
    torch.manual_seed(1)
    size = 64 if net == "alex" else 32  # AlexNet needs at least 63 pixels; VGG is costlier
    x, y = torch.rand(2, 3, size, size) * 2 - 1, torch.rand(2, 3, size, size) * 2 - 1
    distance = metric(x, y)
    assert distance.shape == (2,) and (distance > 0.01).all()
    torch.testing.assert_close(distance, lpips_by_hand(net, weights, x, y))
    torch.testing.assert_close(metric(y, x), distance)  # symmetric
    assert metric(x, x.clone()).abs().max().item() == 0.0
    torch.testing.assert_close(metric((x + 1) / 2, (y + 1) / 2, normalize=True), distance)


def test_lpips_is_frozen_but_differentiable_in_its_inputs(weight_files):
    backbone_file, lin_file, _ = weight_files["alex"]
    metric = LPIPS("alex", backbone_file, lin_file)
    x = (torch.rand(1, 3, 64, 64) * 2 - 1).requires_grad_(True)
    metric(x, torch.zeros(1, 3, 64, 64)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in metric.parameters())
    assert not metric.training
    assert sum(p.numel() for p in metric.backbone.parameters()) == 2_469_696  # see test below


def test_alexnet_trunk_matches_torchvision_layout():
    module = AlexNetFeatures()
    assert list(module.state_dict()) == [f"features.{i}.{k}" for i in (0, 3, 6, 8, 10) for k in ("weight", "bias")]
    # torchvision documents 61,100,840 parameters for alexnet; the classifier holds the rest.
    classifier = (9216 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 1000 + 1000)
    assert sum(p.numel() for p in module.parameters()) == 61_100_840 - classifier


@pytest.mark.parametrize(
    ("edit", "named_key"),
    [
        (lambda s: s.pop("lin4.model.1.weight"), "lin4.model.1.weight"),
        (lambda s: s.__setitem__("lin2.model.1.weight", torch.rand(1, 256, 1, 1)), "lin2.model.1.weight"),
        (lambda s: s.__setitem__("lin0.model.0.weight", torch.rand(1, 64, 1, 1)), "lin0.model.0.weight"),
    ],
    ids=["missing", "wrong-shape", "unexpected"],
)
def test_lpips_lin_file_is_checked_strictly(weight_files, tmp_path, edit, named_key):
    backbone_file, lin_file, _ = weight_files["alex"]
    state = torch.load(lin_file, weights_only=True)
    edit(state)
    torch.save(state, tmp_path / "lin.pth")
    with pytest.raises(CheckpointError, match=named_key.replace(".", r"\.")):
        LPIPS("alex", backbone_file, tmp_path / "lin.pth")


def test_lpips_rejects_a_backbone_of_the_other_net(weight_files):
    with pytest.raises(CheckpointError, match="AlexNet"):
        LPIPS("alex", weight_files["vgg"][0], weight_files["alex"][1])


# --- FID ---------------------------------------------------------------------------------------

def test_fid_inception_matches_pytorch_fid_layout_and_size():
    state = InceptionV3FID().state_dict()
    assert state["Conv2d_1a_3x3.conv.weight"].shape == (32, 3, 3, 3)
    assert state["Mixed_6b.branch7x7_2.conv.weight"].shape == (128, 128, 1, 7)
    assert state["Mixed_7c.branch3x3dbl_3b.bn.running_var"].shape == (384,)
    assert "Mixed_7c.branch_pool.conv.weight" in state and not any(k.startswith(("fc.", "AuxLogits.")) for k in state)
    # torchvision documents 27,161,264 parameters for inception_v3 (1000 classes, with AuxLogits);
    # the FID graph has the same trunk, so subtract AuxLogits (conv0 + bn, conv1 + bn, fc) and fc.
    aux = (768 * 128 + 2 * 128) + (128 * 768 * 25 + 2 * 768) + (768 * 1000 + 1000)
    fc = 2048 * 1000 + 1000
    assert sum(v.numel() for v in InceptionV3FID().parameters()) == 27_161_264 - aux - fc


def test_fid_inception_pools_like_tensorflow():
    # Inside the A, C and first E blocks the 3x3 average pool ignores the zero padding, so a
    # constant map stays constant up to the border; Mixed_7c max-pools instead.
    model = InceptionV3FID()
    block = model.Mixed_5b
    x = torch.full((1, 192, 5, 5), 2.0)
    pooled_branch = block(x)[:, -32:]  # the pool branch's 32 channels come last
    torch.testing.assert_close(pooled_branch, block.branch_pool(x))
    assert model.Mixed_7c.max_pool and not model.Mixed_7b.max_pool


def randomised_inception_state(seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    state = InceptionV3FID().state_dict()
    for key, value in state.items():
        if key.endswith("conv.weight"):  # He init keeps the signal alive through 94 conv layers
            torch.nn.init.kaiming_normal_(value, nonlinearity="relu")
        elif key.endswith("running_var"):
            value.uniform_(0.5, 2.0)
        elif key.endswith(("running_mean", "bn.bias")):
            value.normal_(0, 0.1)
    return state


def test_fid_inception_round_trip_and_features(tmp_path):
    state = randomised_inception_state(0)
    # pytorch-fid's file: the trunk plus its 1008-class fc, without num_batches_tracked.
    file_state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    file_state.update({"fc.weight": torch.randn(1008, 2048), "fc.bias": torch.randn(1008)})
    torch.save(file_state, tmp_path / "pt_inception.pth")
    loaded = InceptionV3FID()
    load_fid_inception_weights(loaded, tmp_path / "pt_inception.pth")
    for key, value in loaded.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0)
    with torch.no_grad():
        features = loaded(torch.rand(2, 3, 80, 64))
    assert features.shape == (2, 2048)
    assert torch.isfinite(features).all() and (features >= 0).all()  # averages of ReLU outputs
    assert not torch.allclose(features[0], features[1])
    with pytest.raises(ValueError):
        loaded(torch.rand(2, 1, 32, 32))


@pytest.mark.parametrize(
    ("edit", "named_key"),
    [
        (lambda s: s.__setitem__("AuxLogits.conv0.conv.weight", torch.zeros(128, 768, 1, 1)), "AuxLogits"),
        (lambda s: s.pop("Mixed_5b.branch_pool.bn.running_mean"), "Mixed_5b.branch_pool.bn.running_mean"),
        (lambda s: s.__setitem__("Mixed_7b.branch1x1.conv.weight", torch.zeros(320, 1280, 3, 3)), "Mixed_7b"),
    ],
    ids=["unexpected", "missing", "wrong-shape"],
)
def test_fid_inception_loading_is_strict(tmp_path, edit, named_key):
    state = InceptionV3FID().state_dict()
    edit(state)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=named_key.replace(".", r"\.")):
        load_fid_inception_weights(InceptionV3FID(), tmp_path / "bad.pth")


def test_frechet_distance_of_diagonal_gaussians_has_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    var1, var2 = rng.uniform(0.1, 3, size=5), rng.uniform(0.1, 3, size=5)
    var1[0] = var2[0] = 0.0  # singular covariances are handled too
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(var1) - np.sqrt(var2)) ** 2)
    distance = frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2))
    assert distance == pytest.approx(expected, rel=1e-6, abs=1e-6)


def test_fid_from_features_matches_statistics_and_is_zero_on_itself():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(64, 8))
    b = rng.normal(loc=0.5, scale=1.5, size=(48, 8)) @ rng.normal(size=(8, 8))
    mu_a, sigma_a = feature_statistics(a)
    np.testing.assert_allclose(sigma_a, np.cov(a.T))
    expected = frechet_distance(mu_a, sigma_a, *feature_statistics(b))
    assert fid_from_features(a, b) == pytest.approx(expected)
    assert fid_from_features(torch.from_numpy(b), torch.from_numpy(a)) == pytest.approx(expected, rel=1e-6)
    assert fid_from_features(a, a) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError):
        fid_from_features(a, b[:, :4])


def test_fid_with_fewer_samples_than_dimensions_matches_the_covariance_route():
    """The feature route (no D x D matrix) gives frechet_distance's value on singular covariances."""
    rng = np.random.default_rng(2)
    a = rng.gamma(2.0, size=(12, 96))  # Inception pool features are non-negative
    b = rng.gamma(2.5, size=(9, 96)) + 0.1
    expected = frechet_distance(*feature_statistics(a), *feature_statistics(b))
    assert fid_from_features(a, b) == pytest.approx(expected, rel=1e-6)
    assert fid_from_features(b, a) == pytest.approx(expected, rel=1e-6)
    assert fid_from_features(a, a) == pytest.approx(0.0, abs=1e-9)
