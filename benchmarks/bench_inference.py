"""GLEAN inference speed: the reference path against every fast variant, in one interleaved run.

    python benchmarks/bench_inference.py --device cpu --presets cat_8x --batch 1 --reps 7
    python benchmarks/bench_inference.py --device cuda --quick --json out/bench.json

Baseline: the model's own ``impl="ref"`` path in float32, eager (it mirrors upstream MMEditing op
for op, RGB branch included). Each variant is warmed up, then the variants are timed in turns
(round r times every variant once), so a load change on a shared machine hits all of them alike;
"ratio" is the median over rounds of (baseline time / variant time) within the round. CUDA times
come from CUDA events. Outputs are compared with the baseline's float32 output on real photos
(scikit-image's chelsea/astronaut, area-resized to the input size; random weights, so this checks
that the paths compute the same function, not image quality). Needs only torch and numpy
(scikit-image optional). Random weights: timing does not depend on their values. On CUDA,
cudnn.benchmark is on for every variant (as in shared/reference/REFERENCE.md) and float32 runs
with PyTorch's default TF32 convolutions; ``--compile`` adds torch.compile variants (slow to build).
On CPU the glibc malloc setting of gleansr.tuning (what the CLI does) is on by default (``--no-malloc-tuning``);
being process-wide, it speeds the baseline up too. With 2 threads, a competing process slows every
variant down several-fold (OpenMP threads wait for each other): compare the "min" column, or use
``--threads 1``. A "best isolated conv rate" line gives the convolutions' speed alone.
The ceiling: the best rate of one large convolution (512 channels, 3x3, the widest of GLEAN's) in
fp32 and in bf16 (and fp16 on CUDA) is measured in the same run; "of ceil" is each variant's
GFLOP/s over the ceiling of its precision (Winograd does fewer multiplications than the direct
FLOPs counted, so its fraction can pass 1).
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

try:
    import gleansr  # noqa: F401
except ImportError:  # running from a checkout without installing it
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from gleansr import create_model  # noqa: E402
from gleansr.inference import FastGLEAN  # noqa: E402
from gleansr.models.fused import FusedConv, FusedStyleConv  # noqa: E402
from gleansr.precision import torch_dtype  # noqa: E402
from gleansr.tuning import keep_freed_memory_for_reuse  # noqa: E402

# FLOPs per image of the upstream forward (shared/reference/manifests/<preset>.json: flops.flops_total;
# convolutions, transposed convolutions, FIR filters and linear layers; 1 MAC = 2 FLOPs)
FLOPS_PER_IMAGE = {
    "glean_cat_8x": 335_025_198_240,
    "glean_cat_16x": 321_168_592_032,
    "glean_ffhq_16x": 705_159_034_016,
    "glean_in128out1024_4x2_300k_ffhq_celebahq": 1_105_416_254_624,
}
ALIASES = {"cat_8x": "glean_cat_8x", "cat_16x": "glean_cat_16x", "ffhq_16x": "glean_ffhq_16x",
           "in128": "glean_in128out1024_4x2_300k_ffhq_celebahq"}
BASELINE = "ref-fp32"


@dataclass
class Variant:
    name: str
    build: Callable[[torch.nn.Module], Callable[[torch.Tensor], torch.Tensor]]


def _eager(impl: str, autocast: torch.dtype | None = None):
    def build(model):
        model = copy.deepcopy(model).set_impl(impl)  # a copy: set_impl must not reach other variants

        def run(x):
            with torch.inference_mode(), torch.autocast(x.device.type, autocast, enabled=autocast is not None):
                return model(x).float()
        return run
    return build


def _fast(precision: str, channels_last: bool, compile: bool = False, cuda_graphs: bool = False,
          winograd: bool = False):
    def build(model):
        p = next(model.parameters())
        return FastGLEAN(model, torch_dtype(precision), p.device, channels_last, compile, cuda_graphs, winograd)
    return build


def variants(device: str, compile: bool) -> list[Variant]:
    v = [Variant(BASELINE, _eager("ref")), Variant("fast-impl-fp32", _eager("fast")),
         Variant("fastglean-fp32-nchw", _fast("fp32", False)),
         Variant("fastglean-fp32-cl", _fast("fp32", True)),
         Variant("fastglean-bf16-cl", _fast("bf16", True))]
    if device == "cuda":
        v[1:1] = [Variant("ref-bf16-autocast", _eager("ref", torch.bfloat16))]
        v += [Variant("fastglean-fp32-cl-graphs", _fast("fp32", True, cuda_graphs=True)),
              Variant("fastglean-bf16-cl-graphs", _fast("bf16", True, cuda_graphs=True)),
              Variant("fastglean-fp16-cl-graphs", _fast("fp16", True, cuda_graphs=True))]
        if compile:
            v += [Variant("fastglean-fp32-cl-compile-graphs", _fast("fp32", True, True, True)),
                  Variant("fastglean-bf16-cl-compile-graphs", _fast("bf16", True, True, True))]
        return v
    v += [Variant("fastglean-fp32-cl-winograd", _fast("fp32", True, winograd=True))]
    if compile:
        v += [Variant("fastglean-fp32-cl-winograd-compile", _fast("fp32", True, compile=True, winograd=True))]
    return v


def photos(in_size: int, batch: int) -> torch.Tensor:
    """(batch, 3, in, in) in [-1, 1]: real photos if scikit-image is there, else a smooth pattern."""
    try:
        from skimage import data
        imgs = [torch.from_numpy(f()).permute(2, 0, 1).float() / 255 for f in (data.chelsea, data.astronaut)]
    except ImportError:
        print("scikit-image missing: using a synthetic image for the output checks")
        r = torch.linspace(0, 1, 256)
        imgs = [torch.stack([r[:, None] * r[None, :], r[:, None].expand(256, 256), (r[None, :] * 6).sin() * .5 + .5])]
    small = [F.interpolate(im[None], size=(in_size, in_size), mode="area")[0] for im in imgs]
    return torch.stack([small[i % len(small)] for i in range(batch)]) * 2 - 1


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR (dB) of [-1, 1] outputs mapped to [0, 1] and clamped."""
    a, b = (((t.double().cpu() + 1) / 2).clamp(0, 1) for t in (a, b))
    mse = (a - b).pow(2).mean().item()
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


