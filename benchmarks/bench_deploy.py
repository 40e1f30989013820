"""Deployment paths side by side: PyTorch (reference, fp32, bf16) against ONNX Runtime (fp32, fp16).

    python benchmarks/bench_deploy.py                          # cat_8x and glyphs, batch 1 and 8
    python benchmarks/bench_deploy.py --runs cat_8x:1,glyphs:8 --reps 2 --cold-start --json out/deploy.json

Models: ``cat_8x`` is ``create_model("glean_cat_8x")`` with seeded random weights (timing does not
depend on their values; its inputs are scikit-image's chelsea and astronaut brought to 32 px by
MATLAB bicubic); ``glyphs`` is the bundled model on its own held-out LR samples. Variants:
``ref-fp32`` (the model's ``impl="ref"`` path, eager float32: upstream's computation, the baseline),
``torch-fp32`` and ``torch-bf16`` (gleansr's inference snapshot, Winograd in float32), ``ort-fp32``
(ONNX Runtime, all graph optimisations, its default threads: one per physical core), ``ort-fp32-noopt``
(graph optimisations off, to show what they are worth), ``ort-fp32-nospin`` (idle threads sleep
instead of spinning), ``ort-fp16``. Rounds are interleaved (each
round times every variant once) so load changes on a shared machine hit all alike; "ratio" is the
median per-round speed-up over the baseline. PSNR (dB, uint8 images after ``(y+1)/2`` and clamp,
mean over the batch) is against ``ref-fp32``'s output. Memory: peak RSS growth (VmHWM, reset
through /proc/self/clear_refs) while the variant is built and run once: its weights and buffers,
a floor where freed memory of earlier variants is reused. ONNX files are exported once into
``--onnx-dir`` and reused while their weights hash matches. ``--cold-start`` times one image
through a fresh process for both backends (process start to file written).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

try:
    import gleansr  # noqa: F401
except ImportError:  # running from a checkout without installing it
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from gleansr.imaging.imresize import imresize  # noqa: E402
from gleansr.hardware import choose_precision, cpu_flags  # noqa: E402
from gleansr.inference import build_inference_model  # noqa: E402
from gleansr.onnx.export import export_onnx, file_sha256, mean_psnr, state_dict_sha256  # noqa: E402
from gleansr.onnx.runtime import OnnxRunner  # noqa: E402
from gleansr.pipeline.images import load_image  # noqa: E402
from gleansr.zoo import SAMPLES, ZOO, create_model, load_model, weights_file  # noqa: E402

BASELINE = "ref-fp32"
REPO = Path(__file__).resolve().parents[1]
Runner = Callable[[np.ndarray], np.ndarray]  # (N, 3, in, in) float32 in [-1, 1] -> raw float32


@dataclass
class Subject:
    """A model to benchmark, its inputs, and what its exported files must carry."""

    name: str
    model: torch.nn.Module
    images: np.ndarray  # (K, 3, in, in) float32 in [-1, 1]
    weights_sha256: str


def subject(key: str) -> Subject:
    if key == "glyphs":
        model = load_model("glean_glyphs_8x")
        lr = np.stack([load_image(p).rgb for p in sorted((SAMPLES / "lr").glob("*.png"))])
        return Subject("glean_glyphs_8x", model, lr.transpose(0, 3, 1, 2) * 2 - 1,
                       file_sha256(weights_file(ZOO["glean_glyphs_8x"])))
    if key != "cat_8x":
        raise SystemExit(f"unknown model {key!r}: cat_8x or glyphs")
    torch.manual_seed(0)
    model = create_model("glean_cat_8x").eval()
    from skimage import data

    photos = [imresize(f().astype(np.float32) / 255, output_shape=(32, 32)) for f in (data.chelsea, data.astronaut)]
    images = np.stack([np.clip(p, 0, 1) for p in photos]).transpose(0, 3, 1, 2) * 2 - 1
    return Subject("glean_cat_8x", model, images.astype(np.float32), state_dict_sha256(model))


def onnx_file(s: Subject, precision: str, folder: Path) -> tuple[Path, float]:
    """The subject exported in ``precision`` (cached in ``folder``), and the export's seconds (0: cached)."""
    path = folder / f"{s.name}_{precision}.onnx"
    if path.is_file():
        runner = OnnxRunner(path, providers=["CPUExecutionProvider"])
        if runner.meta.get("weights_sha256") == s.weights_sha256:
            return path, 0.0
    t0 = time.perf_counter()
    export_onnx(s.model, path, precision=precision, name=s.name, overwrite=True)
    return path, time.perf_counter() - t0


