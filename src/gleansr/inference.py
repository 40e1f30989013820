"""Fast GLEAN inference: a frozen, fused snapshot of a generator for eval-mode forward passes.

Use::

    from gleansr.inference import build_inference_model
    run = build_inference_model(model, device="cuda", precision="bf16")
    y = run(x)  # x: (N, 3, in, in) float32 in [-1, 1], any device -> (N, 3, out, out) float32 on `device`

- ``build_inference_model(model, device="cpu", precision="fp32" | "bf16" | "fp16", compile=False,
  *, winograd=None, cuda_graphs=None, channels_last=None) -> FastGLEAN``: the best settings known
  for the device (:func:`default_settings`) unless a keyword says otherwise; ``winograd=False,
  cuda_graphs=False`` gives the plain snapshot that ``torch.onnx.export``/``torch.jit.trace``
  can trace. ``model`` may stay on the CPU: the snapshot copies what it needs to ``device``.
- ``FastGLEAN(model, dtype, device, channels_last, compile, cuda_graphs, winograd)``: every switch.
  Calling it runs under ``inference_mode``; it may be called from several threads at once (CUDA
  graphs are captured and replayed under a lock).

The snapshot is the model's own fused form, ``model.fused(target)``
(:class:`~gleansr.models.glean.FusedGLEAN`): every layer builds its inference form
(:mod:`gleansr.models.fused`) and the forward order is the model's (:class:`GLEANFlow`). It
computes the same function as ``model.set_impl("ref")(x)`` (upstream's computation), with
everything that depends only on the weights done once (equalized-lr scales, RRDB residual
scales and ``sqrt(2)`` gains folded, modulation on activations, the RGB branch skipped; on CPU
in float32/float64, wide 3x3 convolutions by Winograd F(4x4, 3x3)). It is a snapshot: later
changes to ``model``'s parameters are not seen; build it again.

Precision: ``fp32`` keeps the process' TF32 settings on CUDA (PyTorch's default: TF32 for
convolutions, as for the reference path); ``bf16``/``fp16`` store weights and activations in that
type while styles and demodulation factors are computed in float32. The output is float32
(float64 for a float64 snapshot, which the tests use).

Nothing here changes process-wide state for good: :func:`gleansr.tuning.keep_freed_memory_for_reuse`
(glibc malloc) is for a program's entry point to call (the ``gleansr`` CLI does); ``cudnn.benchmark``
is switched on only while a CUDA call runs (or a CUDA graph is captured) and then restored.

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
import threading
from typing import Callable, Iterator

import torch
import torch.nn as nn

from .models.fused import FuseTarget
from .models.glean import FusedGLEAN, GLEANStyleGANv2
from .precision import torch_dtype


class FastGLEAN(nn.Module):
    """Frozen, fused inference copy of a :class:`GLEANStyleGANv2` (see the module docstring).

    Args:
        model: the generator to snapshot (its weights are read once).
        dtype: compute dtype (float32, bfloat16, float16; float64 for tests).
        device: where to run.
        channels_last: keep activations and weights in NHWC memory format.
        compile: run the forward through ``torch.compile`` (compiled on the first call).
        cuda_graphs: capture one CUDA graph per input shape and replay it (CUDA only).
        winograd: compute wide 3x3 convolutions by Winograd F(4x4, 3x3) (pays on CPU).
    Calling it: x (N, C, in, in) in [-1, 1] -> (N, C, out, out) float32 on ``device``
    (float64 for a float64 snapshot). ``net`` is the plain fused module
    (:class:`~gleansr.models.glean.FusedGLEAN`), for tracing and export.
    """

    def __init__(self, model: GLEANStyleGANv2, dtype: torch.dtype = torch.float32,
                 device: str | torch.device = "cpu", channels_last: bool = False,
                 compile: bool = False, cuda_graphs: bool = False, winograd: bool = False):
        super().__init__()
        device = torch.device(device)
        if cuda_graphs and device.type != "cuda":
            raise ValueError("cuda_graphs needs a CUDA device")
        self.target = FuseTarget(dtype, device, channels_last, winograd)
        self.net: FusedGLEAN = model.fused(self.target)
        self.in_size, self.out_size = model.in_size, model.out_size
        self._run: Callable[[torch.Tensor], torch.Tensor] = self.net
        if compile:
            self._run = torch.compile(self.net, dynamic=False)
        if cuda_graphs:
            self._run = CudaGraphs(self._run)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.net.check_input(x)  # before any graph capture: a wrong shape must not reach one
        if torch.jit.is_tracing():  # TorchScript/ONNX tracing: no inference-mode tensors in the trace
            return self._run(x.to(self.target.device))
        with torch.inference_mode(), _cudnn_benchmark(self.target.device):
            # on the device before the (possibly graph-captured) forward: no host copies inside it
            return self._run(x.to(self.target.device))


class CudaGraphs:
    """Replays one captured CUDA graph per input shape; safe to call from several threads.

    A graph owns fixed input and output buffers, so a lock covers capture and each copy-in /
    replay / copy-out, all queued on one private stream: the next caller's copy-in is ordered
    after the previous copy-out on the GPU as well. The caller's stream waits for the result.
    """

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]):
        self.fn = fn
        self.graphs: dict[tuple, tuple[torch.Tensor, torch.Tensor, torch.cuda.CUDAGraph]] = {}
        self.lock = threading.Lock()
        self.stream: torch.cuda.Stream | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        key = (tuple(x.shape), x.dtype, x.device)
        caller = torch.cuda.current_stream(x.device)
        with self.lock:
            if self.stream is None:
                self.stream = torch.cuda.Stream(x.device)
            self.stream.wait_stream(caller)  # x was made on the caller's stream
            with torch.cuda.stream(self.stream):
                if key not in self.graphs:
                    self.graphs[key] = self._capture(x)
                static_in, static_out, graph = self.graphs[key]
                static_in.copy_(x)
                graph.replay()
                out = static_out.clone()
            caller.wait_stream(self.stream)
        x.record_stream(self.stream)
        out.record_stream(caller)
        return out

    def _capture(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.cuda.CUDAGraph]:
        static_in = x.clone()
        for _ in range(2):  # warm-up outside the graph: cudnn autotuning, compilation
            self.fn(static_in)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=self.stream):
            static_out = self.fn(static_in)
        return static_in, static_out, graph


_BENCHMARK_LOCK = threading.Lock()
_benchmark_users = 0
_benchmark_before = False


@contextlib.contextmanager
def _cudnn_benchmark(device: torch.device) -> Iterator[None]:
    """cudnn.benchmark on while CUDA calls run (the shapes are fixed), then back to what it was.

    Counted, so that overlapping calls from several threads restore the value found by the first.
    """
    global _benchmark_users, _benchmark_before
    if device.type != "cuda":
        yield
        return
    with _BENCHMARK_LOCK:
        if _benchmark_users == 0:
            _benchmark_before = torch.backends.cudnn.benchmark
            torch.backends.cudnn.benchmark = True
        _benchmark_users += 1
    try:
        yield
    finally:
        with _BENCHMARK_LOCK:
            _benchmark_users -= 1
            if _benchmark_users == 0:
                torch.backends.cudnn.benchmark = _benchmark_before


def default_settings(device: str | torch.device, dtype: torch.dtype = torch.float32) -> dict[str, bool]:
    """The fastest known switches per device type (measured with benchmarks/bench_inference.py).

    CUDA: channels_last (tensor-core friendly) and CUDA graphs (the forward is ~600 kernels);
    cudnn.benchmark is on while CUDA calls run. The CUDA choices are not measured yet: the
    benchmark times each switch on and off. CPU: channels_last, and Winograd for wide 3x3
    convolutions in float32/float64 (in bf16/fp16 its transforms would lose too much precision).
    """
    if torch.device(device).type == "cuda":
        return {"channels_last": True, "cuda_graphs": True, "winograd": False}
    return {"channels_last": True, "cuda_graphs": False, "winograd": dtype in (torch.float32, torch.float64)}


def build_inference_model(model: GLEANStyleGANv2, device: str | torch.device = "cpu",
                          precision: str = "fp32", compile: bool = False, *,
                          winograd: bool | None = None, cuda_graphs: bool | None = None,
                          channels_last: bool | None = None) -> FastGLEAN:
    """A fast callable ``x (N, C, in, in) float32 in [-1, 1] -> (N, C, out, out) float32``.

    precision: "fp32", "bf16" or "fp16" (compute type; see the module docstring).
    compile: also use ``torch.compile`` (slow first call; see the benchmark for when it pays).
    winograd, cuda_graphs, channels_last: None takes :func:`default_settings`; ``winograd=False,
    cuda_graphs=False`` is the plain, traceable snapshot (what ONNX export wants).
    """
    dtype = torch_dtype(precision)
    settings = default_settings(device, dtype)
    for name, value in (("winograd", winograd), ("cuda_graphs", cuda_graphs), ("channels_last", channels_last)):
        if value is not None:
            settings[name] = value
    return FastGLEAN(model, dtype, device, compile=compile, **settings)
