"""DDP on CPU (gloo) through torchrun: ranks stay identical and match one process with the same global batch."""
from __future__ import annotations

import subprocess

import pytest
import torch

from gleansr.cli import main
from gleansr.train import glean
from gleansr.loading import read_training_checkpoint
from train_helpers import one_torch_thread  # noqa: F401 - autouse fixture
from train_helpers import PYTHON, cli_args, read_metrics, setup_run, subprocess_env

# Each rank records its networks' weights and the generator's gradients after every training step.
RECORDING_DRIVER = """
import os, sys, torch
from gleansr.train import glean
from gleansr.cli import main

snapshots = []
step = glean._train_step
def recording_step(nets, config, lr, hr):
    losses = step(nets, config, lr, hr)
    snapshots.append({**{"G." + k: v.clone() for k, v in nets.generator.state_dict().items()},
                      **{"D." + k: v.clone() for k, v in nets.discriminator.state_dict().items()},
                      **{"grad." + k: p.grad.clone() for k, p in nets.generator.named_parameters()
                         if p.grad is not None}})
    return losses
glean._train_step = recording_step
code = main(sys.argv[1:])
torch.save(snapshots, os.path.join(os.environ["SNAPSHOT_DIR"], "rank%s.pt" % os.environ["RANK"]))
sys.exit(code)
"""

# Per-rank batch 2 x 2 ranks against one process with batch 4. With minibatch-stddev groups of
# 2, upstream's strided grouping (i with i + N/2) pairs the same images as DistributedSampler's
# strided split, so even the discriminator sees identical groups.
COMMON = ("--max-iters", "2", "--save-every", "1", "--set", "mbstd_group_size=2")


# The same global batch as 2 ranks x micro-batches of 1 accumulated twice (pixel + perceptual loss
# only: the discriminator's minibatch-stddev groups are per micro-batch).
CASES = {"ddp": ((*COMMON, "--batch-size", "2"), (*COMMON, "--batch-size", "4")),
         "ddp_accumulated": ((*COMMON, "--batch-size", "1", "--set", "accumulate=2", "gan_weight=0"),
                             (*COMMON, "--batch-size", "4", "--set", "gan_weight=0"))}


@pytest.mark.parametrize("case", CASES)
def test_two_ranks_match_one_process_with_the_same_global_batch(tmp_path, monkeypatch, case):
    files = setup_run(tmp_path)
    driver = tmp_path / "driver.py"
    driver.write_text(RECORDING_DRIVER)
    env = {**subprocess_env(), "SNAPSHOT_DIR": str(tmp_path)}
    command = [PYTHON, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(driver),
               *cli_args(files, tmp_path / "ddp", *CASES[case][0])]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    rank0, rank1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert len(rank0) == len(rank1) == 2
    for step0, step1 in zip(rank0, rank1):
        for key in step0:
            assert torch.equal(step0[key], step1[key]), key

    single: list[dict] = []
    step = glean._train_step

    def recording_step(nets, config, lr, hr):
        losses = step(nets, config, lr, hr)
        single.append({**{"G." + k: v.clone() for k, v in nets.generator.state_dict().items()},
                       **{"D." + k: v.clone() for k, v in nets.discriminator.state_dict().items()},
                       **{"grad." + k: p.grad.clone() for k, p in nets.generator.named_parameters()
                          if p.grad is not None}})
        return losses

    monkeypatch.setattr(glean, "_train_step", recording_step)
    assert main(cli_args(files, tmp_path / "single", *CASES[case][1])) == 0

    ddp_metrics, single_metrics = read_metrics(tmp_path / "ddp"), read_metrics(tmp_path / "single")
    assert [r["iter"] for r in ddp_metrics] == [1, 2]  # rank 0 alone writes
    for key in ("loss_pix", "loss_perceptual", "loss_gan", "loss_d_real", "loss_d_fake"):
        assert ddp_metrics[0][key] == pytest.approx(single_metrics[0][key], rel=1e-5), key
    # The gradients match up to float rounding, which the random VGG's cancelling features amplify
    # to about 2e-4 of a tensor's largest gradient with the pixel and perceptual losses alone (as
    # much without accumulation); a wrong data split or a missing sync would differ by their own
    # size. Adam's first steps move each weight by about lr * sign(grad) = 1e-4; where a gradient is
    # near Adam's eps, the rounding shows in the weights (a few 1e-6 with the GAN loss on).
    assert len([k for k in single[0] if k.startswith("grad.")]) > 10
    for ddp_step, single_step in zip(rank0, single):
        for key in single_step:
            if key.startswith("grad."):
                scale = float(single_step[key].abs().max())
                torch.testing.assert_close(ddp_step[key], single_step[key], rtol=1e-3, atol=1e-3 * scale, msg=key)
            elif case == "ddp":
                torch.testing.assert_close(ddp_step[key], single_step[key], rtol=0, atol=2e-5, msg=key)
    checkpoint = read_training_checkpoint(tmp_path / "ddp" / "last.pt")
    assert checkpoint["data"]["world_size"] == 2 and len(checkpoint["rng"]) == 2