class Timer:
    """Wall-clock seconds of one call: CUDA events on GPU, perf_counter on CPU."""

    def __init__(self, device: str):
        self.cuda = device == "cuda"

    def __call__(self, fn, x) -> float:
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            fn(x)
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1000
        t0 = time.perf_counter()
        fn(x)
        return time.perf_counter() - t0


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def measure_memory(fn, x, device: str, weight_bytes: int) -> float:
    """MiB. CUDA: the variant's weights + max_memory_allocated growth during one call; for CUDA
    graphs (no allocation at replay) the graph's memory pool is inside memory_reserved, so the
    larger of that figure and reserved growth since the variant was built is used by the caller.
    CPU: peak RSS growth during one call (VmHWM reset through /proc/self/clear_refs) + weights;
    memory the allocator kept from earlier calls is reused and not counted, so this is a floor."""
    if device == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn(x)
        torch.cuda.synchronize()
        return (weight_bytes + torch.cuda.max_memory_allocated() - before) / 2**20
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return float("nan")
    before = _rss_kib("VmRSS")
    fn(x)
    return (weight_bytes / 1024 + _rss_kib("VmHWM") - before) / 1024


def tensor_bytes(obj) -> int:
    if isinstance(obj, torch.nn.Module):
        return sum(t.numel() * t.element_size() for t in list(obj.parameters()) + list(obj.buffers()))
    return 0


CEILING_SHAPES = ((1, 512, 32, 32), (1, 512, 64, 64), (4, 512, 32, 32))  # (N, C, H, W) inputs, C -> C, 3x3