def torch_runner(module: Callable[[torch.Tensor], torch.Tensor]) -> Runner:
    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(x)).float().numpy()
    return run


def ort_variant(path: Path, optimise: bool = True, spinning: bool = True) -> Runner:
    """An ONNX Runtime session with one option changed from OnnxRunner's settings."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if not optimise:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if not spinning:  # idle threads sleep instead of spinning: pays where other processes compete
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]


def builders(s: Subject, files: dict[str, Path]) -> dict[str, Callable[[], Runner]]:
    """Variant name -> a function building its runner (built one at a time, so memory is per variant).

    files: the exported ONNX file per precision ("fp32", optionally "fp16").
    """
    def ref() -> Runner:
        return torch_runner(copy.deepcopy(s.model).set_impl("ref"))

    cpu = ["CPUExecutionProvider"]
    out = {BASELINE: ref,
           "torch-fp32": lambda: torch_runner(build_inference_model(s.model, "cpu", "fp32")),
           "torch-bf16": lambda: torch_runner(build_inference_model(s.model, "cpu", "bf16")),
           "ort-fp32": lambda: OnnxRunner(files["fp32"], providers=cpu),
           "ort-fp32-noopt": lambda: ort_variant(files["fp32"], optimise=False),
           "ort-fp32-nospin": lambda: ort_variant(files["fp32"], spinning=False)}
    if "fp16" in files:
        out["ort-fp16"] = lambda: OnnxRunner(files["fp16"], providers=cpu)
    return out


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def build_and_measure(build: Callable[[], Runner], x: np.ndarray) -> tuple[Runner, np.ndarray, float]:
    """The runner, its first output and the peak RSS growth (MiB) of building it and that call."""
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    except OSError:
        pass
    before = _status_kib("VmRSS")
    run = build()
    y = run(x)
    return run, y, (_status_kib("VmHWM") - before) / 1024


def bench(key: str, batch: int, reps: int, folder: Path, fp16: bool) -> list[dict]:
    s = subject(key)
    x = np.ascontiguousarray(s.images[np.arange(batch) % len(s.images)])
    files = {}
    for precision in ("fp32", "fp16") if fp16 else ("fp32",):  # export before anything is timed
        files[precision], seconds = onnx_file(s, precision, folder)
        if seconds:
            print(f"exported {s.name} {precision} in {seconds:.0f} s")
    runs = []
    for name, build in builders(s, files).items():
        run, y, mem = build_and_measure(build, x)
        runs.append({"variant": name, "run": run, "y": y, "mem": mem, "times": []})
    for r in range(reps):  # interleaved; the order rotates so no variant always follows another
        for k in range(len(runs)):
            item = runs[(k + r) % len(runs)]
            t0 = time.perf_counter()
            item["run"](x)
            item["times"].append(time.perf_counter() - t0)
    base = runs[0]
    rows = []
    for item in runs:
        med = statistics.median(item["times"])
        rows.append({"variant": item["variant"], "model": s.name, "batch": batch, "reps": reps,
                     "ms_per_image": 1000 * med / batch, "ms_per_image_min": 1000 * min(item["times"]) / batch,
                     "ratio": statistics.median(b / t for b, t in zip(base["times"], item["times"])),
                     "peak_rss_mib": item["mem"], "psnr_vs_fp32_db": mean_psnr(item["y"], base["y"]),
                     "max_abs_diff": float(np.abs(item["y"] - base["y"]).max())})
    return rows


COLD_ONNX = textwrap.dedent("""
    import sys, numpy as np
    from gleansr.onnx.runtime import OnnxRunner
    from gleansr.pipeline.images import load_image, save_image
    run = OnnxRunner(sys.argv[1])
    y = run(load_image(sys.argv[2]).rgb.transpose(2, 0, 1)[None] * 2 - 1)
    save_image(sys.argv[3], np.clip((y[0] + 1) / 2, 0, 1).transpose(1, 2, 0))
    print("torch imported:", "torch" in sys.modules)
