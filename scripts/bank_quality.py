#!/usr/bin/env python3
"""How good is a glyph StyleGAN2 bank? Character coverage, fidelity and diversity, no downloaded weights.

    python scripts/bank_quality.py --data DATA --bank runs/glyphs/bank/bank.pth --bank random \
        --samples 1000 --out quality/

GLEAN's bet is that its latent bank holds a *learnt* prior. FID's Inception features know nothing
of glyphs, so this script trains its own judge: a small CNN that names the character of a 32 x 32
grey glyph (one class per file name ``uXXXX`` of the ``--data`` glyph set's train split; accuracy
reported on the held-out fonts of its test split), cached in ``--out``. Each bank's seeded samples
are then scored by it:

- coverage: how many characters are the classifier's answer for any sample / for at least 1% of
  them, and the entropy of those answers in bits (at most log2 of the number of classes): a
  collapsed bank draws a few letters only;
- confidence: the mean top softmax probability; a sample that looks like a real character gets
  a confident answer, a smudge does not;
- precision / recall (Kynkäänniemi et al. 2019) in the classifier's penultimate features, k = 3,
  against as many random training glyphs: the share of samples inside the real glyphs' k-NN
  manifold (fidelity) and of real glyphs inside the samples' (diversity); with density / coverage
  (Naeem et al. 2020), which a few wide real balls cannot fool (precision can be near 1 for a
  random bank's smudges);
- nearest-neighbour distances from each sample to those real glyphs (features, and 32 x 32
  pixels), beside the same real-to-real (leave one out): far above it means unrealistic samples,
  far below it (pixels near 0) means the bank copies its training glyphs.

A "test glyphs" row (held-out fonts scored the same way) is the ceiling, and ``--bank random``
(a randomly initialised bank shaped like the first bank) the floor. Everything is seeded.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from gleansr.atomic import atomic_torch_save, atomic_write_bytes
from gleansr.train.bank_samples import sample_images, save_grid
from gleansr.imaging.convert import tensor_to_uint8
from gleansr.data.datasets import list_images
from gleansr.loading import load_bank
from gleansr.models.stylegan2 import StyleGAN2Generator
from gleansr.pipeline.images import read_rgb_uint8

INPUT_SIZE = 32  # the classifier's view: enough to tell characters apart, cheap on one core
K_NEAREST = 3
COVERAGE_SHARE = 0.01
GRID = 8  # sample grids of GRID x GRID
READ_CHUNK = 256
CLASSIFIER_FILE = "classifier.pt"
RESULT_FILES = ("bank_quality.json", "bank_quality.md")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="glyph data set root (train/ and test/ font folders)")
    p.add_argument("--bank", action="append", required=True, metavar="[NAME=]FILE",
                   help="a bank file or run folder, or 'random': a random bank shaped like the first bank")
    p.add_argument("--samples", type=int, default=1000, help="samples per bank, and real glyphs (default 1000)")
    p.add_argument("--out", type=Path, required=True, help="folder for the JSON, markdown, grids, classifier")
    p.add_argument("--truncation", type=float, default=1.0, help="truncation psi of the samples (default 1: none)")
    p.add_argument("--train-glyphs", type=int, default=15000,
                   help="training glyphs to read, a seeded random subset: the classifier's training set and "
                        "the pool of the real reference (default 15000)")
    p.add_argument("--epochs", type=int, default=3, help="classifier training epochs (default 3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--figure", type=Path, help="also write one small PNG: a row of the first samples per bank, "
                   "in --bank order (for a README)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="for sampling the banks")
    p.add_argument("--overwrite", action="store_true", help="replace earlier results (and a mismatched classifier)")
    return p.parse_args(argv)


# -- glyphs as classifier inputs -----------------------------------------------------------------
def classifier_input(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float32 (N, 1, 32, 32) in [0, 1]: grey (mean of RGB), area-downsampled."""
    grey = torch.from_numpy(images).float().mean(dim=3, keepdim=True).movedim(3, 1) / 255.0
    return F.interpolate(grey, size=(INPUT_SIZE, INPUT_SIZE), mode="area")


@dataclass
class Glyphs:
    """Classifier inputs of one split and their class indices."""

    x: torch.Tensor
    labels: torch.Tensor


