import numpy as np
import pytest
import torch

from gleansr.ops import upfirdn2d


def upfirdn_numpy(x: np.ndarray, k: np.ndarray, up: int, down: int, pad: tuple[int, int]) -> np.ndarray:
    """The definition, written out loop by loop: an oracle independent of both paths."""
    n, c, h, w = x.shape
    p0, p1 = pad
    u = np.zeros((n, c, h * up, w * up))
    u[:, :, ::up, ::up] = x
    big = np.zeros((n, c, h * up + 2 * abs(p0) + 2 * abs(p1), w * up + 2 * abs(p0) + 2 * abs(p1)))
    o = abs(p0) + abs(p1)
    big[:, :, o:o + h * up, o:o + w * up] = u
    start, stop_h, stop_w = o - p0, o + h * up + p1, o + w * up + p1
    v = big[:, :, start:stop_h, start:stop_w]
    kh, kw = k.shape
    oh, ow = v.shape[2] - kh + 1, v.shape[3] - kw + 1
    y = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            # true convolution: kernel flipped
            y[:, :, i, j] = (v[:, :, i:i + kh, j:j + kw] * k[::-1, ::-1]).sum(axis=(2, 3))
    return y[:, :, ::down, ::down]


CASES = [
    (1, 1, (1, 1)), (2, 1, (2, 1)), (2, 1, (1, 1)), (1, 2, (2, 2)), (1, 2, (1, 1)),
    (2, 2, (1, 2)), (1, 1, (-1, 2)), (2, 1, (0, 0)), (2, 1, (4, 3)), (1, 1, (0, -1)),
]


@pytest.mark.parametrize("up,down,pad", CASES)
@pytest.mark.parametrize("impl", ["ref", "fast"])
def test_matches_definition_with_asymmetric_kernel(up, down, pad, impl):
    g = torch.Generator().manual_seed(up * 10 + down)
    x = torch.randn(2, 3, 7, 6, generator=g, dtype=torch.float64)
    k = torch.rand(4, 4, generator=g, dtype=torch.float64)  # asymmetric: catches a missing flip
    got = upfirdn2d(x, k, up=up, down=down, pad=pad, impl=impl)
    want = upfirdn_numpy(x.numpy(), k.numpy(), up, down, pad)
    assert got.shape == want.shape
    np.testing.assert_allclose(got.numpy(), want, atol=1e-12)


@pytest.mark.parametrize("up,down,pad", CASES)
@pytest.mark.parametrize("impl", ["ref", "fast"])
def test_matches_definition_with_non_square_kernel(up, down, pad, impl):
    g = torch.Generator().manual_seed(up * 10 + down)
    x = torch.randn(1, 2, 7, 6, generator=g, dtype=torch.float64, requires_grad=True)
    k = torch.rand(3, 4, generator=g, dtype=torch.float64)
    got = upfirdn2d(x, k, up=up, down=down, pad=pad, impl=impl)
    np.testing.assert_allclose(got.detach().numpy(), upfirdn_numpy(x.detach().numpy(), k.numpy(), up, down, pad),
                               atol=1e-12)


@pytest.mark.parametrize("up,down,pad", CASES)
def test_fast_matches_ref_float32_and_gradients(up, down, pad):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 5, 9, 9, generator=g, requires_grad=True)
    k = torch.rand(4, 4, generator=g)
    y_ref = upfirdn2d(x, k, up, down, pad, impl="ref")
    y_fast = upfirdn2d(x, k, up, down, pad, impl="fast")
    torch.testing.assert_close(y_fast, y_ref, atol=1e-5, rtol=1e-5)
    w = torch.randn_like(y_ref)
    (g_ref,) = torch.autograd.grad((y_ref * w).sum(), x)
    (g_fast,) = torch.autograd.grad((y_fast * w).sum(), x)
    torch.testing.assert_close(g_fast, g_ref, atol=1e-5, rtol=1e-5)


def test_gradcheck_reference():
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    k = torch.rand(3, 3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: upfirdn2d(t, k, up=2, down=1, pad=(1, 1), impl="ref"), (x,))


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="impl"):
        upfirdn2d(torch.zeros(1, 1, 4, 4), torch.ones(2, 2), impl="cuda")
    with pytest.raises(ValueError, match="2-D kernel"):
        upfirdn2d(torch.zeros(1, 1, 4, 4), torch.ones(2))