""")


def cold_start(folder: Path) -> dict[str, float]:
    """Seconds from process start to the file written, one glyph image, per backend."""
    image = sorted((SAMPLES / "lr").glob("*.png"))[0]
    model = onnx_file(subject("glyphs"), "fp32", folder)[0]
    with tempfile.TemporaryDirectory() as tmp:
        commands = {
            "torch (gleansr upscale)": [sys.executable, "-m", "gleansr.cli", "upscale", str(image), "-o", tmp,
                                        "--device", "cpu", "--quiet", "--suffix", "_torch"],
            "onnx (OnnxRunner, torch-free)": [sys.executable, "-c", COLD_ONNX, str(model), str(image),
                                              str(Path(tmp) / "onnx.png")],
        }
        seconds = {}
        for name, cmd in commands.items():
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            seconds[name] = time.perf_counter() - t0
    return seconds


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    flags = cpu_flags()
    import onnxruntime

    return {"cpu": model, "cores": os.cpu_count(), "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "bf16_flags": sorted(f for f in ("amx_bf16", "amx_tile", "avx512_bf16", "avx512_fp16", "avx2") if f in flags),
            "auto_precision": choose_precision("cpu")}


def print_table(rows: list[dict]) -> None:
    print(f"{'variant':16} {'model':16} {'b':>2} {'ms/img':>9} {'min':>9} {'ratio':>6} {'RSS MiB':>8} {'PSNR dB':>8}")
    for r in rows:
        print(f"{r['variant']:16} {r['model'].removeprefix('glean_'):16} {r['batch']:>2} {r['ms_per_image']:9.1f} "
              f"{r['ms_per_image_min']:9.1f} {r['ratio']:6.2f} {r['peak_rss_mib']:8.0f} {r['psnr_vs_fp32_db']:8.1f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", default="cat_8x:1,cat_8x:8,glyphs:1,glyphs:8", help="model:batch pairs")
    ap.add_argument("--reps", type=int, default=5, help="timed rounds")
    ap.add_argument("--no-fp16", dest="fp16", action="store_false", help="skip the ONNX Runtime fp16 variant")
    ap.add_argument("--cold-start", action="store_true", help="also time one image in a fresh process per backend")
    ap.add_argument("--onnx-dir", type=Path, default=REPO / "build" / "bench_onnx", help="exported files (cache)")
    ap.add_argument("--json", type=Path, help="write the results here (never replaces a file without --overwrite)")
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args(argv)
    if args.json and args.json.exists() and not args.overwrite:
        raise SystemExit(f"{args.json} exists; pass --overwrite to replace it")
    args.onnx_dir.mkdir(parents=True, exist_ok=True)
    facts = machine()
    print(json.dumps(facts))
    rows = []
    for item in args.runs.split(","):
        key, batch = item.split(":")
        new = bench(key, int(batch), args.reps, args.onnx_dir, args.fp16)
        print_table(new)
        rows += new
        sys.stdout.flush()
    print("\nall (ratio: speed-up over ref-fp32; PSNR: against ref-fp32's output)")
    print_table(rows)
    result = {"machine": facts, "rows": rows}
    if args.cold_start:
        result["cold_start_s"] = cold_start(args.onnx_dir)
        print("cold start, one glyph image:", {k: round(v, 2) for k, v in result["cold_start_s"].items()})
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=args.json.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(result, f, indent=1)
        os.replace(tmp, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