def read_glyphs(root: Path, classes: list[str], limit: int | None = None, seed: int = 0) -> Glyphs:
    """The ``<font>/<char>.png`` under ``root`` whose character is one of ``classes`` (a seeded random
    ``limit`` of them: reading 50,000 PNGs takes longer than the rest), downsampled as read."""
    files = [f for f in list_images(root) if f.stem in classes]
    if not files:
        raise SystemExit(f"{root}: no glyph images of the training characters")
    if limit is not None and limit < len(files):
        files = [files[i] for i in np.sort(np.random.default_rng(seed).choice(len(files), limit, replace=False))]
    x = torch.cat([classifier_input(np.stack([read_rgb_uint8(root / f) for f in files[i:i + READ_CHUNK]]))
                   for i in range(0, len(files), READ_CHUNK)])
    index = {c: i for i, c in enumerate(classes)}
    return Glyphs(x, torch.tensor([index[f.stem] for f in files]))


# -- the classifier ------------------------------------------------------------------------------
class GlyphClassifier(nn.Module):
    """Three conv-pool stages and a 128-wide penultimate layer (the feature space of precision/recall)."""

    FEATURES = 128

    def __init__(self, classes: int):
        super().__init__()
        def stage(c_in: int, c_out: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]

        self.body = nn.Sequential(*stage(1, 16), *stage(16, 32), *stage(32, 64), nn.Flatten(),
                                  nn.Linear(64 * (INPUT_SIZE // 8) ** 2, self.FEATURES), nn.ReLU())
        self.head = nn.Linear(self.FEATURES, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

    @torch.no_grad()
    def embed(self, x: torch.Tensor, batch: int = 512) -> tuple[np.ndarray, np.ndarray]:
        """(features (N, 128), softmax (N, classes)) as float64, in eval mode."""
        self.eval()
        feats = torch.cat([self.body(chunk) for chunk in x.split(batch)])
        return feats.double().numpy(), F.softmax(self.head(feats), dim=1).double().numpy()


def train_classifier(train: Glyphs, classes: int, epochs: int, seed: int, batch: int = 128) -> GlyphClassifier:
    """Adam on cross-entropy, shuffled with a seeded generator: the same data and seed, the same net."""
    torch.manual_seed(seed)
    net = GlyphClassifier(classes).train()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    order = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        for idx in torch.randperm(len(train.x), generator=order).split(batch):
            loss = F.cross_entropy(net(train.x[idx]), train.labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        print(f"classifier: epoch {epoch + 1}/{epochs}, last batch loss {loss.item():.3f}", file=sys.stderr)
    return net.eval()


def accuracy(net: GlyphClassifier, glyphs: Glyphs) -> float:
    _, probs = net.embed(glyphs.x)
    return float(np.mean(probs.argmax(1) == glyphs.labels.numpy()))


def cached_classifier(out: Path, data: Path, train: Glyphs, test: Glyphs | None, classes: list[str], epochs: int,
                      seed: int, overwrite: bool) -> tuple[GlyphClassifier, dict]:
    """The classifier of ``data`` from ``out/classifier.pt``, trained (and saved) when absent or stale."""
    key = {"data": str(data.resolve()), "classes": classes, "train_images": len(train.x), "epochs": epochs,
           "seed": seed, "size": INPUT_SIZE}
    path = out / CLASSIFIER_FILE
    if path.is_file():
        saved = torch.load(path, weights_only=True)
        if saved["key"] == key:
            net = GlyphClassifier(len(classes))
            net.load_state_dict(saved["state"])
            return net.eval(), saved["info"]
        if not overwrite:
            raise SystemExit(f"{path} was trained otherwise (other data, epochs or seed); pass --overwrite to retrain")
    net = train_classifier(train, len(classes), epochs, seed)
    info = {"classes": classes, "train_images": len(train.x), "train_accuracy": accuracy(net, train)}
    if test is not None:
        info.update(test_images=len(test.x), test_accuracy=accuracy(net, test))
    atomic_torch_save({"key": key, "state": net.state_dict(), "info": info}, path, overwrite=True)
    return net, info


# -- scores --------------------------------------------------------------------------------------
def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return torch.cdist(torch.from_numpy(a), torch.from_numpy(b)).numpy()


def _nearest(a: np.ndarray, b: np.ndarray, skip_self: bool = False) -> np.ndarray:
    """Distance from each row of ``a`` to its nearest row of ``b`` (``b`` is ``a``: to another row)."""
    d = _distances(a, b)
    if skip_self:
        np.fill_diagonal(d, np.inf)
    return d.min(1)


def _knn_radii(a: np.ndarray, k: int) -> np.ndarray:
    """Distance from each row of ``a`` to its k-th nearest other row: the radius of its k-NN ball."""
    return np.sort(_distances(a, a), axis=1)[:, k]  # column 0 is the row itself


def manifold_scores(fake: np.ndarray, real: np.ndarray, real_radii: np.ndarray, k: int = K_NEAREST) -> dict[str, float]:
    """k-NN manifold scores of feature rows ``fake`` against ``real`` (whose k-NN radii are ``real_radii``).

    Precision: share of fakes inside some real k-NN ball; recall: share of reals inside some fake
    k-NN ball (Kynkäänniemi et al. 2019). One real outlier's wide ball can take in a whole collapsed
    or nonsensical sample set, so also density (fakes per real ball, over k: about 1 for a matching
    distribution) and coverage (share of real balls with a fake in them) (Naeem et al. 2020).
    """
    d = _distances(fake, real)
    inside = d <= real_radii[None, :]
    return {"precision": float(inside.any(1).mean()), "recall": float((d <= _knn_radii(fake, k)[:, None]).any(0).mean()),
            "density": float(inside.sum() / (k * len(fake))), "coverage": float(inside.any(0).mean())}


def _pixels(x: torch.Tensor) -> np.ndarray:
    """Classifier inputs as flat rows scaled so that Euclidean distance is the RMS pixel difference."""
    return x.flatten(1).double().numpy() / math.sqrt(x[0].numel())


@dataclass
class Reference:
    """The real glyphs the samples are held against: features, pixels, k-NN radii, real-to-real NN."""

    features: np.ndarray
    pixels: np.ndarray
    radii: np.ndarray
    nn_feature: float
    nn_pixel: float


def reference(net: GlyphClassifier, x: torch.Tensor, k: int = K_NEAREST) -> Reference:
    """The reference set of classifier inputs ``x`` (real glyphs), with its leave-one-out NN distances."""
    features, _ = net.embed(x)
    pixels = _pixels(x)
    return Reference(features, pixels, _knn_radii(features, k), float(_nearest(features, features, True).mean()),
                     float(_nearest(pixels, pixels, True).mean()))


def quality(net: GlyphClassifier, x: torch.Tensor, real: Reference, k: int = K_NEAREST) -> dict:
    """Coverage, confidence, precision / recall and NN distances of classifier inputs ``x`` (samples)."""
    features, probs = net.embed(x)
    n, classes = probs.shape
    counts = np.bincount(probs.argmax(1), minlength=classes)
    share = counts[counts > 0] / n
    nn_feature = float(_nearest(features, real.features).mean())
    nn_pixel = float(_nearest(_pixels(x), real.pixels).mean())
    return {
        "samples": n,
        "classes_any": int((counts > 0).sum()),
        "classes_1pct": int((counts >= COVERAGE_SHARE * n).sum()),
        "entropy_bits": float(share @ np.log2(1 / share)),
        "confidence": float(probs.max(1).mean()),
        **manifold_scores(features, real.features, real.radii, k),
        "nn_feature": nn_feature, "nn_feature_ratio": nn_feature / real.nn_feature,
        "nn_pixel": nn_pixel, "nn_pixel_ratio": nn_pixel / real.nn_pixel,
    }


def _subset(glyphs: Glyphs, n: int, seed: int) -> torch.Tensor:
    """``n`` glyphs drawn without replacement with a seeded generator (all of them if fewer)."""
    if n >= len(glyphs.x):
        return glyphs.x
    return glyphs.x[np.sort(np.random.default_rng(seed).choice(len(glyphs.x), n, replace=False))]


# -- banks ---------------------------------------------------------------------------------------
def _bank_names(items: list[str]) -> dict[str, str]:
    """``NAME=FILE``, ``random``, or a run folder or file, named after its run (folder) or file stem; in order."""
    named: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep:
            p, path = Path(item), item
            if item == "random" or p.is_dir():
                name = p.name
            else:
                name = p.parent.name if p.stem == "bank" else p.stem
        base, n = name or "bank", 2
        while name in named:
            name, n = f"{base}-{n}", n + 1
        named[name] = path
    return named


def load_banks(items: list[str], seed: int) -> dict[str, StyleGAN2Generator]:
    """Each ``--bank``, loaded in eval mode; ``random`` is built like the first file's bank, seeded."""
    named = _bank_names(items)
    files = {name: load_bank(path) for name, path in named.items() if path != "random"}
    if not files:
        raise SystemExit("--bank random needs a bank file too: it copies that bank's architecture")
    config = next(iter(files.values())).generator_config
    banks = {}
    for name, path in named.items():
        if path == "random":
            torch.manual_seed(seed)
            banks[name] = StyleGAN2Generator.from_config(config).eval()
        else:
            banks[name] = files[name].build_generator(path).eval()
    return banks


def figure(rows: list[torch.Tensor], path: Path, columns: int = 8, size: int = 64, overwrite: bool = False) -> Path:
    """The first ``columns`` images of each row (N, 3, H, W) in [-1, 1], ``size`` px each, one grey PNG."""
    strips = [F.interpolate(r[:columns].float(), size=(size, size), mode="area") for r in rows]
    return save_grid(torch.cat(strips), path, columns, overwrite=overwrite)


# -- report --------------------------------------------------------------------------------------
def markdown(result: dict) -> str:
    c, real = result["classifier"], result["real"]
    held_out = f"{100 * c['test_accuracy']:.1f}% on {c['test_images']} held-out glyphs" if "test_accuracy" in c else "no test split"
    lines = [f"Bank quality: {len(c['classes'])} characters; classifier accuracy {held_out} "
             f"({100 * c['train_accuracy']:.1f}% on its {c['train_images']} training glyphs). "
             f"Real reference: {real['images']} training glyphs; real-to-real nearest neighbour "
             f"{real['nn_feature']:.3f} (features), {real['nn_pixel']:.3f} (pixels, 32 px, [0, 1]). "
             f"Max entropy {math.log2(len(c['classes'])):.2f} bits; k-NN manifolds with k = {K_NEAREST}.", "",
             "| source | samples | characters (any / >= 1%) | entropy (bits) | confidence | precision | recall "
             "| density | coverage | NN features (x real) | NN pixels (x real) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, r in result["sources"].items():
        lines.append(f"| {name} | {r['samples']} | {r['classes_any']} / {r['classes_1pct']} | {r['entropy_bits']:.2f} | "
                     f"{r['confidence']:.3f} | {r['precision']:.3f} | {r['recall']:.3f} | {r['density']:.3f} | "
                     f"{r['coverage']:.3f} | "
                     f"{r['nn_feature']:.3f} ({r['nn_feature_ratio']:.2f}) | {r['nn_pixel']:.3f} ({r['nn_pixel_ratio']:.2f}) |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.samples < 2 * K_NEAREST or not 0.0 <= args.truncation <= 1.0 or args.epochs < 1:
        raise SystemExit(f"--samples must be at least {2 * K_NEAREST}, --truncation within [0, 1], --epochs >= 1")
    existing = [args.out / f for f in RESULT_FILES if (args.out / f).exists()]
    if existing and not args.overwrite:
        raise SystemExit(f"{existing[0]} exists; pass --overwrite to replace it")
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    banks = load_banks(args.bank, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    classes = sorted({f.stem for f in list_images(args.data / "train")})
    train = read_glyphs(args.data / "train", classes, max(args.train_glyphs, args.samples), args.seed)
    test = read_glyphs(args.data / "test", classes) if (args.data / "test").is_dir() else None
    net, info = cached_classifier(args.out, args.data, train, test, classes, args.epochs, args.seed, args.overwrite)
    real = reference(net, _subset(train, args.samples, args.seed))
    result = {"data": str(args.data), "seed": args.seed, "truncation": args.truncation, "classifier": info,
              "real": {"images": len(real.features), "nn_feature": real.nn_feature, "nn_pixel": real.nn_pixel},
              "sources": {}}
    if test is not None:
        result["sources"]["test glyphs"] = quality(net, _subset(test, args.samples, args.seed), real)
    rows = []
    for name, generator in banks.items():
        images = sample_images(generator.to(device), args.samples, args.seed, args.truncation)
        rows.append(images)
        save_grid(images[:GRID * GRID], args.out / f"grid_{re.sub(r'[^A-Za-z0-9._-]+', '-', name)}.png", GRID,
                  overwrite=args.overwrite)
        result["sources"][name] = quality(net, classifier_input(tensor_to_uint8(images)), real)
        print(f"{name}: {args.samples} samples scored", file=sys.stderr)
    if args.figure:
        figure(rows, args.figure, overwrite=args.overwrite)
    text = markdown(result)
    print(text)
    atomic_write_bytes(args.out / RESULT_FILES[0], (json.dumps(result, indent=1) + "\n").encode("utf-8"),
                       overwrite=args.overwrite)
    atomic_write_bytes(args.out / RESULT_FILES[1], text.encode("utf-8"), overwrite=args.overwrite)
    return 0


if __name__ == "__main__":
    sys.exit(main())
