"""Presets train as the paper did unless told otherwise (issue 18): the pretrained bank by default,
random weights only by name, the upstream total batch stated and reachable by exact accumulation,
and a warning when --lr-data turns the in128 degradations off."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import torch
from PIL import Image

from gleansr.cli import main
from gleansr.imaging.imresize import imresize
from gleansr.models import GLEANStyleGANv2, StyleGAN2Discriminator
from gleansr import zoo
from gleansr.train import glean, glean_start
from gleansr.train.config import load_config
from gleansr.train.distributed import DistInfo
from gleansr.train.glean_start import batch_note
from gleansr.loading import read_training_checkpoint
from train_helpers import one_torch_thread  # noqa: F401 - autouse fixture
from train_helpers import TINY_MODEL, cli_args, setup_run, write_config

CAT = "glean_cat_8x"
IN128 = "glean_in128out1024_4x2_300k_ffhq_celebahq"


def _preset_config(files, preset, **changes):
    """The tiny model on top of a preset's recipe (``bank`` stays the preset's unless changed)."""
    config = json.loads(files["config"].read_text())
    del config["bank"]
    files["config"].write_text(json.dumps({**config, "preset": preset, **changes}))


def _tiny_bank_bytes() -> tuple[bytes, dict, dict]:
    """An MMGeneration-layout StyleGAN2 file matching the tiny GLEAN: bytes, bank state, D state."""
    torch.manual_seed(123)
    bank = GLEANStyleGANv2(**TINY_MODEL).generator.state_dict()
    config = load_config("glean_cat_8x", [f"model.{k}={v}" for k, v in TINY_MODEL.items()])
    disc = StyleGAN2Discriminator.from_config(config.discriminator_config)
    disc_state = disc.state_dict()
    state = {**{f"generator_ema.{k}": v for k, v in bank.items()},
             **{f"discriminator.{k}": v for k, v in disc_state.items()}}
    buffer = io.BytesIO()
    torch.save({"meta": {}, "state_dict": state}, buffer)
    return buffer.getvalue(), bank, disc_state


@pytest.fixture
def bank_server():
    """A 127.0.0.1 server holding the tiny bank; yields (url, bank state, D state)."""
    payload, bank, disc = _tiny_bank_bytes()
    name = f"stylegan2-tiny-config-f-{hashlib.sha256(payload).hexdigest()[:8]}.pth"

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}/mmgen/{name}", bank, disc
    httpd.shutdown()


def _use_bank_url(monkeypatch, url):
    """Every preset's recipe with its bank at ``url`` (the real one is on download.openmmlab.com)."""
    monkeypatch.setenv("GLEANSR_ALLOW_HTTP_LOOPBACK", "1")  # the test server is plain HTTP on 127.0.0.1
    source = zoo.WeightsSource(url.rsplit("/", 1)[1], url, url.rsplit("-", 1)[1].split(".")[0])
    for name, entry in list(zoo.ZOO.items()):
        if entry.recipe is not None:
            recipe = dataclasses.replace(entry.recipe, bank=source)
            monkeypatch.setitem(zoo.ZOO, name, dataclasses.replace(entry, recipe=recipe))


def test_a_preset_starts_from_its_pretrained_bank_fetched_and_verified(tmp_path, monkeypatch, capsys, bank_server):
    url, bank, disc = bank_server
    monkeypatch.setenv("GLEANSR_HOME", str(tmp_path / "home"))
    _use_bank_url(monkeypatch, url)
    files = setup_run(tmp_path)
    _preset_config(files, CAT)
    assert main(cli_args(files, tmp_path / "run", "--max-iters", "1", "--set", "lr_d=0")) == 0
    cached = tmp_path / "home" / "weights" / url.rsplit("/", 1)[1]
    assert cached.is_file()
    err = capsys.readouterr().err
    assert f"gleansr: bank: pretrained StyleGAN2 of {CAT} {cached}; discriminator: from the same file" in err
    saved = read_training_checkpoint(tmp_path / "run" / "last.pt")
    assert all(torch.equal(saved["generator"][f"generator.{k}"], v) for k, v in bank.items())
    assert all(torch.equal(saved["discriminator"][k], v) for k, v in disc.items())  # lr_d = 0: unchanged
    assert json.loads((tmp_path / "run" / "config.json").read_text())["bank"] == "pretrained"


