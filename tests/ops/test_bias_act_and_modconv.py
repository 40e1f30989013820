import math

import pytest
import torch
import torch.nn.functional as F

from gleansr.ops import bias_leaky_relu, modulated_conv2d
from gleansr.models.layers import make_fir_kernel


@pytest.mark.parametrize("shape", [(4, 8), (2, 8, 5, 5)])
def test_bias_leaky_relu_definition_and_paths(shape):
    x = torch.randn(*shape, dtype=torch.float64)
    b = torch.randn(8, dtype=torch.float64)
    bview = b.view((1, 8) + (1,) * (len(shape) - 2))
    want = torch.where(x + bview >= 0, x + bview, 0.2 * (x + bview)) * math.sqrt(2)
    for impl in ("ref", "fast"):
        torch.testing.assert_close(bias_leaky_relu(x, b, impl=impl), want)
    # the in-place fast path must not touch its input
    x0 = x.clone()
    bias_leaky_relu(x, None, impl="fast")
    assert torch.equal(x, x0)


def test_bias_leaky_relu_gradients_agree():
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    b = torch.randn(3, requires_grad=True)
    grads = []
    for impl in ("ref", "fast"):
        y = bias_leaky_relu(x, b, impl=impl)
        grads.append(torch.autograd.grad(y.square().sum(), (x, b)))
    for a, c in zip(*grads):
        torch.testing.assert_close(a, c)


def _upstream_style_modconv(x, weight, style, demodulate, up, blur, eps=1e-8):
    """Per-sample loop with explicit weights: a third formulation of the same op."""
    outs = []
    for i in range(x.shape[0]):
        w = weight * style[i].view(1, -1, 1, 1)
        if demodulate:
            w = w * torch.rsqrt(w.pow(2).sum(dim=(1, 2, 3), keepdim=True) + eps)
        xi = x[i:i + 1]
        if up:
            y = F.conv_transpose2d(xi, w.transpose(0, 1), stride=2)
            k = torch.flip(blur, [0, 1]).view(1, 1, 4, 4).expand(y.shape[1], 1, 4, 4)
            y = F.conv2d(F.pad(y, [1, 1, 1, 1]), k.to(y.dtype), groups=y.shape[1])
        else:
            y = F.conv2d(xi, w, padding=weight.shape[-1] // 2)
        outs.append(y)
    return torch.cat(outs)


@pytest.mark.parametrize("up,ksize", [(False, 1), (False, 3), (True, 3)])  # up-sampling is 3x3 only
@pytest.mark.parametrize("demodulate", [False, True])
def test_modulated_conv_paths_agree(up, demodulate, ksize):
    g = torch.Generator().manual_seed(ksize + 2 * up + 4 * demodulate)
    x = torch.randn(3, 6, 5, 5, generator=g, dtype=torch.float64)
    w = torch.randn(4, 6, ksize, ksize, generator=g, dtype=torch.float64)
    s = torch.rand(3, 6, generator=g, dtype=torch.float64) + 0.5
    blur = make_fir_kernel([1, 3, 3, 1], gain=4).double() * (1 + 0.1 * torch.rand(4, 4, generator=g, dtype=torch.float64))
    want = _upstream_style_modconv(x, w, s, demodulate, up, blur)
    for impl in ("ref", "fast"):
        got = modulated_conv2d(x, w, s, demodulate=demodulate, up=up, blur_kernel=blur if up else None,
                               blur_pad=(1, 1), impl=impl)
        torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-12)


def test_modulated_conv_gradients_agree():
    x = torch.randn(2, 4, 6, 6, requires_grad=True)
    w = torch.randn(5, 4, 3, 3, requires_grad=True)
    s = torch.rand(2, 4, requires_grad=True)
    blur = make_fir_kernel([1, 3, 3, 1], gain=4)
    grads = []
    for impl in ("ref", "fast"):
        y = modulated_conv2d(x, w, s, up=True, blur_kernel=blur, impl=impl)
        grads.append(torch.autograd.grad(y.sin().sum(), (x, w, s)))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_gradcheck_reference_modconv():
    x = torch.randn(2, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    s = (torch.rand(2, 2, dtype=torch.float64) + 0.5).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b, c: modulated_conv2d(a, b, c, impl="ref"), (x, w, s))


def test_modulated_conv_rejects_mismatched_style():
    with pytest.raises(ValueError, match="do not fit"):
        modulated_conv2d(torch.zeros(2, 4, 3, 3), torch.zeros(1, 4, 3, 3), torch.zeros(2, 5))
