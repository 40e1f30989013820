"""What ``precision="auto"`` is worth on this machine, in one run (the figures of issue #26's note).

    python benchmarks/bench_auto_precision.py --json out/auto_precision.json     # quiet machine, ~6 min on 2 cores
    python benchmarks/bench_auto_precision.py --reps 1 --batches 1,2            # smoke test

1. ``glean_cat_8x`` at batch 1 from a ``--weights`` file of random release-shaped weights (so no zoo
   figure: ``auto`` has to calibrate): upstream's computation (the model's ``impl="ref"`` path,
   float32 eager, MMEditing op for op; the baseline of ``bench_inference.py``) against gleansr's
   default (``Upscaler(path)``, ``precision="auto"``), ``--precision fp32`` and ``bf16``, in interleaved rounds
   (each round times every variant once; "ratio" is the median per-round speed-up over upstream).
2. The calibration's cost on first use: building that Upscaler with an empty cache folder (a fresh
   ``$GLEANSR_HOME``) against building it again with the verdict stored.
3. The convolution ceiling (``bench_inference.conv_ceiling``: one large 3x3 convolution, fp32 and
   bf16) and the default's rate as a fraction of the ceiling of the precision it chose.
4. Images/s at each batch size for the bundled model and cat_8x in fp32 and bf16 (the inference
   snapshot alone, interleaved rounds per batch size): the measurement behind the CPU batch default.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_inference beside this file
try:
    import gleansr  # noqa: F401
except ImportError:  # running from a checkout without installing it
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bench_inference import FLOPS_PER_IMAGE, _eager, ceilings, photos, write_json  # noqa: E402

from gleansr import Upscaler, create_model, load_model  # noqa: E402
from gleansr.hardware import device_signature  # noqa: E402
from gleansr.inference import build_inference_model  # noqa: E402
from gleansr.loading.save import save_safetensors  # noqa: E402
from gleansr.tuning import keep_freed_memory_for_reuse  # noqa: E402

CAT = "glean_cat_8x"


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (the platform's name elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def interleaved(fns: dict[str, callable], x, reps: int) -> dict[str, list[float]]:
    """Seconds per call of each function, ``reps`` rounds, the order rotating every round."""
    names, times = list(fns), {n: [] for n in fns}
    for r in range(reps):
        for k in range(len(names)):
            name = names[(k + r) % len(names)]
            start = time.perf_counter()
            fns[name](x)
            times[name].append(time.perf_counter() - start)
    return times


def timed(build):
    start = time.perf_counter()
    made = build()
    return made, time.perf_counter() - start


def default_vs_upstream(weights: Path, reps: int, ceiling: dict[str, float]) -> dict:
    """Parts 1-3: the Upscaler built twice (cold, then with the stored verdict), then timed."""
    cold, cold_s = timed(lambda: Upscaler(str(weights), device="cpu"))
    print(f"first use:  {cold_s:.1f} s to build, precision {cold.precision_reason}")
    first_line = cold.precision_reason
    del cold  # its memory: four copies of cat_8x at once would be too many for a small machine
    warm, warm_s = timed(lambda: Upscaler(str(weights), device="cpu"))
    print(f"second use: {warm_s:.1f} s to build, precision {warm.precision_reason}")
    print(f"calibration cost on first use: {cold_s - warm_s:.1f} s")
    fixed = {p: Upscaler(str(weights), device="cpu", precision=p) for p in ("fp32", "bf16")}
    x = photos(warm.in_size, 1).numpy()
    upstream = _eager("ref")(warm.model)
    variants = {"upstream (ref, fp32 eager)": (lambda a: upstream(torch.from_numpy(a)), "fp32"),
                f"gleansr default (auto: {warm.precision})": (warm.run, warm.precision),
                **{f"gleansr --precision {p}": (up.run, p) for p, up in fixed.items()}}
    for fn, _ in variants.values():
        fn(x)  # warm-up
    times = interleaved({name: fn for name, (fn, _) in variants.items()}, x, reps)
    base = times["upstream (ref, fp32 eager)"]
    rows = []
    print(f"\n| variant ({CAT}, batch 1, --weights random) | s / image | fastest | vs upstream | GFLOP/s | of ceiling |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, t in times.items():
        med, precision = statistics.median(t), variants[name][1]
        ratio = statistics.median(b / v for b, v in zip(base, t))
        gflops = FLOPS_PER_IMAGE[CAT] / med / 1e9
        frac = gflops / ceiling[precision]
        print(f"| {name} | {med:.2f} | {min(t):.2f} | {ratio:.2f}x | {gflops:.0f} | {frac:.2f} of {precision} |")
        rows.append({"variant": name, "s_per_image": med, "s_min": min(t), "ratio": ratio, "gflops": gflops,
                     "of_ceiling": frac, "precision": precision, "times": t})
    return {"first_use_build_s": cold_s, "cached_build_s": warm_s, "calibration_s": cold_s - warm_s,
            "first_line": first_line, "cached_line": warm.precision_reason, "rows": rows}


def batch_table(models: dict[str, torch.nn.Module], batches: list[int], reps: int) -> list[dict]:
    """Part 4: images/s per (model, precision, batch), fp32 and bf16 interleaved per batch size."""
    rows = []
    print("\n| model | batch | fp32 images/s | bf16 images/s |")
    print("| --- | ---: | ---: | ---: |")
    for label, model in models.items():
        nets = {p: build_inference_model(model, "cpu", p) for p in ("fp32", "bf16")}
        for b in batches:
            x = photos(model.in_size, b)
            with torch.inference_mode():
                for net in nets.values():
                    net(x)  # warm-up at this shape
                times = interleaved({p: net for p, net in nets.items()}, x, reps)
            rate = {p: b / statistics.median(t) for p, t in times.items()}
            print(f"| {label} | {b} | {rate['fp32']:.2f} | {rate['bf16']:.2f} |")
            rows += [{"model": label, "batch": b, "precision": p, "images_per_s": rate[p], "times": times[p]}
                     for p in nets]
        del nets
    for label in models:
        for p in ("fp32", "bf16"):
            best = max((r for r in rows if r["model"] == label and r["precision"] == p), key=lambda r: r["images_per_s"])
            print(f"best batch for {label} {p}: {best['batch']} ({best['images_per_s']:.2f} images/s)")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5, help="timed rounds (default 5)")
    ap.add_argument("--batches", default="1,2,4,8", help="batch sizes of the batch table (default 1,2,4,8)")
    ap.add_argument("--threads", type=int, help="CPU threads (default: torch's)")
    ap.add_argument("--json", type=Path, help="write every figure to this file (atomically)")
    ap.add_argument("--overwrite", action="store_true", help="allow --json to replace an existing file")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    tuned = keep_freed_memory_for_reuse()  # what the gleansr CLI does
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores, {device_signature('cpu')}; torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, malloc tuning {'on' if tuned else 'off'}, reps {args.reps}; "
          f"load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="gleansr-auto-") as tmp:
        os.environ["GLEANSR_HOME"] = tmp  # an empty cache folder: the first use calibrates
        torch.manual_seed(0)
        model = create_model(CAT).eval()
        weights = save_safetensors(model, Path(tmp) / "cat_8x_random.safetensors", config=model.config.to_dict())
        ceiling = ceilings("cpu", args.reps)
        print("conv ceiling: " + ", ".join(f"{p} {g:.0f} GFLOP/s" for p, g in ceiling.items()))
        result = {"cpu": cpu_name(), "signature": device_signature("cpu"), "torch": torch.__version__,
                  "threads": torch.get_num_threads(), "ceiling_gflops": ceiling,
                  "default": default_vs_upstream(Path(weights), args.reps, ceiling)}
        models = {"glean_glyphs_8x": load_model("glean_glyphs_8x"), CAT: load_model(str(weights))}
        result["batches"] = batch_table(models, [int(b) for b in args.batches.split(",")], args.reps)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    if args.json:
        write_json(args.json, [result], args.overwrite)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