def test_offline_the_bank_error_names_url_and_cache_before_any_model_is_built(tmp_path, monkeypatch, capsys):
    url = "http://127.0.0.1:9/mmgen/stylegan2-cat-config-f-official_20210327_172444-15bc485b.pth"
    monkeypatch.setenv("GLEANSR_HOME", str(tmp_path / "home"))
    _use_bank_url(monkeypatch, url)

    def no_model(*args, **kwargs):
        raise AssertionError("a model was built before the bank was found")

    monkeypatch.setattr(glean, "GLEANStyleGANv2", no_model)
    files = setup_run(tmp_path)
    _preset_config(files, CAT)
    assert main(cli_args(files, tmp_path / "run", "--max-iters", "1")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    cache = tmp_path / "home" / "weights" / url.rsplit("/", 1)[1]
    assert err[-1].startswith(f"gleansr: error: the pretrained StyleGAN2 of {CAT} (the file its latent bank and "
                              f"discriminator start from) is missing: cannot download {url} (")
    assert f"to work offline, fetch {url} yourself and save it as {cache}; " in err[-1]
    assert err[-1].endswith(f"; instead, --bank takes {glean_start.BANK_FILES} or 'random' (random bank and "
                            "discriminator: not GLEAN's recipe)")
    assert glean_start.BANK_FILES.startswith("a StyleGAN2 file (MMGeneration .pth")
    assert not (tmp_path / "run" / "last.pt").exists()


def test_random_weights_only_when_asked_by_name(tmp_path, capsys):
    files = setup_run(tmp_path)
    config = json.loads(files["config"].read_text())
    del config["bank"]
    files["config"].write_text(json.dumps(config))
    assert main(cli_args(files, tmp_path / "unsaid", "--max-iters", "1")) == 2
    assert "a config of your own must say which bank it uses: --bank FILE" in capsys.readouterr().err
    assert main(cli_args(files, tmp_path / "random", "--max-iters", "1", "--bank", "random")) == 0
    assert "bank: random (asked by --bank random)" in capsys.readouterr().err
    recorded = json.loads((tmp_path / "random" / "config.json").read_text())
    assert recorded["bank"] == "random" and read_training_checkpoint(tmp_path / "random" / "last.pt")["config"]["bank"] == "random"


def test_a_different_total_batch_is_said_once_with_the_way_to_match_it(tmp_path, capsys):
    files = setup_run(tmp_path)
    _preset_config(files, CAT, bank="random")
    assert main(cli_args(files, tmp_path / "run", "--max-iters", "1", "--set", "accumulate=2")) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if "total batch" in line]
    assert lines == [f"gleansr: warning: {CAT} was trained upstream with a total batch of 16 (2 processes x 8); "
                     "this run's is 4 (1 process x 2 x 2 accumulated); the learning rate is not rescaled; "
                     "to match it: --set accumulate=8"]
    assert read_training_checkpoint(tmp_path / "run" / "last.pt")["config"]["lr_g"] == 1e-4  # not rescaled
    preset = load_config(CAT)
    assert batch_note(preset, world_size=2) is None  # upstream's 2 x 8
    assert batch_note(dataclasses.replace(preset, accumulate=2), world_size=1) is None  # 1 x 8 x 2
    assert batch_note(dataclasses.replace(preset, batch_size=3), world_size=2).endswith(
        "to match it: --set batch_size=8 accumulate=1")


def _gradients(config, lr_img, hr, vgg):
    torch.manual_seed(0)
    nets = glean.build_nets(config, DistInfo(0, 0, 1, torch.device("cpu")), None, vgg, fresh=True)
    losses = glean._train_step(nets, config, lr_img, hr)
    grads = {name: p.grad.clone() for name, p in nets.generator.named_parameters() if p.grad is not None}
    return grads, torch.stack(losses)


