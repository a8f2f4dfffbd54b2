"""DDP for real: ``torchrun --nproc_per_node=2`` with gloo on the CPU against one process.

Same global batch (8 = 2 ranks x 4 vs 1 process x 8), same seed, same data order and per-sample
augmentation: DDP averages the two ranks' gradients, which is the mean over the global batch, so the
weights agree up to float summation order. Stated tolerance: atol 1e-5 on every weight after two
epochs of SGD (lr 0.05); the merged validation metrics count the same 12 samples (no padding) with the same accuracy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).parent
TOLERANCE = 1e-5


def _run(cmd: list[str], out: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "ZOO_HOME": str(tmp_path / "home")}
    for attempt in range(2):
        proc = subprocess.run(cmd + [str(HERE / "trainer_toy.py"), "ddp", str(out)], env=env, capture_output=True,
                              text=True, timeout=300)
        # gloo/TCPStore on a loaded 2-core machine sometimes aborts a rank while the group forms (C++
        # "terminate called without an active exception", no Python traceback; seen at the commit before
        # this test's code changed too): that one startup failure is retried once, in a clean folder
        if proc.returncode == 0 or attempt or "terminate called without an active exception" not in proc.stderr \
                or f"File \"{HERE.parent}" in proc.stderr:  # a Python error of ours is never retried
            break
        shutil.rmtree(out, ignore_errors=True)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


@pytest.mark.slow
def test_two_gloo_ranks_match_one_process_with_the_same_global_batch(tmp_path):
    _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=0",
          "--rdzv_backend=c10d", "--rdzv_endpoint=localhost:0"], tmp_path / "ddp", tmp_path)
    _run([sys.executable], tmp_path / "single", tmp_path)
    ddp = torch.load(tmp_path / "ddp" / "final.pt", weights_only=True)
    single = torch.load(tmp_path / "single" / "final.pt", weights_only=True)
    start = single["initial"]
    assert not torch.allclose(start["fc.weight"], single["weights"]["fc.weight"], atol=1e-3)  # it trained
    assert ddp["weights"].keys() == single["weights"].keys()
    for key, value in single["weights"].items():
        torch.testing.assert_close(ddp["weights"][key], value, atol=TOLERANCE, rtol=0)
    assert ddp["metrics"]["num_samples"] == single["metrics"]["num_samples"] == 12  # no padded duplicates
    assert ddp["metrics"]["accuracy"] == single["metrics"]["accuracy"]
    assert ddp["metrics"]["val_loss"] == pytest.approx(single["metrics"]["val_loss"], rel=TOLERANCE)
    # rank 0 wrote the only checkpoint, without DDP's "module." prefix, recording the world size
    ckpt = torch.load(tmp_path / "ddp" / "last.pt", weights_only=True)
    assert list(ckpt["model"]) == list(start) and ckpt["progress"]["world_size"] == 2
    assert ckpt["progress"]["step"] == 8 and len(ckpt["rng_per_rank"]) == 2
    assert (tmp_path / "ddp" / "metrics.csv").read_text().count("\n") == 3  # header + 2 epochs, once


def test_sync_batchnorm_conversion_shares_tensors_and_is_undone():
    from torch import nn

    from zoo_core.train.distributed import convert_sync_batchnorm, restore_modules

    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Sequential(nn.BatchNorm1d(4)))
    before = dict(net.named_modules())
    weight, mean = net[1].weight, net[1].running_mean
    originals = convert_sync_batchnorm(net)
    assert set(originals) == {"1", "2.0"}
    assert isinstance(net[1], nn.SyncBatchNorm) and isinstance(net[2][0], nn.SyncBatchNorm)
    assert net[1].weight is weight and net[1].running_mean is mean  # the optimizer sees the same tensors
    assert list(net.state_dict()) == list(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4),
                                                        nn.Sequential(nn.BatchNorm1d(4))).state_dict())
    restore_modules(net, originals)
    assert dict(net.named_modules()) == before
