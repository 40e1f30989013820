"""Fast GLEAN inference: a frozen, fused snapshot of a generator for eval-mode forward passes.

Use::

    from gleansr.inference import build_inference_model
    run = build_inference_model(model, device="cuda", precision="bf16")
    y = run(x)  # x: (N, 3, in, in) float32 in [-1, 1], any device -> (N, 3, out, out) float32 on `device`

- ``build_inference_model(model, device="cpu", precision="fp32" | "bf16" | "fp16", compile=False)
  -> FastGLEAN``: the best settings known for the device (:func:`default_settings`); on CPU it
  also calls :func:`keep_freed_memory_for_reuse`. ``model`` may stay on the CPU: the snapshot
  copies what it needs to ``device``.
- ``FastGLEAN(model, dtype, device, channels_last, compile, cuda_graphs, winograd)``: every switch.
  Calling it runs under ``inference_mode``; with ``cuda_graphs`` the first call per input shape
  captures a graph (not re-entrant: one call at a time per snapshot).

It computes the same function as ``model.set_impl("ref")(x)`` (upstream's computation), with
everything that depends only on the weights done once, at build time:
- equalized-lr scales folded into the weights, kept in the compute dtype and memory format;
- StyleGAN2 demodulation reduced to ``rsqrt(style**2 @ sum_k(W**2) + eps)`` per sample
  (``sum_k(W**2)`` stored), styles applied to activations so the batch shares one weight;
- ``sqrt(2)`` of the bank's activation folded into demodulation, noise and bias
  (``leaky_relu(z) * c == leaky_relu(c * z)`` for ``c > 0``), the fixed noise buffers
  pre-multiplied by their weights, and the epilogue done in three passes;
- the RRDB residual scale 0.2 folded into each dense block's last convolution;
- the bank's RGB branch (``to_rgb*``, ``fusion_skip*``), which never reaches the output, skipped;
- CPU, float32/float64: wide 3x3 convolutions (decoder, fusion, 512-channel bank layers) by
  Winograd F(4x4, 3x3) (:mod:`gleansr.ops.winograd`), a quarter of the multiplications; the
  convolutions already run near the cores' peak, so this is where the float32 time goes down.
It is a snapshot: later changes to ``model``'s parameters are not seen; build it again.

Precision: ``fp32`` keeps the process' TF32 settings on CUDA (PyTorch's default: TF32 for
convolutions, as for the reference path); ``bf16``/``fp16`` store weights and activations in that
type while styles and demodulation factors are computed in float32. The output is float32
(float64 for a float64 snapshot, which the tests use).

Measured on the 2-core AVX-512 CPU (cat_8x, batch 1, float32, benchmarks/bench_inference.py, quiet
machine): the reference path 2.3 s, this module's default 1.1 s (1.7x in the same process, where
the malloc setting speeds the reference up too). What paid: Winograd (1.8 -> 1.3 s), then the
malloc setting (-> 1.1 s), channels_last (a little). What did not: torch.compile (4% after a 1-3 minute
compile; off), a preallocated dense-block buffer instead of ``torch.cat``, a polyphase form of the
transposed convolution, folding the FIR blur into it (4x the products), Winograd on narrow layers
(< 256 channels), oneDNN's fused conv+activation. bfloat16 runs in 0.9 s (AVX512-BF16).
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import math
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from .models.glean import GLEANStyleGANv2, PixelShufflePack
from .models.rrdb import RRDBFeatureExtractor, ResidualDenseBlock
from .models.stylegan2 import ModulatedStyleConv
from .ops import upfirdn2d
from .ops.winograd import WinogradWeight, conv3x3_winograd, winograd_weight

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
SQRT2 = math.sqrt(2.0)
RRDB_RESIDUAL_SCALE = 0.2
# Winograd F(4x4, 3x3) pays where products outweigh its transforms' memory traffic, which grows
# with in + out channels while the products grow with in * out (measured on a 2-core AVX-512 CPU)
WINOGRAD_MIN_CHANNELS = 256  # in * out / (in + out)


@dataclass(frozen=True)
class _Target:
    """Where and how the snapshot's tensors live."""

    dtype: torch.dtype
    device: torch.device
    channels_last: bool
    winograd: bool = False

    @property
    def style_dtype(self) -> torch.dtype:
        # styles and demodulation stay in float32 (float64 when the whole model is float64)
        return torch.float64 if self.dtype == torch.float64 else torch.float32

    def weight(self, t: torch.Tensor) -> torch.Tensor:
        t = t.detach().to(device=self.device, dtype=self.dtype)
        return t.contiguous(memory_format=torch.channels_last) if self.channels_last and t.ndim == 4 else t.contiguous()

    def vector(self, t: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        return t.detach().to(device=self.device, dtype=dtype or self.dtype).contiguous()

    def winograd_for(self, weight: torch.Tensor, stride: int, padding: int) -> WinogradWeight | None:
        """The Winograd form of a (out, in, k, k) weight if that layer is worth it, else None."""
        out_c, in_c, kh, kw = weight.shape
        if not self.winograd or (kh, kw, stride, padding) != (3, 3, 1, 1):
            return None
        if in_c * out_c / (in_c + out_c) < WINOGRAD_MIN_CHANNELS:
            return None
        return winograd_weight(weight.to(self.device), m=4, dtype=self.dtype)


class _WinogradBuffers(nn.Module):
    """Holds a :class:`WinogradWeight` as buffers (so that it counts and moves like one)."""

    def __init__(self, w: WinogradWeight):
        super().__init__()
        self.m, self.bias_index = w.m, w.bias_index
        self.register_buffer("u", w.u, persistent=False)
        self.register_buffer("input_transform", w.input_transform, persistent=False)
        self.register_buffer("output_transform", w.output_transform, persistent=False)

    def get(self) -> WinogradWeight:
        return WinogradWeight(self.u, self.input_transform, self.output_transform, self.m, self.bias_index)


def _f64(t: torch.Tensor) -> torch.Tensor:
    """Weights are derived in float64 and rounded once to the compute dtype."""
    return t.detach().to(torch.float64)


class _Conv(nn.Module):
    """A fixed 2-D convolution, optionally followed by an in-place LeakyReLU(0.2)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, target: _Target,
                 stride: int = 1, padding: int = 1, lrelu: bool = False):
        super().__init__()
        wino = target.winograd_for(weight, stride, padding)
        self.winograd = None if wino is None else _WinogradBuffers(wino)
        self.register_buffer("weight", target.weight(weight) if wino is None else None, persistent=False)
        self.register_buffer("bias", None if bias is None else target.vector(bias), persistent=False)
        self.stride, self.padding, self.lrelu = stride, padding, lrelu

    @classmethod
    def of(cls, conv: nn.Conv2d, target: _Target, lrelu: bool = False, scale: float = 1.0) -> "_Conv":
        """Snapshot of ``conv`` with its output multiplied by ``scale`` (folded into the weights)."""
        bias = None if conv.bias is None else _f64(conv.bias) * scale
        return cls(_f64(conv.weight) * scale, bias, target, conv.stride[0], conv.padding[0], lrelu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.winograd is not None:
            y = conv3x3_winograd(x, self.winograd.get(), self.bias)
        else:
            y = F.conv2d(x, self.weight, self.bias, self.stride, self.padding)
        return F.leaky_relu_(y, 0.2) if self.lrelu else y


class _DenseBlock(nn.Module):
    """ESRGAN's residual dense block: ``x + 0.2 * conv5(cat(x, f1..f4))`` with 0.2 in conv5."""

    def __init__(self, rdb: ResidualDenseBlock, target: _Target):
        super().__init__()
        self.convs = nn.ModuleList([_Conv.of(getattr(rdb, f"conv{i}"), target, lrelu=True) for i in range(1, 5)])
        self.last = _Conv.of(rdb.conv5, target, scale=RRDB_RESIDUAL_SCALE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for conv in self.convs:
            feats.append(conv(torch.cat(feats, 1)))
        return self.last(torch.cat(feats, 1)).add_(x)


class _RRDBTrunk(nn.Module):
    """conv_first -> RRDBs (``x + 0.2 * rdb3(rdb2(rdb1(x)))``) -> conv_body + long skip."""

    def __init__(self, trunk: RRDBFeatureExtractor, target: _Target):
        super().__init__()
        self.first = _Conv.of(trunk.conv_first, target)
        self.blocks = nn.ModuleList([
            nn.Sequential(*[_DenseBlock(rdb, target) for rdb in (block.rdb1, block.rdb2, block.rdb3)])
            for block in trunk.body
        ])
        self.body_conv = _Conv.of(trunk.conv_body, target)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.first(x)
        body = feat
        for block in self.blocks:
            body = torch.add(body, block(body), alpha=RRDB_RESIDUAL_SCALE)
        return self.body_conv(body).add_(feat)


class _StyledConv(nn.Module):
    """The bank's modulated conv + noise + bias + LeakyReLU(0.2) * sqrt(2), weights fixed.

    x (N, in, H, W), w (N, style_channels) -> (N, out, H', W') with H' = 2H when up-sampling.
    """

    def __init__(self, layer: ModulatedStyleConv, noise: torch.Tensor, target: _Target):
        super().__init__()
        conv = layer.conv
        weight = _f64(conv.weight_orig[0]) * conv.scale  # (out, in, k, k), equalized lr
        lin = conv.style_modulation
        sd = target.style_dtype
        self.register_buffer("style_weight", target.vector(_f64(lin.linear.weight), sd), persistent=False)
        self.register_buffer("style_bias", target.vector(_f64(lin.bias) * lin.lr_mul, sd), persistent=False)
        # demodulation: sum over (in, k, k) of (W * s)^2 == s^2 @ sum_k(W^2).T
        self.register_buffer("weight_sq", target.vector(weight.pow(2).sum((2, 3)).t(), sd), persistent=False)
        self.upsample = conv.upsample
        if self.upsample:
            # conv_transpose2d wants (in, out, k, k)
            self.register_buffer("weight", target.weight(weight.transpose(0, 1)), persistent=False)
            self.register_buffer("blur_kernel", target.vector(conv.blur.kernel), persistent=False)
            self.blur_pad = conv.blur.pad
            self.winograd = None
        else:
            wino = target.winograd_for(weight, 1, weight.shape[-1] // 2)
            self.winograd = None if wino is None else _WinogradBuffers(wino)
            self.register_buffer("weight", target.weight(weight) if wino is None else None, persistent=False)
        self.padding, self.eps = weight.shape[-1] // 2, conv.eps
        assert conv.demodulate, "the bank's style convs always demodulate"
        noise_scaled = _f64(noise) * _f64(layer.noise_injector.weight) * SQRT2  # (1, 1, H, W)
        self.register_buffer("noise", target.vector(noise_scaled), persistent=False)
        self.register_buffer("bias", target.vector(_f64(layer.activate.bias).view(1, -1, 1, 1) * SQRT2),
                             persistent=False)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        style = F.linear(w.to(self.style_weight.dtype), self.style_weight, self.style_bias)  # (N, in)
        if self.winograd is not None:  # modulation happens while the tiles are gathered
            y = conv3x3_winograd(x, self.winograd.get(), in_scale=style)
        elif self.upsample:
            y = F.conv_transpose2d(x * style.to(x.dtype).view(n, -1, 1, 1), self.weight, stride=2)
            y = upfirdn2d(y, self.blur_kernel, pad=self.blur_pad, impl="fast")
        else:
            y = F.conv2d(x * style.to(x.dtype).view(n, -1, 1, 1), self.weight, padding=self.padding)
        scale = torch.rsqrt(style.square() @ self.weight_sq + self.eps) * SQRT2  # demodulation
        # y * d * sqrt2 + noise * sqrt2 + bias * sqrt2, then leaky_relu: three passes
        y = torch.addcmul(self.noise, y, scale.to(y.dtype).view(n, -1, 1, 1))
        return F.leaky_relu_(y.add_(self.bias), 0.2)


class _PixelShuffleConv(nn.Module):
    """3x3 conv to 4x the channels, then pixel shuffle (x2): (N, in, H, W) -> (N, out, 2H, 2W)."""

    def __init__(self, block: PixelShufflePack, target: _Target):
        super().__init__()
        self.conv = _Conv.of(block.upsample_conv, target)
        self.channels_last = target.channels_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.pixel_shuffle(self.conv(x), 2)
        # CUDA's pixel_shuffle returns NCHW; keep the layout so the following cat stays channels_last
        return y.contiguous(memory_format=torch.channels_last) if self.channels_last else y


def _encoder_block(block: nn.Sequential, target: _Target) -> nn.Sequential:
    """Snapshot of a ``Conv2d, LeakyReLU, ...[, Flatten, Linear]`` encoder block, activations fused."""
    layers: list[nn.Module] = []
    mods = list(block)
    for i, m in enumerate(mods):
        if isinstance(m, nn.Conv2d):
            lrelu = i + 1 < len(mods) and isinstance(mods[i + 1], nn.LeakyReLU)
            layers.append(_Conv.of(m, target, lrelu=lrelu))
        elif isinstance(m, nn.Linear):
            lin = nn.Linear(m.in_features, m.out_features, device=target.device, dtype=target.dtype)
            lin.weight.data.copy_(m.weight.detach())
            lin.bias.data.copy_(m.bias.detach())
            layers.append(lin.requires_grad_(False))
        elif isinstance(m, nn.Flatten):
            layers.append(nn.Flatten())
        elif not isinstance(m, nn.LeakyReLU):
            raise TypeError(f"unexpected encoder layer {type(m).__name__}")
    return nn.Sequential(*layers)


class FastGLEAN(nn.Module):
    """Frozen, fused inference copy of a :class:`GLEANStyleGANv2` (see the module docstring).

    Args:
        model: the generator to snapshot (its weights are read once).
        dtype: compute dtype (float32, bfloat16, float16; float64 for tests).
        device: where to run.
        channels_last: keep activations and weights in NHWC memory format.
        winograd: compute wide 3x3 convolutions by Winograd F(4x4, 3x3) (pays on CPU).
        compile: run the forward through ``torch.compile`` (compiled on the first call).
        cuda_graphs: capture one CUDA graph per input shape and replay it (CUDA only).
    Calling it: x (N, C, in, in) in [-1, 1] -> (N, C, out, out) float32 on ``device``
    (float64 for a float64 snapshot).
    """

    def __init__(self, model: GLEANStyleGANv2, dtype: torch.dtype = torch.float32,
                 device: str | torch.device = "cpu", channels_last: bool = False,
                 compile: bool = False, cuda_graphs: bool = False, winograd: bool = False):
        super().__init__()
        device = torch.device(device)
        if cuda_graphs and device.type != "cuda":
            raise ValueError("cuda_graphs needs a CUDA device")
        target = _Target(dtype, device, channels_last, winograd)
        self.target, self.in_size, self.out_size = target, model.in_size, model.out_size
        self.style_channels, self.img_channels = model.style_channels, model.config.img_channels
        self.latent_bank = model.config.latent_bank
        first = model.encoder[0]
        self.trunk = _RRDBTrunk(first[0], target)
        self.trunk_out = _Conv.of(first[1], target, lrelu=True)
        self.encoder = nn.ModuleList([_encoder_block(block, target) for block in model.encoder[1:]])
        g = model.generator
        self.register_buffer("constant_input", target.weight(g.constant_input.input), persistent=False)
        noises = g.injected_noises()
        self.conv1 = _StyledConv(g.conv1, noises[0], target)
        self.bank = nn.ModuleList([_StyledConv(layer, noise, target) for layer, noise in zip(g.convs, noises[1:])])
        self.fusion = nn.ModuleList([_Conv.of(conv, target) for conv in model.fusion_out])
        self.decoder = nn.ModuleList([
            _PixelShuffleConv(block, target) if isinstance(block, PixelShufflePack)
            else nn.Sequential(_Conv.of(block[0], target, lrelu=True), _Conv.of(block[2], target))
            for block in model.decoder
        ])
        self.requires_grad_(False)
        self._run: Callable[[torch.Tensor], torch.Tensor] = self._forward
        if compile:
            self._run = torch.compile(self._forward, dynamic=False)
        if cuda_graphs:
            self._run = _CudaGraphs(self._run)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.target
        x = x.to(dtype=t.dtype)
        if t.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        n = x.shape[0]
        feats = [self.trunk_out(self.trunk(x))]
        if not self.latent_bank:  # the encoder-decoder ablation: zeros stand in for the bank
            return self._decode(feats[0], None)
        for block in self.encoder:
            feats.append(block(feats[-1]))
        latent = feats[-1].view(n, -1, self.style_channels)
        enc = feats[-2::-1]  # 4x4 first, in_size last

        out = self.constant_input.expand(n, -1, -1, -1)
        out = self.conv1(out, latent[:, 0])
        bank_feats = []
        for j, (up_conv, conv) in enumerate(zip(self.bank[::2], self.bank[1::2])):
            if j < len(self.fusion):
                out = self.fusion[j](torch.cat([out, enc[j]], 1))
            out = up_conv(out, latent[:, 2 * j + 1])
            out = conv(out, latent[:, 2 * j + 2])
            if out.shape[2] > self.in_size:
                bank_feats.append(out)

        return self._decode(enc[-1], bank_feats)

    def _decode(self, hr: torch.Tensor, bank_feats: list[torch.Tensor] | None) -> torch.Tensor:
        for i, block in enumerate(self.decoder):
            if i > 0:
                hr = torch.cat([hr, torch.zeros_like(hr) if bank_feats is None else bank_feats[i - 1]], 1)
            hr = block(hr)
        return hr.to(self.target.style_dtype).contiguous()  # float32 (float64 for a float64 snapshot)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.img_channels or x.shape[-2:] != (self.in_size, self.in_size):
            raise ValueError(f"GLEAN expects input of shape (N, {self.img_channels}, {self.in_size}, "
                             f"{self.in_size}), got {tuple(x.shape)}")
        with torch.inference_mode(), _cudnn_benchmark(self.target.device):
            # on the device before the (possibly graph-captured) forward: no host copies inside it
            return self._run(x.to(self.target.device))


class _CudaGraphs:
    """Replays one captured CUDA graph per input shape; the output is copied out of the graph."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]):
        self.fn = fn
        self.graphs: dict[tuple, tuple[torch.Tensor, torch.Tensor, torch.cuda.CUDAGraph]] = {}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        key = (tuple(x.shape), x.dtype, x.device)
        if key not in self.graphs:
            self.graphs[key] = self._capture(x)
        static_in, static_out, graph = self.graphs[key]
        static_in.copy_(x)
        graph.replay()
        return static_out.clone()

    def _capture(self, x: torch.Tensor):
        static_in = x.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up outside the graph: cudnn autotuning, compilation
            for _ in range(2):
                self.fn(static_in)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = self.fn(static_in)
        return static_in, static_out, graph


@contextlib.contextmanager
def _cudnn_benchmark(device: torch.device) -> Iterator[None]:
    """cudnn.benchmark on for CUDA calls only, restored afterwards (the shapes are fixed)."""
    if device.type != "cuda":
        yield
        return
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


def default_settings(device: str | torch.device, dtype: torch.dtype = torch.float32) -> dict[str, bool]:
    """The fastest known switches per device type (measured with benchmarks/bench_inference.py).

    CUDA: channels_last (tensor-core friendly) and CUDA graphs (the forward is ~600 kernels);
    cudnn.benchmark is always on for CUDA calls. The CUDA choices are not measured yet: the
    benchmark times each switch on and off. CPU: channels_last, and Winograd for wide 3x3
    convolutions in float32/float64 (in bf16/fp16 its transforms would lose too much precision).
    """
    if torch.device(device).type == "cuda":
        return {"channels_last": True, "cuda_graphs": True, "winograd": False}
    return {"channels_last": True, "cuda_graphs": False, "winograd": dtype in (torch.float32, torch.float64)}


def keep_freed_memory_for_reuse() -> bool:
    """Make glibc's malloc keep large freed blocks for reuse instead of returning them to the OS.

    glibc maps blocks above 32 MiB fresh from the kernel and unmaps them on free, so every large
    tensor of a CPU forward pays its page faults again (measured: 14% of the float32 forward of
    cat_8x). Raising the mmap and trim thresholds keeps such blocks in the heap. Process-wide; the
    resident size then stays at its peak. Returns False where the C library has no ``mallopt``.
    """
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
    return bool(mallopt(m_mmap_threshold, 1 << 30)) and bool(mallopt(m_trim_threshold, 2**31 - 1))


def build_inference_model(model: GLEANStyleGANv2, device: str | torch.device = "cpu",
                          precision: str = "fp32", compile: bool = False) -> FastGLEAN:
    """A fast callable ``x (N, C, in, in) float32 in [-1, 1] -> (N, C, out, out) float32``.

    precision: "fp32", "bf16" or "fp16" (compute type; see the module docstring).
    compile: also use ``torch.compile`` (slow first call; see the benchmark for when it pays).
    On CPU this also calls :func:`keep_freed_memory_for_reuse` (a process-wide malloc setting).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    dtype = PRECISIONS[precision]
    if torch.device(device).type == "cpu":
        keep_freed_memory_for_reuse()
    return FastGLEAN(model, dtype, device, compile=compile, **default_settings(device, dtype))