def conv_ceiling(device: str, precision: str, reps: int) -> float:
    """GFLOP/s: the best median rate of a large 3x3 convolution (:data:`CEILING_SHAPES`, NCHW and
    channels_last) in ``precision`` on ``device``: how fast this hardware convolves at best."""
    timer, dtype, best = Timer(device), torch_dtype(precision), 0.0
    with torch.inference_mode():
        for shape in CEILING_SHAPES:
            x = torch.randn(shape, device=device).to(dtype)
            w = (torch.randn(shape[1], shape[1], 3, 3, device=device) * 0.02).to(dtype)
            flops = 2 * w.numel() * shape[0] * shape[2] * shape[3]
            for fmt in (torch.contiguous_format, torch.channels_last):
                a, wf = x.contiguous(memory_format=fmt), w.contiguous(memory_format=fmt)
                F.conv2d(a, wf, padding=1)  # warm-up: the kernel is chosen here
                t = statistics.median(timer(lambda t: F.conv2d(t, wf, padding=1), a) for _ in range(reps))
                best = max(best, flops / t / 1e9)
    return best


def precision_of(variant: str) -> str:
    """The compute precision a variant's name says (fp32 unless it names bf16 or fp16)."""
    return next((p for p in ("bf16", "fp16") if p in variant), "fp32")


def ceilings(device: str, reps: int) -> dict[str, float]:
    """GFLOP/s ceiling per precision (:func:`conv_ceiling`); fp16 on CUDA only."""
    return {p: conv_ceiling(device, p, reps) for p in ("fp32", "bf16", "fp16") if p != "fp16" or device == "cuda"}


