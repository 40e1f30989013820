#!/usr/bin/env python3
"""Is the latent bank's *learnt* prior worth anything? The data-scarce experiment (issue #16).

    scripts/train_glyph_model.sh --packages   # the Debian font packages to install first
    python scripts/prior_experiment.py --work runs/glyphs --jobs 2

The bank (a StyleGAN2) sees every training font; the restoration networks see only a few fonts
(``--fonts``, drawn per seed, nested) and are tested on the held-out font designs. For every
factor (x8: 16 -> 128, x16: 8 -> 128), font count and seed, three networks train with the same
data, seed, recipe and budget and differ only in the bank:

- ``trained bank``: GLEAN with the bank trained here (frozen, as GLEAN keeps it);
- ``random bank``: GLEAN with a random frozen bank (the same features and cost, no learnt prior);
- ``no bank``: the encoder-decoder alone (the paper's ablation).

Everything lives under ``WORK/prior`` and every step resumes: training runs continue from their
checkpoints, finished steps are skipped, and rerunning the command finishes what is missing. The
result is ``WORK/prior/results.md`` (+ ``results.json``): means over seeds and, per comparison,
the per-image difference averaged over seeds with a 95% interval that resamples whole fonts.
Up to ``--jobs`` steps run at once, each on ``cores / jobs`` threads; the bank-free runs start
while the bank trains.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_ablation import font_bootstrap  # noqa: E402  (the one font bootstrap)

from gleansr.atomic import atomic_write_bytes  # noqa: E402
from gleansr.zoo import GLYPHS_8X_CONFIG  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
METHODS = ("trained bank", "random bank", "no bank")
# The bank recipe (BankConfig fields); the architecture is the shipped glyph model's bank.
BANK_RECIPE = {"size": 128, "channel_max": GLYPHS_8X_CONFIG.channel_max,
               "channel_multiplier": GLYPHS_8X_CONFIG.channel_multiplier,
               "style_channels": GLYPHS_8X_CONFIG.style_channels, "num_mlps": GLYPHS_8X_CONFIG.num_mlps,
               "augment": True, "r1_gamma": 1.0, "pl_weight": 0.0, "ema_kimg": 2.0, "lr": 0.002}
# The restoration recipe: pixel loss only (the perceptual loss needs VGG16 weights the project cannot
# have offline; without it a GAN loss would only add noise), bf16 compute.
GLEAN_RECIPE = {"batch_size": 8, "lr_g": 2e-4, "lr_d": 2e-4, "perceptual_weight": 0.0, "gan_weight": 0.0,
                "num_workers": 1, "log_every": 50, "precision": "bf16"}


@dataclass
class Step:
    name: str
    command: list[str]
    needs: list[str] = field(default_factory=list)
    priority: tuple = ()
    done: Path | None = None  # a file whose presence means the step is finished


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, default=Path("runs/glyphs"), help="train_glyph_model.sh's WORK folder")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--fonts", type=int, nargs="+", default=[4, 16], help="training fonts the restorers see")
    p.add_argument("--factors", type=int, nargs="+", default=[8, 16], choices=(8, 16))
    p.add_argument("--iters", type=int, default=400, help="iterations of every restoration run")
    p.add_argument("--bank-iters", type=int, default=3000)
    p.add_argument("--bank", help="a bank file to use instead of training one, or 'shipped': the frozen bank "
                   "inside the bundled glean_glyphs_8x (trained by train_glyph_model.sh on the same training fonts)")
    p.add_argument("--eval-limit", type=int, default=600, help="held-out images per evaluation")
    p.add_argument("--jobs", type=int, default=2, help="steps run at once")
    p.add_argument("--device", default="cpu")
    return p.parse_args(argv)


def restorer_config(factor: int) -> dict:
    model = GLYPHS_8X_CONFIG.to_dict()
    model["in_size"] = 128 // factor
    return {"model": model, **GLEAN_RECIPE}


def font_subset(data: Path, out: Path, fonts: int, seed: int) -> Path:
    """``fonts`` training fonts drawn with ``seed`` (the smaller sets are prefixes of the larger),
    hard-linked into ``out`` so the restorer sees only them."""
    if out.is_dir():
        return out
    manifest = json.loads((data / "manifest.json").read_text())
    names = sorted(f["name"] for f in manifest["fonts"] if f["split"] == "train")
    random.Random(seed).shuffle(names)
    staging = out.with_name(out.name + ".tmp")
    for name in names[:fonts]:
        (staging / name).mkdir(parents=True, exist_ok=True)
        for image in sorted((data / "train" / name).glob("*.png")):
            os.link(image, staging / name / image.name)
    staging.rename(out)
    return out


def shipped_bank(out: Path) -> Path:
    """The frozen StyleGAN2 inside the bundled model, as a bank file ``gleansr train --bank`` reads."""
    from gleansr import load_model
    from gleansr.loading.bank import BankWeights
    from gleansr.loading.save import export_bank

    if not out.exists():
        glean = load_model("glean_glyphs_8x")
        export_bank(BankWeights(generator=glean.generator.state_dict(), generator_config=glean.config.bank),
                    out)
    return out


def plan(args: argparse.Namespace, prior: Path, gleansr: list[str]) -> list[Step]:
    data = args.work / "data"
    steps: list[Step] = []
    bank = shipped_bank(prior / "shipped_bank.safetensors") if args.bank == "shipped" else args.bank
    if bank is None:
        bank = prior / "bank" / "bank.pth"
        sets = [f"{k}={v}" for k, v in BANK_RECIPE.items()]
        steps.append(Step("bank", [*gleansr, "bank", "train", "--data", str(data / "train"), "--out",
                                   str(prior / "bank"), "--set", *sets, "--batch-size", "8", "--max-iters",
                                   str(args.bank_iters), "--save-every", "100", "--log-every", "50",
                                   "--seed", "0", "--num-workers", "1", "--device", args.device, "--quiet"],
                          priority=(-1,)))
    for factor in args.factors:
        config = prior / f"restorer_x{factor}.json"
        atomic_write_bytes(config, (json.dumps(restorer_config(factor), indent=1) + "\n").encode(), overwrite=True)
        for seed in args.seeds:
            for fonts in args.fonts:
                subset = font_subset(data, prior / "subsets" / f"f{fonts}_s{seed}", fonts, seed)
                cell = f"x{factor}_f{fonts}_s{seed}"
                runs = {}
                for m, method in enumerate(METHODS):
                    run = prior / "runs" / f"{cell}_{method.replace(' ', '_')}"
                    # D is never used (GAN weight 0): it starts random in every arm
                    bank_args = {"trained bank": ["--bank", str(bank), "--set", "discriminator=random"],
                                 "random bank": ["--bank", "random"],
                                 "no bank": ["--set", "model.latent_bank=false"]}[method]
                    steps.append(Step(run.name, [*gleansr, "train", str(config), "--data", str(subset), "--out",
                                                 str(run), *bank_args, "--max-iters", str(args.iters),
                                                 "--save-every", str(max(args.iters // 4, 1)), "--seed", str(seed),
                                                 "--device", args.device, "--quiet"],
                                      needs=["bank"] if method == "trained bank" and args.bank is None else [],
                                      priority=(seed, fonts, factor, m)))
                    runs[method] = run
                result = prior / "cells" / f"{cell}.json"
                steps.append(Step(f"eval {cell}", [sys.executable, str(ROOT / "scripts" / "eval_ablation.py"),
                                                   "--hr", str(data / "test"), "--limit", str(args.eval_limit),
                                                   "--device", args.device, "--json", str(result),
                                                   *[a for method, run in runs.items()
                                                     for a in ("--model", f"{method}={run}")]],
                                  needs=[run.name for run in runs.values()], priority=(seed, fonts, factor, 9),
                                  done=result))
    return steps


def run_steps(steps: list[Step], jobs: int, log_dir: Path) -> None:
    """Run ``steps`` respecting ``needs``, at most ``jobs`` at once, lowest priority first."""
    threads = str(max(1, (os.cpu_count() or 1) // jobs))
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    pending = [s for s in steps if not (s.done and s.done.exists())]
    finished = {s.name for s in steps} - {s.name for s in pending}
    running: dict[str, tuple[subprocess.Popen, Step, float]] = {}
    log_dir.mkdir(parents=True, exist_ok=True)
    while pending or running:
        for name, (proc, step, start) in list(running.items()):
            if proc.poll() is None:
                continue
            del running[name]
            if proc.returncode != 0:
                raise SystemExit(f"step {name!r} failed (exit {proc.returncode}); see {log_dir / (name + '.log')}")
            finished.add(name)
            print(f"{time.strftime('%H:%M:%S')} done {name} ({time.time() - start:.0f} s)", flush=True)
        ready = sorted((s for s in pending if all(n in finished for n in s.needs)), key=lambda s: s.priority)
        while ready and len(running) < jobs:
            step = ready.pop(0)
            pending.remove(step)
            with open(log_dir / f"{step.name}.log", "ab") as log:  # the child keeps its own handle
                running[step.name] = (subprocess.Popen(step.command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                                       cwd=ROOT), step, time.time())
            print(f"{time.strftime('%H:%M:%S')} start {step.name}", flush=True)
        if not ready and not running and pending:
            raise SystemExit(f"steps wait for steps that cannot run: {[s.name for s in pending]}")
        time.sleep(0.5)


def aggregate(prior: Path, args: argparse.Namespace) -> dict:
    """Means over seeds, and paired differences (per image, averaged over seeds) with font intervals."""
    table: dict = {}
    for factor in args.factors:
        for fonts in args.fonts:
            cells = [json.loads((prior / "cells" / f"x{factor}_f{fonts}_s{seed}.json").read_text())
                     for seed in args.seeds]
            fonts_of = cells[0]["per_image"]["fonts"]
            metrics = list(cells[0]["per_image"]["scores"]["bicubic"])
            # (seeds, images) per method and metric
            scores = {method: {m: np.array([c["per_image"]["scores"][method][m] for c in cells]) for m in metrics}
                      for method in ("bicubic", *METHODS)}
            entry: dict = {"seeds": len(cells), "images": cells[0]["images"], "test_fonts": cells[0]["fonts"],
                           "methods": {}, "paired": {}}
            for method, s in scores.items():
                by_seed = s["psnr"].mean(1)
                entry["methods"][method] = {m: float(v.mean()) for m, v in s.items()}
                entry["methods"][method].update(psnr_seed_sd=float(by_seed.std()), psnr_by_seed=by_seed.tolist())
            for other in ("random bank", "no bank"):
                entry["paired"][other] = {}
                for m in metrics:
                    diffs = scores["trained bank"][m] - scores[other][m]
                    low, high = font_bootstrap(diffs.mean(0), fonts_of)
                    entry["paired"][other][m] = {"diff": float(diffs.mean()), "ci95": [low, high],
                                                 "by_seed": diffs.mean(1).tolist()}
            table[f"x{factor} {fonts} fonts"] = entry
    return table


def markdown(table: dict, args: argparse.Namespace) -> str:
    metrics = list(next(iter(table.values()))["paired"]["no bank"])
    lines = ["| factor, training fonts | method | " + " | ".join(m.upper() if m == "psnr" else m for m in metrics)
             + " | PSNR by seed |", "| --- | --- | " + " | ".join("---:" for _ in metrics) + " | ---: |"]
    for key, e in table.items():
        for method, v in e["methods"].items():
            cells = [f"{v[m]:.2f} ± {v['psnr_seed_sd']:.2f}" if m == "psnr" else f"{v[m]:.4f}" for m in metrics]
            seeds = " / ".join(f"{x:.2f}" for x in v["psnr_by_seed"])
            lines.append(f"| {key} | {method} | " + " | ".join(cells) + f" | {seeds} |")
        for other, p in e["paired"].items():
            cells = [f"{p[m]['diff']:+.{2 if m == 'psnr' else 4}f} [{p[m]['ci95'][0]:+.{2 if m == 'psnr' else 4}f}, "
                     f"{p[m]['ci95'][1]:+.{2 if m == 'psnr' else 4}f}]" for m in metrics]
            seeds = " / ".join(f"{x:+.2f}" for x in p["psnr"]["by_seed"])
            lines.append(f"| {key} | **trained − {other}** | " + " | ".join(cells) + f" | {seeds} |")
    e = next(iter(table.values()))
    head = (f"Held-out fonts: {e['images']} images of {e['test_fonts']} fonts per cell; {e['seeds']} seeds "
            f"(seed = initial weights, data order and which training fonts); {args.iters} iterations of batch 8 "
            "per restorer. Means over seeds (PSNR ± its standard deviation over seeds); differences are per "
            "image, averaged over seeds, with a 95% interval that resamples whole test fonts (it does not cover the "
            "spread between seeds: see PSNR by seed).")
    return head + "\n\n" + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not (args.work / "data" / "manifest.json").is_file():
        raise SystemExit(f"{args.work}/data holds no glyph data set; make it with "
                         f"WORK={args.work} UNTIL=data scripts/train_glyph_model.sh")
    prior = args.work / "prior"
    prior.mkdir(parents=True, exist_ok=True)
    gleansr = [sys.executable, "-m", "gleansr.cli"]
    run_steps(plan(args, prior, gleansr), args.jobs, prior / "logs")
    table = aggregate(prior, args)
    text = markdown(table, args)
    print(text)
    atomic_write_bytes(prior / "results.md", text.encode(), overwrite=True)
    atomic_write_bytes(prior / "results.json", (json.dumps(table, indent=1) + "\n").encode(), overwrite=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
