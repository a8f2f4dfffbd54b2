"""Checkpoints: exact resume (epoch boundary and mid-epoch), atomic writes, safe loading, refusals."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import trainer_toy as T
from trainer_toy import toy  # noqa: F401  (fixture)
import zoo_core as zoo
from zoo_core.errors import IncompatibleError, WeightsError
from zoo_core.train import checkpoint as C
from zoo_core.train.callbacks import Callback

# batchnorm + dropout + random augmentation + EMA + AdamW + warmup/cosine: every kind of state
RUN = dict(max_epochs=2, batch_size=4, lr=0.02, ema=0.9, warmup_epochs=0.5, seed=7, deterministic=True,
           num_workers=0, verbose=False, tensorboard=False, plots=False)


class Crash(Callback):
    """Simulates a crash (after the checkpoint callbacks ran) at an epoch end or an optimizer step."""

    def __init__(self, *, epoch_end: int | None = None, step: int | None = None) -> None:
        self.epoch_end, self.step = epoch_end, step

    def on_optimizer_step(self, trainer):
        if trainer.state.step == self.step:
            raise KeyboardInterrupt

    def on_epoch_end(self, trainer):
        if trainer.state.epoch == self.epoch_end:
            raise KeyboardInterrupt


def _train(out: Path, *, resume=None, callbacks=(), **overrides):
    model = zoo.load("toynet", task="toytrain")
    trainer = zoo.Trainer(out_dir=out, callbacks=callbacks, **{**RUN, **overrides})
    trainer.fit(model, "toy:n=32", "toy:n=8", resume=resume)
    return trainer


def _assert_same_run(a: Path, b: Path) -> None:
    ca, cb = (torch.load(p / "last.pt", weights_only=True) for p in (a, b))
    for part in ("model", "train_model"):
        assert ca[part].keys() == cb[part].keys()
        for k in ca[part]:
            assert torch.equal(ca[part][k], cb[part][k]), f"{part}.{k} differs"
    sa, sb = ca["optimizer"]["state"], cb["optimizer"]["state"]
    assert all(torch.equal(sa[i][n], sb[i][n]) for i in sa for n in sa[i])
    assert ca["progress"] == cb["progress"] and ca["scheduler"] == cb["scheduler"]
    assert ca["metrics"] == cb["metrics"] and ca["callbacks"] == cb["callbacks"]
    assert torch.equal(ca["rng"]["torch"], cb["rng"]["torch"])


def test_resume_at_an_epoch_boundary_is_bit_exact(toy, tmp_path):
    _train(tmp_path / "straight")
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path / "resumed", callbacks=[Crash(epoch_end=1)])
    assert torch.load(tmp_path / "resumed" / "last.pt", weights_only=True)["progress"]["epoch"] == 1
    _train(tmp_path / "resumed", resume=True)  # Lightning style: the same as "last"
    _assert_same_run(tmp_path / "straight", tmp_path / "resumed")
    rows = (tmp_path / "resumed" / "metrics.csv").read_text().splitlines()
    straight = (tmp_path / "straight" / "metrics.csv").read_text().splitlines()
    assert rows[0] == straight[0]  # same columns
    assert [r.split(",")[:3] for r in rows[1:]] == [r.split(",")[:3] for r in straight[1:]]  # epoch, step, loss
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2"]  # numbered as the console prints them


def test_resume_mid_epoch_is_bit_exact_even_with_worker_processes(toy, tmp_path):
    _train(tmp_path / "straight", save_every_n_steps=3)
    with pytest.raises(KeyboardInterrupt):  # crash at step 13; the last save was at step 12 (epoch 2, batch 4)
        _train(tmp_path / "resumed", save_every_n_steps=3, callbacks=[Crash(step=13)])
    ckpt = torch.load(tmp_path / "resumed" / "last.pt", weights_only=True)
    lrs = ckpt["progress"].pop("step_lrs")  # the lr of step 12 (logged again if the resumed epoch has no step left)
    assert ckpt["progress"] == {"epoch": 1, "step": 12, "batch_in_epoch": 4, "world_size": 1, "batch_size": 4}
    assert len(lrs) == 2 and 0 < lrs[0] < RUN["lr"]
    assert ckpt["data"] == {"seed": 7, "epoch": 1, "batches_done": 4}
    # per-sample seeding makes the augmentations independent of which process reads a sample
    assert ckpt["epoch_losses"]["count"] == 4 and set(ckpt["epoch_losses"]["sums"]) >= {"loss"}
    _train(tmp_path / "resumed", save_every_n_steps=3, num_workers=2, resume=tmp_path / "resumed" / "last.pt")
    _assert_same_run(tmp_path / "straight", tmp_path / "resumed")
    rows = [(tmp_path / run / "metrics.csv").read_text().splitlines() for run in ("straight", "resumed")]
    assert [r.split(",")[:3] for r in rows[0]] == [r.split(",")[:3] for r in rows[1]]  # the resumed epoch's mean loss


def test_checkpoints_load_weights_only_and_hold_the_whole_state(toy, tmp_path):
    _train(tmp_path, max_epochs=1, precision="16-mixed")
    for name in ("last.pt", "best.pt"):
        ckpt = torch.load(tmp_path / name, weights_only=True)  # tensors and plain data only
        assert ckpt["format"] == "zoo.checkpoint" and ckpt["format_version"] == C.FORMAT_VERSION
    assert {"model", "train_model", "optimizer", "scheduler", "scaler", "progress", "rng", "data", "callbacks",
            "config", "class_names", "versions", "model_config", "task", "preprocess"} <= set(ckpt)
    assert set(ckpt["rng"]) >= {"python", "numpy", "torch"} and ckpt["scaler"]["scale"] > 0
    assert ckpt["versions"]["zoo-toytrain"] == "0.0.1" and ckpt["versions"]["torch"] == torch.__version__
    assert ckpt["class_names"] == T.CLASSES and ckpt["config"]["lr"] == 0.02
    # zoo.load reads the checkpoint's weights (the EMA ones) like any weights file
    model = zoo.load("toynet", task="toytrain", weights=tmp_path / "best.pt")
    assert torch.equal(model.net.state_dict()["fc.weight"], ckpt["model"]["fc.weight"])


def test_a_full_disk_during_save_keeps_the_previous_checkpoint(toy, tmp_path, monkeypatch):
    class FillDisk(Callback):  # after epoch 1's save, make every later write fail halfway
        def on_epoch_end(self, trainer):
            def half_then_enospc(obj, f):
                f.write(b"x" * 1000)
                raise OSError(errno.ENOSPC, "No space left on device")
            monkeypatch.setattr(C, "_serialize", half_then_enospc)

    with pytest.raises(OSError, match="previous checkpoint was kept") as err:
        _train(tmp_path, callbacks=[FillDisk()])
    assert err.value.errno == errno.ENOSPC
    ckpt = C.load_checkpoint(tmp_path / "last.pt")
    assert ckpt["progress"]["epoch"] == 1
    assert not list(tmp_path.glob(".*.tmp")) and sorted(p.name for p in tmp_path.glob("*.pt")) == \
        ["best.pt", "last.pt"]


def test_sigkill_during_a_save_leaves_the_previous_checkpoint_and_the_temp_is_cleaned(tmp_path):
    script = textwrap.dedent(f"""
        import sys, time, torch
        from zoo_core.train import checkpoint as C
        C.atomic_save({{"format": "zoo.checkpoint", "format_version": 1, "n": torch.arange(5)}}, {str(tmp_path / 'last.pt')!r})
        def slow(obj, f):
            f.write(b"partial" * 1000); f.flush()
            print("writing", flush=True); time.sleep(60)
        C._serialize = slow
        C.atomic_save({{"format": "zoo.checkpoint", "format_version": 1, "n": torch.arange(9)}}, {str(tmp_path / 'last.pt')!r})
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert torch.equal(C.load_checkpoint(tmp_path / "last.pt")["n"], torch.arange(5))
    stale = list(tmp_path.glob(".last.pt.zoo-*.tmp"))  # .<name>.zoo-<host>-<pid>-<random>.tmp
    assert len(stale) == 1
    assert C.remove_stale_temps(tmp_path) == stale and not stale[0].exists()  # what Trainer.fit does first


