"""A tiny GLEAN trains end to end: checkpoints, metrics, samples, bank init, NaN guard, signals, export."""
from __future__ import annotations

import argparse
import math
import os
import signal
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from gleansr.loading import load_checkpoint, load_glean
from gleansr.cli import main
from gleansr.commands import export as export_command
from gleansr.imaging.imresize import imresize
from gleansr.errors import GleanError
from gleansr.models import GLEANStyleGANv2, StyleGAN2Discriminator
from gleansr.train import glean
from gleansr.train.config import load_config
from gleansr.loading import export_release, read_training_checkpoint
from train_helpers import one_torch_thread  # noqa: F401 - autouse fixture
from train_helpers import TINY_MODEL, cli_args, read_metrics, setup_run

LOSSES = ("loss_pix", "loss_perceptual", "loss_gan", "loss_d_real", "loss_d_fake")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One 6-iteration run (checkpoints every 2, validation every 3), shared by several tests."""
    root = tmp_path_factory.mktemp("trained")
    files = setup_run(root)
    assert main(cli_args(files, root / "run")) == 0
    return files, root / "run"


def test_run_writes_checkpoints_metrics_and_samples(trained):
    files, run = trained
    last, previous = read_training_checkpoint(run / "last.pt"), read_training_checkpoint(run / "previous.pt")
    assert (last["iteration"], previous["iteration"]) == (6, 4)
    assert last["data"] == {"epoch": 1, "batch": 2, "world_size": 1, "batch_size": 2}  # 4 batches per epoch
    assert set(last) >= {"optimizer_g", "optimizer_d", "scheduler", "scaler_g", "scaler_d", "rng", "config"}

    records = read_metrics(run)
    assert [r["iter"] for r in records] == [1, 2, 3, 4, 5, 6]
    for r in records:
        assert all(math.isfinite(r[k]) for k in LOSSES) and r["loss_perceptual"] > 0
    assert records[0]["lr_g"] == pytest.approx(1e-4) and records[-1]["lr_g"] < records[1]["lr_g"] < 1e-4
    assert [r["iter"] for r in records if "val_psnr" in r] == [3, 6]
    assert all(0 < r["val_psnr"] < 60 and -1 <= r["val_ssim"] <= 1 for r in records if "val_psnr" in r)
    with Image.open(run / "samples" / "iter_00000003" / "img_00.png") as strip:
        assert strip.size == (3 * 32, 32)  # LR-bicubic | SR | HR
    assert (run / "config.json").is_file()


def test_bank_and_fusion_skip_stay_frozen(trained):
    _, run = trained
    checkpoint = read_training_checkpoint(run / "last.pt")
    state = checkpoint["generator"]
    torch.manual_seed(0)  # the run's seed: the same initial weights
    model = GLEANStyleGANv2(**TINY_MODEL)
    initial = model.state_dict()
    optimised = [n for n, _ in model.named_parameters() if not n.startswith(("generator.", "fusion_skip."))]
    assert len(checkpoint["optimizer_g"]["param_groups"][0]["params"]) == len(optimised)
    for key, value in initial.items():
        frozen = key.startswith(("generator.", "fusion_skip."))
        assert torch.equal(state[key], value) == frozen or not value.is_floating_point(), key
        if key.startswith(("encoder.", "decoder.", "fusion_out.")) and key.endswith("weight"):
            assert not torch.equal(state[key], value), f"{key} did not train"


def test_bank_file_initialises_bank_and_discriminator(tmp_path):
    files = setup_run(tmp_path)
    torch.manual_seed(123)
    bank = GLEANStyleGANv2(**TINY_MODEL).generator.state_dict()
    disc = StyleGAN2Discriminator.from_config(load_config(files["config"]).discriminator_config).state_dict()
    state = {**{f"generator_ema.{k}": v for k, v in bank.items()}, **{f"discriminator.{k}": v for k, v in disc.items()}}
    torch.save({"meta": {}, "state_dict": state}, tmp_path / "stylegan2.pth")
    args = cli_args(files, tmp_path / "run", "--bank", str(tmp_path / "stylegan2.pth"), "--max-iters", "1",
                    "--set", "lr_d=0")
    assert main(args) == 0
    saved = read_training_checkpoint(tmp_path / "run" / "last.pt")
    assert all(torch.equal(saved["generator"][f"generator.{k}"], v) for k, v in bank.items())
    assert all(torch.equal(saved["discriminator"][k], v) for k, v in disc.items())  # lr_d = 0: unchanged


def _on_call(n, action):
    """A pixel loss that runs ``action`` on its n-th call (n-th iteration)."""
    calls = []

    def pixel_loss(output, target, weight=1.0):
        calls.append(1)
        loss = weight * torch.nn.functional.mse_loss(output, target)
        return action(loss) if len(calls) == n else loss

    return pixel_loss


def test_nan_loss_stops_with_one_line_and_keeps_last_checkpoint(tmp_path, monkeypatch, capsys):
    files = setup_run(tmp_path)
    monkeypatch.setattr(glean, "pixel_loss", _on_call(3, lambda loss: loss * float("nan")))
    assert main(cli_args(files, tmp_path / "run")) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (f"gleansr: error: iteration 3: loss_pix is nan; stopped without saving "
                   f"(last good checkpoint: {tmp_path / 'run' / 'last.pt'} (iteration 2))")
    kept = read_training_checkpoint(tmp_path / "run" / "last.pt")
    assert kept["iteration"] == 2 and not (tmp_path / "run" / "previous.pt").exists()
    assert all(torch.isfinite(v).all() for v in kept["generator"].values())
    assert [r["iter"] for r in read_metrics(tmp_path / "run")] == [1, 2]


def test_sigterm_saves_at_the_iteration_then_the_run_resumes(tmp_path, monkeypatch, capsys):
    files = setup_run(tmp_path)

    def send_sigterm(loss):
        os.kill(os.getpid(), signal.SIGTERM)
        return loss

    monkeypatch.setattr(glean, "pixel_loss", _on_call(3, send_sigterm))
    before = signal.getsignal(signal.SIGTERM)  # not always SIG_DFL: e.g. Ray's, after the Ray tests
    assert main(cli_args(files, tmp_path / "run")) == 128 + signal.SIGTERM
    assert "SIGTERM: saving after this iteration" in capsys.readouterr().err
    assert read_training_checkpoint(tmp_path / "run" / "last.pt")["iteration"] == 3  # not a save_every multiple
    assert signal.getsignal(signal.SIGTERM) is before  # handlers restored
    monkeypatch.undo()
    assert main(cli_args(files, tmp_path / "run")) == 0
    assert read_training_checkpoint(tmp_path / "run" / "last.pt")["iteration"] == 6
    assert [r["iter"] for r in read_metrics(tmp_path / "run")] == [1, 2, 3, 4, 5, 6]


def _export(checkpoint, out, *extra):
    parser = argparse.ArgumentParser()
    export_command.add_arguments(parser)
    return export_command.run(parser.parse_args([str(checkpoint), "--out", str(out), *extra]))


def test_export_release_and_safetensors_round_trip(trained, tmp_path):
    files, run = trained
    state = read_training_checkpoint(run / "last.pt")
    reference = GLEANStyleGANv2(**TINY_MODEL)
    reference.load_state_dict(state["generator"])
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    expected = reference.eval()(x)

    assert _export(run, tmp_path / "glean.pth") == 0  # a run folder: its latest checkpoint
    assert not zipfile.is_zipfile(tmp_path / "glean.pth")  # legacy torch.save, like the release files
    release = torch.load(tmp_path / "glean.pth", weights_only=True)
    assert release["meta"]["iter"] == 6
    assert {k.split(".")[0] for k in release["state_dict"]} == {"generator", "discriminator"}
    strict = load_checkpoint(GLEANStyleGANv2(**TINY_MODEL), tmp_path / "glean.pth").eval()
    assert torch.equal(strict(x), expected)
    assert torch.equal(load_glean(tmp_path / "glean.pth")(x), expected)
    d_config = load_config(files["config"]).discriminator_config
    disc = load_checkpoint(StyleGAN2Discriminator.from_config(d_config), tmp_path / "glean.pth",
                           prefix="discriminator.")
    assert all(torch.equal(disc.state_dict()[k], v) for k, v in state["discriminator"].items())

    assert _export(run / "last.pt", tmp_path / "glean.safetensors") == 0
    assert torch.equal(load_glean(tmp_path / "glean.safetensors")(x), expected)
    with pytest.raises(GleanError, match="already exists"):
        _export(run, tmp_path / "glean.safetensors")


def test_bf16_autocast_and_on_the_fly_degradations_train(tmp_path):
    files = setup_run(tmp_path)
    args = cli_args(files, tmp_path / "run", "--precision", "bf16", "--max-iters", "2", "--set", "degrade=true")
    assert main(args) == 0
    records = read_metrics(tmp_path / "run")
    assert len(records) == 2 and all(math.isfinite(r[k]) for r in records for k in LOSSES)
    config = read_training_checkpoint(tmp_path / "run" / "last.pt")["config"]
    assert config["precision"] == "bf16" and config["degrade"] is True


def test_premade_bicubic_lr_trains_exactly_like_lr_made_on_the_fly(tmp_path):
    files = setup_run(tmp_path)
    for hr_file in sorted(files["data"].iterdir()):  # what `gleansr make-lr` writes
        lr = imresize(np.asarray(Image.open(hr_file)), 1 / 4)
        (tmp_path / "lr").mkdir(exist_ok=True)
        Image.fromarray(lr).save(tmp_path / "lr" / hr_file.name)
    assert main(cli_args(files, tmp_path / "paired", "--max-iters", "2", "--lr-data", str(tmp_path / "lr"))) == 0
    assert main(cli_args(files, tmp_path / "on_the_fly", "--max-iters", "2")) == 0
    paired, on_the_fly = read_metrics(tmp_path / "paired"), read_metrics(tmp_path / "on_the_fly")
    assert [r["loss_pix"] for r in paired] == [r["loss_pix"] for r in on_the_fly]


def test_pixel_only_training_leaves_the_discriminator_alone(tmp_path):
    files = setup_run(tmp_path)
    args = cli_args(files, tmp_path / "run", "--max-iters", "2", "--set", "gan_weight=0", "perceptual_weight=0")
    assert main(args) == 0
    records = read_metrics(tmp_path / "run")
    assert all(r[k] == 0 for r in records for k in ("loss_gan", "loss_d_real", "loss_d_fake"))
    assert all(r["loss_pix"] > 0 for r in records)
    torch.manual_seed(0)  # the run's seed: the generator is built first, then D
    GLEANStyleGANv2(**TINY_MODEL)
    initial = StyleGAN2Discriminator.from_config(load_config(files["config"]).discriminator_config).state_dict()
    saved = read_training_checkpoint(tmp_path / "run" / "last.pt")["discriminator"]
    assert all(torch.equal(saved[k], v) for k, v in initial.items())


def test_encoder_decoder_ablation_trains_and_exports_with_its_flag(tmp_path):
    files = setup_run(tmp_path)
    args = cli_args(files, tmp_path / "run", "--max-iters", "2", "--set", "model.latent_bank=false")
    assert main(args) == 0
    state = read_training_checkpoint(tmp_path / "run" / "last.pt")
    assert state["config"]["model"]["latent_bank"] is False
    out = export_release(tmp_path / "run", tmp_path / "ablation.safetensors")
    assert load_glean(out).config.latent_bank is False
