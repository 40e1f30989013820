"""DiffAugment: exact geometry of translation and cutout, gradients through every policy."""
from __future__ import annotations

import pytest
import torch

from gleansr.train.augment import cutout, diff_augment, random_cutout, random_translation, translate


def test_translate_moves_content_and_fills_zeros():
    x = torch.arange(2 * 3 * 5 * 6, dtype=torch.float64).reshape(2, 3, 5, 6) + 1
    out = translate(x, torch.tensor([[1, -2], [0, 0]]))
    expected = torch.zeros_like(x[0])
    expected[:, 1:, :4] = x[0, :, :4, 2:]  # down by 1, left by 2
    assert torch.equal(out[0], expected)
    assert torch.equal(out[1], x[1])


def test_cutout_zeroes_exactly_the_clipped_rectangle():
    x = torch.ones(2, 3, 8, 8)
    out = cutout(x, torch.tensor([[2, 3], [-2, 6]]), (4, 4))
    assert torch.equal(out[0, :, 2:6, 3:7], torch.zeros(3, 4, 4)) and out[0].sum() == 3 * (64 - 16)
    assert torch.equal(out[1, :, 0:2, 6:8], torch.zeros(3, 2, 2)) and out[1].sum() == 3 * (64 - 4)


def test_random_translation_is_a_bounded_shift():
    torch.manual_seed(0)
    x = torch.rand(3, 3, 16, 16) + 0.1
    out = random_translation(x)
    for i in range(3):
        matches = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                   if torch.equal(out[i], translate(x[i:i + 1], torch.tensor([[dy, dx]]))[0])]
        assert len(matches) == 1


def test_random_cutout_hides_a_half_size_square_at_most():
    torch.manual_seed(1)
    out = random_cutout(torch.ones(8, 1, 16, 16))
    hidden = (out == 0).sum(dim=(1, 2, 3))
    assert torch.all(hidden <= 64) and torch.all(hidden > 0)


def test_every_policy_is_differentiable_and_seeded():
    x = torch.randn(4, 3, 16, 16, requires_grad=True)
    torch.manual_seed(2)
    a = diff_augment(x)
    a.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    torch.manual_seed(2)
    assert torch.equal(diff_augment(x), a) and not torch.equal(a, x)
    assert torch.equal(diff_augment(x, ()), x)
    with pytest.raises(ValueError, match="unknown augmentation 'hue'"):
        diff_augment(x, ("hue",))