# (up, down, pad): StyleGAN2's calls (blur after the modulated up-conv, ToRGB up-sampling,
# discriminator blurs before a stride-2 conv, down-sampling), then odd ones
GRAD_CASES = [
    (1, 1, (1, 1)), (1, 1, (2, 1)), (1, 1, (2, 2)), (2, 1, (2, 1)), (1, 2, (1, 1)), (1, 2, (2, 2)),
    (2, 2, (1, 2)), (3, 2, (1, 0)), (1, 3, (2, 1)), (1, 1, (-1, 2)), (2, 1, (-1, 1)), (2, 1, (0, 0)),
]


def _fir_inputs(up, down, pad, taps, hw=(5, 6)):
    g = torch.Generator().manual_seed(up * 100 + down * 10 + taps)
    x = torch.randn(1, 2, *hw, generator=g, dtype=torch.float64, requires_grad=True)
    k = torch.rand(taps, taps, generator=g, dtype=torch.float64)
    return x, k


@pytest.mark.parametrize("taps", [4, 3])
@pytest.mark.parametrize("up,down,pad", GRAD_CASES)
def test_fast_gradcheck_and_gradgradcheck(up, down, pad, taps):
    x, k = _fir_inputs(up, down, pad, taps)
    f = lambda t: upfirdn2d(t, k, up, down, pad, impl="fast")  # noqa: E731
    assert type(f(x).grad_fn).__name__ == "_UpFirDn2dFastBackward"  # the custom backward is tested
    assert torch.autograd.gradcheck(f, (x,))
    assert torch.autograd.gradgradcheck(f, (x,))


@pytest.mark.parametrize("hw", [(5, 6), (6, 7), (7, 4)])
@pytest.mark.parametrize("taps", [4, 3])
@pytest.mark.parametrize("up,down,pad", GRAD_CASES)
def test_fast_first_and_second_derivatives_match_ref(up, down, pad, taps, hw):
    x, k = _fir_inputs(up, down, pad, taps, hw)
    grads = {}
    for impl in ("ref", "fast"):
        y = upfirdn2d(x, k, up, down, pad, impl=impl)
        w = torch.linspace(-1, 1, y.numel(), dtype=y.dtype).reshape(y.shape).requires_grad_(True)
        (gx,) = torch.autograd.grad((y * w).sum(), x, create_graph=True)
        # second derivative: d<grad_x, v>/dw (the op is linear, so this is where R1/PL's double
        # backward goes); sin keeps the weights of gx non-constant
        (gw,) = torch.autograd.grad((gx.sin() * x).sum(), w)
        grads[impl] = (y.detach(), gx.detach(), gw)
    for a, b in zip(grads["fast"], grads["ref"]):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("up,down,pad", GRAD_CASES)
def test_custom_backward_keeps_the_fast_forward_bit_identical(up, down, pad):
    x, k = _fir_inputs(up, down, pad, 4)
    with torch.no_grad():
        plain = upfirdn2d(x.float(), k.float(), up, down, pad, impl="fast")
    assert torch.equal(upfirdn2d(x.float(), k.float(), up, down, pad, impl="fast").detach(), plain)


def test_kernel_requiring_grad_falls_back_to_plain_autograd():
    x, k = _fir_inputs(2, 1, (2, 1), 4)
    k.requires_grad_(True)
    y = upfirdn2d(x, k, 2, 1, (2, 1), impl="fast")
    assert type(y.grad_fn).__name__ != "_UpFirDn2dFastBackward"
    gx, gk = torch.autograd.grad(y.square().sum(), (x, k))
    y_ref = upfirdn2d(x, k, 2, 1, (2, 1), impl="ref")
    gx_ref, gk_ref = torch.autograd.grad(y_ref.square().sum(), (x, k))
    torch.testing.assert_close(gx, gx_ref)
    torch.testing.assert_close(gk, gk_ref)
    assert torch.autograd.gradcheck(lambda t, kk: upfirdn2d(t, kk, 2, 1, (2, 1), impl="fast"), (x, k))


def test_custom_backward_under_bf16_autocast():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 2, 6, 6, generator=g, requires_grad=True)
    conv = torch.nn.Conv2d(2, 2, 1)
    k = torch.rand(4, 4, generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = upfirdn2d(conv(x), k, 2, 1, (2, 1), impl="fast")
    assert y.dtype == torch.bfloat16 and type(y.grad_fn).__name__ == "_UpFirDn2dFastBackward"
    y.float().sum().backward()
    assert x.grad.dtype == torch.float32 and torch.isfinite(x.grad).all()