def isolated_conv_rates(fast: FastGLEAN, x: torch.Tensor, reps: int) -> tuple[float, float, float]:
    """Times each distinct convolution of ``fast`` alone (NCHW and channels_last, best of both).

    Returns (best GFLOP/s of any conv, GFLOP/s of all convs at their best isolated rates, total
    conv GFLOP per forward)."""
    shapes: dict[tuple, list] = {}

    def record(mod, args):
        inp = args[0]
        w = mod.weight
        if isinstance(mod, FusedStyleConv) and mod.upsample:
            key = ("T", tuple(inp.shape), tuple(w.shape))
        else:
            key = ("C", tuple(inp.shape), tuple(w.shape), getattr(mod, "stride", 1), mod.padding)
        shapes.setdefault(key, [0])[0] += 1

    hooks = [m.register_forward_pre_hook(record) for m in fast.modules() if isinstance(m, (FusedConv, FusedStyleConv))]
    fast(x)
    for h in hooks:
        h.remove()
    timer, best, total_t, total_f = Timer(x.device.type), 0.0, 0.0, 0.0
    with torch.inference_mode():
        for key, (count,) in shapes.items():
            inp = torch.randn(key[1], device=x.device)
            w = torch.randn(key[2], device=x.device) * 0.05
            if key[0] == "T":
                flops = 2 * w.numel() * inp.shape[0] * inp.shape[2] * inp.shape[3]
                conv = lambda a, w: F.conv_transpose2d(a, w, stride=2)  # noqa: E731
            else:
                stride, pad = key[3], key[4]
                out_hw = ((inp.shape[2] + 2 * pad - w.shape[2]) // stride + 1) ** 2
                flops = 2 * w.numel() * inp.shape[0] * out_hw
                conv = lambda a, w, s=stride, p=pad: F.conv2d(a, w, stride=s, padding=p)  # noqa: E731
            times = []
            for fmt in (torch.contiguous_format, torch.channels_last):
                a, wf = inp.contiguous(memory_format=fmt), w.contiguous(memory_format=fmt)
                conv(a, wf)
                times.append(statistics.median(timer(lambda t: conv(t, wf), a) for _ in range(reps)))
            t = min(times)
            best = max(best, flops / t / 1e9)
            total_t += count * t
            total_f += count * flops
    return best, total_f / total_t / 1e9, total_f / 1e9


def bench(preset: str, batch: int, device: str, reps: int, warmup: int, compile: bool,
          only: set[str] | None = None, ceiling: dict[str, float] | None = None) -> list[dict]:
    torch.manual_seed(0)
    model = create_model(preset).eval().to(device)
    x = photos(model.in_size, batch).to(device)
    runs = []
    for v in variants(device, compile):
        if only and v.name != BASELINE and v.name not in only:
            continue
        if device == "cuda":
            torch.cuda.empty_cache()
            reserved0 = torch.cuda.memory_reserved()
        fn = v.build(model)
        for _ in range(warmup):
            y = fn(x)
        weights = tensor_bytes(model if v.name.startswith(("ref", "fast-impl")) else fn)  # each has its own
        mem = measure_memory(fn, x, device, weights)
        if device == "cuda" and "graphs" in v.name:
            torch.cuda.empty_cache()
            mem = max(mem, (torch.cuda.memory_reserved() - reserved0) / 2**20)
        runs.append({"variant": v.name, "fn": fn, "y": y.float().cpu(), "times": [], "mem": mem})
    timer = Timer(device)
    for r in range(reps):  # interleaved rounds; the order rotates so no variant always follows another
        for k in range(len(runs)):
            run = runs[(k + r) % len(runs)]
            run["times"].append(timer(run["fn"], x))
    base = runs[0]
    flops = FLOPS_PER_IMAGE[preset] * batch
    rows = []
    for run in runs:
        med = statistics.median(run["times"])
        ratio = statistics.median(b / t for b, t in zip(base["times"], run["times"]))
        spread = (max(run["times"]) - min(run["times"])) / med
        rows.append({
            "variant": run["variant"], "preset": preset, "batch": batch, "device": device,
            "ms_per_image": 1000 * med / batch, "ms_per_image_min": 1000 * min(run["times"]) / batch,
            "images_per_s": batch / med, "ratio": ratio, "spread": spread, "peak_mem_mib": run["mem"],
            "gflops": flops / med / 1e9, "max_abs_diff": (run["y"] - base["y"]).abs().max().item(),
            "psnr_db": psnr(run["y"], base["y"]), "reps": reps,
            "of_ceiling": flops / med / 1e9 / ceiling[precision_of(run["variant"])] if ceiling else math.nan,
        })
    fast = next((r["fn"] for r in runs if r["variant"] == "fastglean-fp32-cl"), None)
    if device == "cpu" and fast is not None:
        best, implied, conv_gflop = isolated_conv_rates(fast, x, max(3, reps // 2))
        rows.append({"variant": "isolated-convs", "preset": preset, "batch": batch, "device": device,
                     "best_conv_gflops": best, "all_convs_at_best_gflops": implied, "conv_gflop": conv_gflop})
    del runs, model
    return rows


def print_table(rows: list[dict]) -> None:
    head = f"{'variant':34} {'preset':14} {'b':>2} {'ms/img':>9} {'min':>9} {'img/s':>8} {'ratio':>6} " \
           f"{'spread':>6} {'mem MiB':>8} {'GFLOP/s':>8} {'of ceil':>7} {'maxdiff':>9} {'PSNR':>6}"
    print(head)
    for r in rows:
        if r["variant"] == "conv-ceiling":
            print("  conv ceiling: " + ", ".join(f"{p} {g:.0f} GFLOP/s" for p, g in r["gflops_by_precision"].items()))
            continue
        if r["variant"] == "isolated-convs":
            print(f"  best isolated conv rate ({r['preset']} b{r['batch']}): {r['best_conv_gflops']:.0f} GFLOP/s; "
                  f"all {r['conv_gflop']:.0f} GFLOP of convs at their best isolated rates: "
                  f"{r['all_convs_at_best_gflops']:.0f} GFLOP/s")
            continue
        print(f"{r['variant']:34} {r['preset'].removeprefix('glean_'):14} {r['batch']:>2} {r['ms_per_image']:9.2f} "
              f"{r['ms_per_image_min']:9.2f} {r['images_per_s']:8.2f} {r['ratio']:6.2f} {r['spread']:6.2f} "
              f"{r['peak_mem_mib']:8.0f} {r['gflops']:8.1f} {r['of_ceiling']:7.2f} {r['max_abs_diff']:9.2e} {r['psnr_db']:6.1f}")


def write_json(path: Path, rows: list[dict], overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise SystemExit(f"{path} exists; pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump({"torch": torch.__version__, "rows": rows}, f, indent=1)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--presets", default="cat_8x,ffhq_16x", help="comma-separated: " + ", ".join(ALIASES))
    ap.add_argument("--batch", default="1,8", help="comma-separated batch sizes")
    ap.add_argument("--reps", type=int, default=None, help="timed rounds (default: 30 on CUDA, 7 on CPU)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed calls per variant (default 3 CUDA, 1 CPU)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile variants (slow to build)")
    ap.add_argument("--quick", action="store_true", help="few repetitions (meant to finish in < 3 minutes on one GPU with the default presets and batches)")
    ap.add_argument("--threads", type=int, help="CPU threads (torch.set_num_threads); default: torch's")
    ap.add_argument("--malloc-tuning", action=argparse.BooleanOptionalAction, default=True,
                    help="CPU: keep freed large blocks for reuse, as the gleansr CLI does "
                         "(process-wide, so the baseline gets it too)")
    ap.add_argument("--variants", help="comma-separated subset of variants to time (the baseline always runs)")
    ap.add_argument("--json", type=Path, help="write the rows to this file (atomically)")
    ap.add_argument("--overwrite", action="store_true", help="allow --json to replace an existing file")
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device")
    cuda = args.device == "cuda"
    reps = args.reps or ((10 if cuda else 3) if args.quick else (30 if cuda else 7))
    warmup = args.warmup if args.warmup is not None else (3 if cuda else 1)
    presets = [ALIASES.get(p, p) for p in args.presets.split(",")]
    unknown = [p for p in presets if p not in FLOPS_PER_IMAGE]
    if unknown:
        raise SystemExit(f"unknown preset(s): {', '.join(unknown)}")
    if cuda:  # as in the reference measurements (shared/reference/REFERENCE.md), for every variant
        torch.backends.cudnn.benchmark = True
    only = set(args.variants.split(",")) if args.variants else None
    tuned = not cuda and args.malloc_tuning and keep_freed_memory_for_reuse()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, device {torch.cuda.get_device_name() if cuda else 'cpu'}, "
          f"threads {torch.get_num_threads()}, reps {reps}, warm-up {warmup}"
          + ("" if cuda else f", glibc malloc tuning {'on' if tuned else 'off'}"))
    ceiling = ceilings(args.device, reps)
    print("conv ceiling (one 512-channel 3x3 convolution, best shape and layout): "
          + ", ".join(f"{p} {g:.0f} GFLOP/s" for p, g in ceiling.items()))
    rows = [{"variant": "conv-ceiling", "device": args.device, "gflops_by_precision": ceiling}]
    for preset in presets:
        for batch in (int(b) for b in args.batch.split(",")):
            rows += bench(preset, batch, args.device, reps, warmup, args.compile, only, ceiling)
            print_table([r for r in rows if r.get("preset") == preset and r.get("batch") == batch])
            sys.stdout.flush()
    print(f"\nall results. {BASELINE}: the model's impl='ref' path, float32 eager (mirrors upstream op "
          "for op). ms/img: median; min: fastest round; ratio: median per-round speed-up over it; "
          "spread: (max-min)/median; mem: see measure_memory; GFLOP/s: upstream FLOPs (manifests) / time; "
          "of ceil: GFLOP/s over the conv ceiling of the variant's precision")
    print_table(rows)
    if args.json:
        write_json(args.json, rows, args.overwrite)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
