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
