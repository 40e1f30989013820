"""GLEAN's training losses and the StyleGAN2 regularisers against hand computations."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from conftest import he_initialised
from gleansr.errors import GleanError
from gleansr.models.vgg import VGG16Features
from gleansr.zoo import get_entry
from gleansr.train.losses import (
    PerceptualLoss,
    gan_loss,
    logistic_d_loss,
    logistic_g_loss,
    path_length_penalty,
    pixel_loss,
    r1_penalty,
)


def vgg_conv4_3_by_hand(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """VGG16 up to conv4_3 (before its ReLU) written out with functional ops."""
    for block, convs in enumerate(((0, 2), (5, 7), (10, 12, 14), (17, 19, 21))):
        if block:
            x = F.max_pool2d(x, 2)
        for i in convs:
            x = F.conv2d(x, state[f"features.{i}.weight"], state[f"features.{i}.bias"], padding=1)
            if i != 21:
                x = F.relu(x)
    return x


def well_scaled_vgg_state(seed: int) -> dict[str, torch.Tensor]:
    """Random VGG16 weights that keep activations O(1) (He init), unlike PyTorch's default init,
    whose features shrink by orders of magnitude per layer and would make every loss ~1e-11."""
    torch.manual_seed(seed)
    return he_initialised(VGG16Features(last_layer=21).state_dict())


@pytest.fixture(scope="module")
def random_loss() -> PerceptualLoss:
    loss = PerceptualLoss(None, allow_random=True)
    loss.vgg.load_state_dict(well_scaled_vgg_state(0))
    return loss


def test_perceptual_loss_equals_hand_computation(random_loss):
    torch.manual_seed(1)
    output, target = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    state = random_loss.vgg.state_dict()
    expected = 1e-2 * ((vgg_conv4_3_by_hand(state, (output - mean) / std)
                        - vgg_conv4_3_by_hand(state, (target - mean) / std)) ** 2).mean()
    assert expected > 1e-3  # a loss of meaningful size, so the comparison is not vacuous
    torch.testing.assert_close(random_loss(output, target), expected)


def test_zero_range_option_maps_images_to_unit_range_first(random_loss):
    unit = PerceptualLoss(None, vgg_input_range="[0,1]", allow_random=True)
    unit.vgg.load_state_dict(random_loss.vgg.state_dict())
    output, target = torch.rand(1, 3, 16, 16) * 2 - 1, torch.rand(1, 3, 16, 16) * 2 - 1
    torch.testing.assert_close(unit(output, target), random_loss((output + 1) / 2, (target + 1) / 2))
    assert not torch.allclose(unit(output, target), random_loss(output, target))
    assert get_entry("glean_in128out1024_4x2_300k_ffhq_celebahq").recipe.perceptual_input_range == "[0,1]"
    assert get_entry("glean_cat_8x").recipe.perceptual_input_range == "[-1,1]"


def test_perceptual_loss_is_zero_for_identical_images(random_loss):
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    assert random_loss(images, images.clone()).item() == 0.0


def test_gradient_reaches_the_output_but_not_vgg(random_loss):
    output = (torch.rand(1, 3, 16, 16) * 2 - 1).requires_grad_(True)
    target = torch.rand(1, 3, 16, 16) * 2 - 1
    random_loss(output, target).backward()
    assert output.grad is not None and output.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in random_loss.vgg.parameters())
    assert not random_loss.vgg.training


def test_refuses_random_vgg_unless_asked():
    with pytest.raises(GleanError, match="VGG16 weights"):
        PerceptualLoss(None)


def test_loads_vgg_file_and_accepts_string_layer(tmp_path):
    state = well_scaled_vgg_state(2)
    state.update({k: v for k, v in VGG16Features().state_dict().items() if k not in state})
    path = tmp_path / "vgg16.pth"
    torch.save(state, path)
    loss = PerceptualLoss(path, layer="21", criterion="l1")
    assert len(loss.vgg.features) == 22
    torch.testing.assert_close(loss.vgg.state_dict()["features.21.weight"], state["features.21.weight"])
    output, target = torch.rand(1, 3, 16, 16) * 2 - 1, torch.rand(1, 3, 16, 16) * 2 - 1
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    expected = 1e-2 * (vgg_conv4_3_by_hand(state, (output - mean) / std)
                       - vgg_conv4_3_by_hand(state, (target - mean) / std)).abs().mean()
    assert expected > 1e-3
    torch.testing.assert_close(loss(output, target), expected)


def test_pixel_loss_is_weighted_mean_squared_error():
    a, b = torch.tensor([0.0, 1.0, 3.0]), torch.tensor([1.0, 1.0, 1.0])
    assert pixel_loss(a, b).item() == pytest.approx(5 / 3)
    assert pixel_loss(a, b, weight=0.5).item() == pytest.approx(5 / 6)


def test_gan_loss_matches_binary_cross_entropy_closed_form():
    logits = torch.tensor([[-2.0], [0.5], [3.0]])
    real = sum(math.log1p(math.exp(-v)) for v in (-2.0, 0.5, 3.0)) / 3
    fake = sum(math.log1p(math.exp(v)) for v in (-2.0, 0.5, 3.0)) / 3
    assert gan_loss(logits, True, for_discriminator=True).item() == pytest.approx(real, rel=1e-6)
    assert gan_loss(logits, False, for_discriminator=True).item() == pytest.approx(fake, rel=1e-6)
    assert gan_loss(logits, True, for_discriminator=False).item() == pytest.approx(1e-2 * real, rel=1e-6)
    assert gan_loss(logits, True, False, generator_weight=1.0).item() == pytest.approx(real, rel=1e-6)


def test_logistic_losses_match_closed_forms():
    real, fake = torch.tensor([1.0, -0.5]), torch.tensor([0.25, 2.0])
    softplus = lambda v: math.log1p(math.exp(v))  # noqa: E731
    expected_d = (softplus(-1.0) + softplus(0.5)) / 2 + (softplus(0.25) + softplus(2.0)) / 2
    assert logistic_d_loss(real, fake).item() == pytest.approx(expected_d, rel=1e-6)
    assert logistic_g_loss(fake).item() == pytest.approx((softplus(-0.25) + softplus(-2.0)) / 2, rel=1e-6)


def test_r1_penalty_on_a_quadratic_discriminator():
    # D(x) = sum(a * x^2) per sample, so dD/dx = 2 a x and R1 = mean_n sum (2 a x_n)^2.
    torch.manual_seed(3)
    a = torch.randn(1, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    images = torch.randn(4, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    logits = (a * images.pow(2)).flatten(1).sum(1, keepdim=True)
    penalty = r1_penalty(logits, images)
    expected = (2 * a * images).pow(2).flatten(1).sum(1).mean()
    torch.testing.assert_close(penalty, expected)
    # The graph is kept, so the penalty trains D: d/da = mean_n 8 a x_n^2.
    penalty.backward()
    torch.testing.assert_close(a.grad, (8 * a * images.pow(2)).mean(0, keepdim=True))


def test_path_length_penalty_on_a_linear_generator():
    # images_n = (sum_l w_nl) A, so J^T y = A y for every layer and |J^T y| = |A y|.
    torch.manual_seed(4)
    n, layers, dim, size = 3, 4, 5, 4
    matrix = torch.randn(dim, size * size, dtype=torch.float64, requires_grad=True)  # the "generator"
    latents = torch.randn(n, layers, dim, dtype=torch.float64, requires_grad=True)
    images = (latents.sum(1) @ matrix).view(n, 1, size, size)
    noise = torch.randn(n, 1, size, size, dtype=torch.float64)
    penalty, new_mean, lengths = path_length_penalty(images, latents, mean_path_length=2.0, decay=0.1, noise=noise)
    expected_lengths = (noise.flatten(1) @ matrix.T).norm(dim=1)
    torch.testing.assert_close(lengths, expected_lengths)
    expected_mean = 2.0 + 0.1 * (expected_lengths.mean() - 2.0)
    torch.testing.assert_close(new_mean, expected_mean)
    torch.testing.assert_close(penalty, (expected_lengths - expected_mean).pow(2).mean())
    assert penalty.requires_grad and not new_mean.requires_grad
    with pytest.raises(ValueError):
        path_length_penalty(images, latents.detach()[:, 0].requires_grad_(), 0.0)