def test_accumulated_micro_batches_give_the_gradient_of_one_large_batch(tmp_path):
    files = setup_run(tmp_path)
    base = load_config(files["config"], ["gan_weight=0", "batch_size=4"])
    torch.manual_seed(5)
    hr = torch.rand(4, 3, 32, 32) * 2 - 1
    lr_img = torch.nn.functional.avg_pool2d(hr, 4)
    whole, whole_losses = _gradients(base, lr_img, hr, files["vgg"])
    split, split_losses = _gradients(dataclasses.replace(base, batch_size=2, accumulate=2), lr_img, hr, files["vgg"])
    assert whole.keys() == split.keys() and len(whole) > 10
    for name in whole:
        torch.testing.assert_close(split[name], whole[name], rtol=1e-5, atol=1e-8, msg=name)
    torch.testing.assert_close(split_losses, whole_losses)
    assert whole_losses[1] > 0  # the perceptual loss took part
    alone, _ = _gradients(dataclasses.replace(base, batch_size=2), lr_img[:2], hr[:2], files["vgg"])
    assert any(not torch.allclose(alone[n], whole[n]) for n in whole)  # half the batch is another gradient


def test_lr_data_warns_that_it_turns_the_degradations_off(tmp_path, capsys):
    files = setup_run(tmp_path)
    _preset_config(files, IN128, bank="random")
    (tmp_path / "lr").mkdir()
    for hr_file in sorted(files["data"].iterdir()):
        Image.fromarray(imresize(np.asarray(Image.open(hr_file)), 1 / 4)).save(tmp_path / "lr" / hr_file.name)
    args = cli_args(files, tmp_path / "run", "--max-iters", "1", "--lr-data", str(tmp_path / "lr"))
    assert main(args) == 0
    err = capsys.readouterr().err
    assert (f"gleansr: warning: --lr-data turns off the on-the-fly degradations that define {IN128} "
            "(recorded as degrade=false in config.json)") in err
    assert json.loads((tmp_path / "run" / "config.json").read_text())["degrade"] is False
    assert main(args + ["--max-iters", "2"]) == 0  # the same command resumes: the recorded value matches


def test_init_starts_the_generator_from_an_exported_file(tmp_path, capsys):
    files = setup_run(tmp_path)
    assert main(cli_args(files, tmp_path / "first", "--max-iters", "2")) == 0
    assert main(["export", str(tmp_path / "first"), "-o", str(tmp_path / "g.safetensors")]) == 0
    first = read_training_checkpoint(tmp_path / "first" / "last.pt")["generator"]
    args = cli_args(files, tmp_path / "second", "--max-iters", "1", "--init", str(tmp_path / "g.safetensors"),
                    "--set", "lr_g=0")
    assert main(args) == 0
    assert f"generator: from {tmp_path / 'g.safetensors'} (--init)" in capsys.readouterr().err
    second = read_training_checkpoint(tmp_path / "second" / "last.pt")["generator"]
    assert all(torch.equal(second[k], v) for k, v in first.items())  # lr_g = 0: the init weights, unchanged
    write_config(tmp_path / "wider.json", bank="random", model={**TINY_MODEL, "rrdb_channels": 16})
    wider = cli_args({**files, "config": tmp_path / "wider.json"}, tmp_path / "third", "--max-iters", "1",
                     "--init", str(tmp_path / "g.safetensors"))
    assert main(wider) == 2
    assert f"--init {tmp_path / 'g.safetensors'}: its generator is 8 -> 32" in capsys.readouterr().err


def test_a_bank_without_discriminator_needs_random_d_asked_by_name(tmp_path, capsys):
    files = setup_run(tmp_path)
    _, bank, _ = _tiny_bank_bytes()
    torch.save({"meta": {}, "state_dict": {f"generator_ema.{k}": v for k, v in bank.items()}}, tmp_path / "g_only.pth")
    args = cli_args(files, tmp_path / "run", "--max-iters", "1", "--bank", str(tmp_path / "g_only.pth"))
    assert main(args) == 2
    assert (f"gleansr: error: {tmp_path / 'g_only.pth'} holds no discriminator; add --set discriminator=random "
            "to start D from random weights") in capsys.readouterr().err
    assert main(args + ["--set", "discriminator=random"]) == 0
    assert "discriminator: random (asked by discriminator=random)" in capsys.readouterr().err
    saved = read_training_checkpoint(tmp_path / "run" / "last.pt")
    assert saved["config"]["discriminator"] == "random"
    assert all(torch.equal(saved["generator"][f"generator.{k}"], v) for k, v in bank.items())
