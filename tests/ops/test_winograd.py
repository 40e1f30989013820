import pytest
import torch
import torch.nn.functional as F

from gleansr.ops.winograd import conv3x3_winograd, winograd_weight


def _inputs(n, c, k, h, w, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g, dtype=dtype)
    weight = torch.randn(k, c, 3, 3, generator=g, dtype=dtype)
    bias = torch.randn(k, generator=g, dtype=dtype)
    scale = torch.rand(n, c, generator=g, dtype=dtype) + 0.5
    return x, weight, bias, scale


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("h,w", [(8, 8), (4, 12), (5, 7), (1, 3)])  # odd sizes need the extra zero tiles
@pytest.mark.parametrize("channels_last", [False, True])
def test_matches_conv2d_in_float64(m, h, w, channels_last):
    x, weight, bias, scale = _inputs(2, 5, 6, h, w, torch.float64, seed=h * 10 + w + m)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    ww = winograd_weight(weight, m=m)
    torch.testing.assert_close(conv3x3_winograd(x, ww), F.conv2d(x, weight, padding=1), atol=1e-12, rtol=0)
    torch.testing.assert_close(conv3x3_winograd(x, ww, bias), F.conv2d(x, weight, bias, padding=1),
                               atol=1e-12, rtol=0)
    want = F.conv2d(x * scale[:, :, None, None], weight, bias, padding=1)
    torch.testing.assert_close(conv3x3_winograd(x, ww, bias, in_scale=scale), want, atol=1e-12, rtol=0)


def test_float32_rounding_error_is_small():
    """Rounding only: F(2x2, 3x3) about as exact as conv2d, F(4x4, 3x3) within 1e-5 of the range."""
    x, weight, bias, _ = _inputs(1, 256, 32, 16, 16, torch.float32, seed=0)
    weight /= 3 * 16  # unit-scale outputs, as in a trained network
    exact = F.conv2d(x.double(), weight.double(), bias.double(), padding=1)
    direct_err = (F.conv2d(x, weight, bias, padding=1).double() - exact).abs().max().item()
    err = {m: (conv3x3_winograd(x, winograd_weight(weight, m=m), bias).double() - exact).abs().max().item()
           for m in (2, 4)}
    assert err[2] < 3 * direct_err
    assert err[4] < 1e-5 * exact.abs().max().item()


def test_output_is_channels_last_and_input_untouched():
    x, weight, bias, scale = _inputs(2, 3, 4, 8, 8, torch.float32, seed=1)
    x0 = x.clone()
    y = conv3x3_winograd(x, winograd_weight(weight), bias, in_scale=scale)
    assert y.shape == (2, 4, 8, 8) and y.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(x, x0)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="tile size"):
        winograd_weight(torch.zeros(2, 2, 3, 3), m=3)
    with pytest.raises(ValueError, match="3x3 weight"):
        winograd_weight(torch.zeros(2, 2, 5, 5))
    with pytest.raises(ValueError, match="expects 2"):
        conv3x3_winograd(torch.zeros(1, 3, 4, 4), winograd_weight(torch.zeros(2, 2, 3, 3)))
