"""scripts/prior_experiment.py: the data-scarce experiment's font subsets, step runner and table."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import load_script

prior = load_script("prior_experiment")


def _dataset(root: Path, fonts: int = 6, chars: int = 3) -> Path:
    names = [f"Font{i}" for i in range(fonts)]
    manifest = {"fonts": [{"name": n, "split": "train"} for n in names] + [{"name": "Held", "split": "test"}]}
    for n in names:
        (root / "train" / n).mkdir(parents=True)
        for c in range(chars):
            (root / "train" / n / f"u{65 + c:04x}.png").write_bytes(n.encode())
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def test_font_subsets_are_seeded_nested_hard_links(tmp_path):
    data = _dataset(tmp_path / "data")
    small = prior.font_subset(data, tmp_path / "f2_s0", 2, seed=0)
    large = prior.font_subset(data, tmp_path / "f4_s0", 4, seed=0)
    other = prior.font_subset(data, tmp_path / "f4_s1", 4, seed=1)
    names = lambda d: sorted(p.name for p in d.iterdir())  # noqa: E731
    assert len(names(small)) == 2 and len(names(large)) == 4
    assert set(names(small)) <= set(names(large))  # the smaller set is part of the larger
    assert names(other) != names(large)  # another seed, other fonts
    image = next((small / names(small)[0]).iterdir())
    assert image.samefile(data / "train" / image.parent.name / image.name)  # linked, not copied
    assert len(list(image.parent.iterdir())) == 3
    assert "Held" not in names(large)  # test fonts never train a restorer
    again = prior.font_subset(data, tmp_path / "f2_s0", 3, seed=5)  # an existing subset is kept as it is
    assert names(again) == names(small)


def test_steps_run_in_dependency_order_and_finished_ones_are_skipped(tmp_path):
    log = tmp_path / "order.txt"
    note = lambda name: [sys.executable, "-c", f"open({str(log)!r}, 'a').write({name!r} + '\\n')"]  # noqa: E731
    done = tmp_path / "done.json"
    done.write_text("{}")
    steps = [prior.Step("b", note("b"), needs=["a"], priority=(0,)),
             prior.Step("a", note("a"), priority=(1,)),
             prior.Step("c", note("c"), priority=(2,)),
             prior.Step("skipped", note("skipped"), priority=(0,), done=done)]
    prior.run_steps(steps, jobs=1, log_dir=tmp_path / "logs")
    assert log.read_text().split() == ["a", "b", "c"]


def test_a_failing_step_stops_the_run_naming_its_log(tmp_path):
    steps = [prior.Step("bad", [sys.executable, "-c", "raise SystemExit(3)"])]
    with pytest.raises(SystemExit, match="step 'bad' failed \\(exit 3\\).*bad.log"):
        prior.run_steps(steps, jobs=2, log_dir=tmp_path / "logs")


def test_aggregate_pools_seeds_image_by_image(tmp_path):
    (tmp_path / "cells").mkdir()
    fonts = ["A", "A", "B", "C"]
    for seed, shift in ((0, 1.0), (1, 3.0)):  # the trained bank is 1 dB, then 3 dB, better than random
        base = np.array([20.0, 21.0, 22.0, 23.0])
        scores = {"bicubic": {"psnr": list(base - 5), "ssim": [0.5] * 4},
                  "trained bank": {"psnr": list(base + shift), "ssim": [0.9] * 4},
                  "random bank": {"psnr": list(base), "ssim": [0.8] * 4},
                  "no bank": {"psnr": list(base + shift), "ssim": [0.9] * 4}}
        cell = {"images": 4, "fonts": 3, "per_image": {"fonts": fonts, "scores": scores}}
        (tmp_path / "cells" / f"x8_f4_s{seed}.json").write_text(json.dumps(cell))
    args = prior.parse_args(["--seeds", "0", "1", "--fonts", "4", "--factors", "8", "--iters", "10"])
    table = prior.aggregate(tmp_path, args)["x8 4 fonts"]
    assert table["seeds"] == 2
    assert table["methods"]["trained bank"]["psnr"] == pytest.approx(21.5 + 2.0)
    assert table["methods"]["trained bank"]["psnr_seed_sd"] == pytest.approx(1.0)
    random = table["paired"]["random bank"]["psnr"]
    assert random["diff"] == pytest.approx(2.0) and random["ci95"] == pytest.approx([2.0, 2.0])
    assert random["by_seed"] == pytest.approx([1.0, 3.0])  # the interval is over fonts; seeds differ
    assert table["paired"]["no bank"]["psnr"]["diff"] == pytest.approx(0.0)
    text = prior.markdown({"x8 4 fonts": table}, args)
    assert "| x8 4 fonts | **trained − random bank** | +2.00 [+2.00, +2.00] |" in text
    assert text.splitlines()[-2].endswith("| +1.00 / +3.00 |")  # trained − random bank, seed by seed



def test_shipped_bank_is_the_bundled_models_frozen_bank(tmp_path):
    import torch

    from gleansr import load_model
    from gleansr.loading import load_bank_generator

    path = prior.shipped_bank(tmp_path / "bank.safetensors")
    bank = load_bank_generator(path)
    shipped = load_model("glean_glyphs_8x").generator.state_dict()
    assert bank.state_dict().keys() == shipped.keys()
    assert all(torch.equal(v, shipped[k]) for k, v in bank.state_dict().items())