def test_a_checkpoint_of_another_model_or_task_is_refused_naming_the_keys(toy, tmp_path):
    _train(tmp_path, max_epochs=1)
    wide = zoo.load("toynet_wide", task="toytrain")
    trainer = zoo.Trainer(out_dir=tmp_path, **RUN)
    with pytest.raises(WeightsError, match=r"toytrain:toynet \(this model: toytrain:toynet_wide\).*shape "
                                           r"mismatch.*stem\.0\.weight.*resumes with the model it trained "
                                           r"\(toytrain:toynet, 2 classes\)"):
        trainer.fit(wide, "toy:n=32", resume="last")
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)
    ckpt["task"] = "segmentation"
    torch.save(ckpt, tmp_path / "other_task.pt")
    with pytest.raises(IncompatibleError, match="task 'segmentation'.*this model is 'toytrain'"):
        # a new out_dir: continuing from a checkpoint that is not an out_dir's own last/best.pt is a new run there
        zoo.Trainer(out_dir=tmp_path / "new", **RUN).fit(zoo.load("toynet", task="toytrain"), "toy:n=32",
                                                         resume=tmp_path / "other_task.pt")


def test_checkpoint_format_versions_migrate_or_fail_clearly(tmp_path, monkeypatch):
    C.atomic_save({"format": "zoo.checkpoint", "format_version": 99, "zoo_version": "9.0"}, tmp_path / "new.pt")
    with pytest.raises(WeightsError, match="newer zoo.*format 99.*pip install -U zoo"):
        C.load_checkpoint(tmp_path / "new.pt")
    C.atomic_save({"format": "zoo.checkpoint", "format_version": 0, "weights": {}}, tmp_path / "old.pt")
    with pytest.raises(WeightsError, match="cannot upgrade"):
        C.load_checkpoint(tmp_path / "old.pt")
    monkeypatch.setitem(C.MIGRATIONS, 0, lambda ck: {**ck, "model": ck.pop("weights")})
    upgraded = C.load_checkpoint(tmp_path / "old.pt")
    assert upgraded["format_version"] == C.FORMAT_VERSION and upgraded["model"] == {}
    torch.save({"format": "zoo.checkpoint", "format_version": 1, "evil": Path("x")}, tmp_path / "pickle.pt")
    with pytest.raises(WeightsError, match=r"refused to load .*pickle\.pt.*GLOBAL pathlib") as err:
        C.load_checkpoint(tmp_path / "pickle.pt")
    assert "weights_only=False" not in str(err.value)  # torch's advice is how such a file runs its code


