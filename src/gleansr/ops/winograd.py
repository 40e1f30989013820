"""3x3 convolution (stride 1, zero padding 1) by Winograd's minimal filtering F(m x m, 3 x 3).

Same function as ``F.conv2d(x * in_scale, weight, bias, padding=1)``, with fewer multiplications:
each m x m output tile costs (m + 2)^2 products per (in, out) channel pair instead of 9 m^2
(F(4x4, 3x3): 36 instead of 144, a quarter; F(2x2, 3x3): 16 instead of 36). Steps (Lavin & Gray,
"Fast Algorithms for Convolutional Neural Networks", 2016), with a = m + 2:
1. cut the padded input into overlapping a x a tiles, stride m: d (a*a, tiles * in);
2. input transform ``V = (B^T kron B^T) d``, one small matrix product for all tiles;
3. ``M[e] = V[e] @ U[e]`` for each of the a*a tile elements (``torch.bmm``), with the
   transformed weight ``U = G w G^T`` precomputed once (:func:`winograd_weight`);
4. output transform ``Y = (A^T kron A^T) M`` and interleave the m x m tiles. The bias is added
   to the one element of M whose output-transform column is all ones (the evaluation point 1),
   which adds it to every output at 1/(a*a) of the cost.
Pays on CPU for wide layers, where the products dominate the transforms' memory traffic; in
float32 its rounding error is a few times that of a direct convolution (F(4x4, 3x3)).
Inference only: it writes with ``out=``, which autograd does not follow.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

# Transforms in correlation form (what conv2d computes): y[i] = sum_k x[i + k] w[k].
_TRANSFORMS = {
    2: (  # points 0, 1, -1, inf
        [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
        [[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]],
        [[1, 1, 1, 0], [0, 1, -1, -1]],
    ),
    4: (  # points 0, 1, -1, 2, -2, inf
        [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
         [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
        [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
         [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]],
        [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
    ),
}


@dataclass(frozen=True)
class WinogradWeight:
    """A 3x3 weight (out, in, 3, 3) in the Winograd domain, with the transforms it needs.

    u: (a*a, in, out); input_transform: (a*a, a*a) = B^T kron B^T; output_transform:
    (m*m, a*a) = A^T kron A^T; all in the compute dtype and on the compute device.
    bias_index: the Winograd-domain element that carries the bias.
    """

    u: torch.Tensor
    input_transform: torch.Tensor
    output_transform: torch.Tensor
    m: int
    bias_index: int

    @property
    def out_channels(self) -> int:
        return self.u.shape[2]


def winograd_weight(weight: torch.Tensor, m: int = 4, dtype: torch.dtype | None = None) -> WinogradWeight:
    """Transform ``weight`` (out, in, 3, 3) once, in float64, then round to ``dtype``."""
    if m not in _TRANSFORMS:
        raise ValueError(f"winograd tile size must be one of {sorted(_TRANSFORMS)}, got {m}")
    if weight.ndim != 4 or weight.shape[2:] != (3, 3):
        raise ValueError(f"winograd needs a 3x3 weight (out, in, 3, 3), got {tuple(weight.shape)}")
    dtype = dtype or weight.dtype
    bt, g, at = (torch.tensor(t, dtype=torch.float64, device=weight.device) for t in _TRANSFORMS[m])
    a = m + 2
    ones = (at == 1).all(dim=0).nonzero()
    assert len(ones) == 1, "the output transform needs one column of ones (evaluation point 1)"
    u = torch.einsum("ik,ockl,jl->ijco", g, weight.detach().to(torch.float64), g)  # (a, a, in, out)
    return WinogradWeight(
        u=u.reshape(a * a, weight.shape[1], weight.shape[0]).to(dtype).contiguous(),
        input_transform=torch.kron(bt, bt).to(dtype),
        output_transform=torch.kron(at, at).to(dtype),
        m=m,
        bias_index=int(ones[0]) * (a + 1),
    )


def conv3x3_winograd(x: torch.Tensor, weight: WinogradWeight, bias: torch.Tensor | None = None,
                     in_scale: torch.Tensor | None = None) -> torch.Tensor:
    """``conv2d(x * in_scale[:, :, None, None], w, bias, padding=1)`` for x (N, in, H, W).

    in_scale: optional (N, in) per-sample input-channel scales (StyleGAN2's modulation), applied
    while the tiles are gathered. Returns (N, out, H, W) in channels_last memory format.
    """
    n, c, h, w = x.shape
    m, a, k = weight.m, weight.m + 2, weight.out_channels
    if weight.u.shape[1] != c:
        raise ValueError(f"conv3x3_winograd: input has {c} channels, weight expects {weight.u.shape[1]}")
    th, tw = -(-h // m), -(-w // m)  # tiles per axis; the last ones may reach into extra zeros
    xp = F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, 1 + tw * m - w, 1, 1 + th * m - h))  # (N, H+2, W+2, in)
    tiles = xp.unfold(1, a, m).unfold(2, a, m).permute(4, 5, 0, 1, 2, 3)  # (a, a, N, th, tw, in) view
    scale = None if in_scale is None else in_scale.to(x.dtype).view(1, 1, n, 1, 1, c)
    if torch.compiler.is_compiling():  # functional form: inductor fuses it into one gather
        d = (tiles if scale is None else tiles * scale).contiguous()
    else:  # eager: gather (and modulate) in one pass, straight into the layout the product needs
        d = torch.empty((a, a, n, th, tw, c), dtype=x.dtype, device=x.device)
        if scale is None:
            d.copy_(tiles)
        else:
            torch.mul(tiles, scale, out=d)
    v = (weight.input_transform @ d.view(a * a, -1)).view(a * a, n * th * tw, c)
    prod = torch.bmm(v, weight.u)  # (a*a, tiles, out)
    if bias is not None:
        prod[weight.bias_index].add_(bias.to(x.dtype))
    y = (weight.output_transform @ prod.view(a * a, -1)).view(m, m, n, th, tw, k)
    # interleave the tiles: (m, m, N, th, tw, out) -> (N, th, m, tw, m, out) -> NHWC, one copy
    out = y.permute(2, 3, 0, 4, 1, 5).reshape(n, th * m, tw * m, k)
    return out[:, :h, :w].permute(0, 3, 1, 2)