def test_resuming_with_another_world_size_warns_and_restarts_the_epoch(toy, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path, save_every_n_steps=2, callbacks=[Crash(step=3)])
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)
    assert ckpt["progress"]["batch_in_epoch"] == 2
    ckpt["progress"]["world_size"] = 2
    torch.save(ckpt, tmp_path / "from_two.pt")
    with pytest.warns(UserWarning, match="world size 2 -> 1.*resumes at the start of epoch 1 instead of mid-epoch"):
        trainer = _train(tmp_path / "b", resume=tmp_path / "from_two.pt")
    assert trainer.state.step == 2 + 2 * 8  # the interrupted epoch ran again from its first batch


def test_resuming_with_another_optimizer_is_refused_naming_both(toy, tmp_path):
    _train(tmp_path / "run", max_epochs=1)
    with pytest.raises(IncompatibleError, match=r"optimizer='adamw'.*'sgd'.*resume with optimizer='adamw'"):
        _train(tmp_path / "run", resume="last", max_epochs=2, optimizer="sgd")


def test_resuming_with_settings_that_regroup_the_optimizer_is_refused_naming_the_groups(toy, tmp_path):
    _train(tmp_path / "run", max_epochs=1, weight_decay=0.0)  # one group: everything shares lr and decay
    model = zoo.load("toynet", task="toytrain")
    before = {k: v.clone() for k, v in model.net.state_dict().items()}
    trainer = zoo.Trainer(out_dir=tmp_path / "run", **{**RUN, "weight_decay": 0.05})
    with pytest.raises(IncompatibleError, match=r"groups \['all'\], this run's has \['decay', 'no_decay'\].*"
                                                r"weight_decay and backbone_lr_mult"):
        trainer.fit(model, "toy:n=32", "toy:n=8", resume="last")
    after = model.net.state_dict()  # the refusal came before the checkpoint's weights were copied in
    assert all(torch.equal(before[k], after[k].cpu()) for k in before)


def test_a_checkpoint_with_the_old_four_unmerged_groups_still_resumes_exactly(toy, tmp_path, monkeypatch):
    """Checkpoints written before equal groups were merged held backbone/head x decay/no_decay."""
    from zoo_core.train import optim

    _train(tmp_path / "straight")
    with monkeypatch.context() as patch:
        patch.setattr(optim, "merge_equal_groups", lambda groups: groups)
        with pytest.raises(KeyboardInterrupt):
            _train(tmp_path / "old", callbacks=[Crash(epoch_end=1)])
    saved = torch.load(tmp_path / "old" / "last.pt", weights_only=True)["optimizer"]["param_groups"]
    assert [g["name"] for g in saved] == ["backbone_decay", "backbone_no_decay", "head_decay", "head_no_decay"]
    _train(tmp_path / "old", resume="last")
    _assert_same_run(tmp_path / "straight", tmp_path / "old")


def test_a_new_run_never_replaces_another_runs_checkpoints_unless_told(toy, tmp_path):
    _train(tmp_path / "run", max_epochs=1, tensorboard=True)
    before = (tmp_path / "run" / "last.pt").read_bytes()
    with pytest.raises(zoo.ZooError, match=r"already holds a run \(last\.pt, best\.pt\).*resume='last'.*"
                                           r"--out-dir.*overwrite=True"):
        _train(tmp_path / "run", max_epochs=1, lr=0.5)
    assert (tmp_path / "run" / "last.pt").read_bytes() == before  # refused before anything was written
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))  # the old run's curves
    _train(tmp_path / "run", max_epochs=1, lr=0.5, overwrite=True, save_best=False)
    assert (tmp_path / "run" / "last.pt").read_bytes() != before
    # the old run's best.pt and TensorBoard events are gone: nothing of it passes for the new run's
    assert not (tmp_path / "run" / "best.pt").exists() and not (tmp_path / "run" / "tensorboard").exists()


@pytest.mark.parametrize("content, message", [
    (b"hi\n", r"junk\.pt is not a zoo training checkpoint: it is not a PyTorch file"),  # was "error: 105"
    (b"\x80\x04K\x69.", r"junk\.pt is unreadable .*not a checkpoint"),  # a bare pickle of the int 105
])
def test_a_file_that_is_not_a_training_checkpoint_is_named(tmp_path, content, message):
    path = tmp_path / "junk.pt"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match=message):
        C.load_checkpoint(path)
