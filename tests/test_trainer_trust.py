"""The Trainer never leaves a silent wrong result behind: Ctrl-C, watched metrics, splits, resume changes."""

from __future__ import annotations

import csv
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
from zoo_core.cli import main
from zoo_core.data.digits import make_digits
from zoo_core.errors import DataError, UnknownNameError
from zoo_core.train.callbacks import Callback
from zoo_core.train.interrupt import TrainingInterrupted

RUN = dict(max_epochs=2, batch_size=4, lr=0.02, warmup_epochs=0.5, seed=7, deterministic=True, num_workers=0,
           verbose=False, tensorboard=False, plots=False)


def _train(out: Path, *, resume=None, callbacks=(), **overrides) -> zoo.Trainer:
    model = zoo.load("toynet", task="toytrain")
    trainer = zoo.Trainer(out_dir=out, callbacks=callbacks, **{**RUN, **overrides})
    trainer.fit(model, "toy:n=32", "toy:n=8", resume=resume)
    return trainer


def _ckpt(run: Path) -> dict:
    return torch.load(run / "last.pt", weights_only=True)


def _rows(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


class CtrlC(Callback):
    """Sends this process a real SIGINT (as a terminal's Ctrl-C does) after optimizer step ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_optimizer_step(self, trainer):
        if trainer.state.step == self.step:
            os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_finishes_the_step_saves_last_pt_and_the_run_resumes_bit_exactly(toy, tmp_path):
    _train(tmp_path / "straight")
    with pytest.raises(TrainingInterrupted, match="resume='last'") as info:
        _train(tmp_path / "resumed", callbacks=[CtrlC(step=5)])  # mid epoch 1 (8 steps an epoch)
    assert isinstance(info.value, KeyboardInterrupt)  # code that catches KeyboardInterrupt still does
    assert str(tmp_path / "resumed" / "last.pt") in str(info.value)
    progress = _ckpt(tmp_path / "resumed")["progress"]
    assert (progress["epoch"], progress["step"], progress["batch_in_epoch"]) == (0, 5, 5)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler was put back
    _train(tmp_path / "resumed", resume="last")
    a, b = _ckpt(tmp_path / "straight"), _ckpt(tmp_path / "resumed")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert _rows(tmp_path / "straight") == [{**r, "epoch_seconds": s["epoch_seconds"]}
                                            for r, s in zip(_rows(tmp_path / "resumed"), _rows(tmp_path / "straight"))]


def test_zoo_train_ctrl_c_with_worker_processes_exits_130_naming_how_to_resume(tmp_path):
    """A real terminal Ctrl-C: SIGINT to the whole process group, DataLoader workers included."""
    out = tmp_path / "run"
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import trainer_toy
        trainer_toy.install()
        from zoo_core.train import trainer as tr
        step = tr.Trainer.optimizer_step
        def slow_step(self):
            step(self)
            print("step", self.state.step, flush=True)
            time.sleep(0.05)
        tr.Trainer.optimizer_step = slow_step
        from zoo_core.cli import main
        sys.exit(main(["train", "--model", "toynet", "--task", "toytrain", "--train", "toy:n=400",
                       "--val", "toy:n=8", "--batch-size", "4", "--num-workers", "2", "--epochs", "2",
                       "--out-dir", {str(out)!r}, "--no-tensorboard", "--no-verbose", "--no-plots"]))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        for line in proc.stdout:
            if line.strip() == "step 3":
                os.killpg(proc.pid, signal.SIGINT)  # the terminal signals the foreground process group
                break
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert "--resume last" in err and "Traceback" not in err
    step = torch.load(out / "last.pt", weights_only=True)["progress"]["step"]
    assert 3 <= step < 100  # saved at the step after the signal, not at an epoch end


def test_a_watched_metric_the_run_never_reports_is_refused_before_the_first_step(tmp_path):
    data = make_digits(tmp_path / "digits", image_size=32, limit=40)
    model = zoo.load("resnet18", task="cls", num_classes=10, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(UnknownNameError, match="'acuracy'; did you mean 'accuracy'\\? monitor='acuracy' names a metric"):
        zoo.Trainer(monitor="acuracy", max_epochs=1, out_dir=tmp_path / "a", num_workers=0,
                    verbose=False).fit(model, data)
    with pytest.raises(UnknownNameError, match="early_stopping_metric='map'"):
        zoo.Trainer(early_stopping=2, early_stopping_metric="map", max_epochs=1, out_dir=tmp_path / "b",
                    num_workers=0, verbose=False).fit(model, data)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # nothing trained
    assert not (tmp_path / "a" / "last.pt").exists()
    assert main(["train", "--model", "resnet18", "--data", str(data), "--monitor", "top1", "--num-workers", "0",
                 "--out-dir", str(tmp_path / "c"), "--no-verbose"]) == 1


def test_without_validation_only_train_loss_can_be_watched(toy, tmp_path):
    with pytest.raises(UnknownNameError, match="without validation data only train_loss"):
        zoo.Trainer(monitor="accuracy", out_dir=tmp_path, **RUN).fit(zoo.load("toynet"), "toy:n=8", val=False)


def test_a_root_with_train_but_no_val_is_refused_not_read_whole(tmp_path, capsys):
    data = make_digits(tmp_path / "digits", image_size=32, limit=40)
    for f in (data / "val").rglob("*"):
        f.unlink() if f.is_file() else None
    for d in sorted((data / "val").rglob("*"), reverse=True) + [data / "val"]:
        d.rmdir()
    model = zoo.load("resnet18", task="cls", num_classes=10, seed=0)
    with pytest.raises(DataError, match=r"holds train/ but no val/.*val=False"):
        zoo.Trainer(max_epochs=1, out_dir=tmp_path / "run", num_workers=0, verbose=False).fit(model, data)
    # the command line reads the same root for its classes and its validation split: the same refusal,
    # not a 1-class head named "train"
    assert main(["train", "--model", "resnet18", "--data", str(data), "--out-dir", str(tmp_path / "r2"),
                 "--num-workers", "0", "--no-verbose"]) == 1
    assert "no val/" in capsys.readouterr().err
    # asked for explicitly, training without validation still works
    result = zoo.Trainer(max_epochs=1, limit_train_batches=1, batch_size=4, image_size=32, out_dir=tmp_path / "r3",
                         num_workers=0, verbose=False, plots=False, tensorboard=False).fit(model, data, val=False)
    assert result.monitor == "train_loss"


class CrashAt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_optimizer_step(self, trainer):
        if trainer.state.step == self.step:
            raise KeyboardInterrupt  # a crash right after the mid-epoch save of this step


def test_resume_after_a_kill_at_an_epochs_last_batch_logs_the_lr_that_step_used(toy, tmp_path):
    _train(tmp_path / "straight", save_every_n_steps=8)
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path / "resumed", save_every_n_steps=8, callbacks=[CrashAt(step=8)])  # 8 steps an epoch
    assert _ckpt(tmp_path / "resumed")["progress"]["batch_in_epoch"] == 8
    _train(tmp_path / "resumed", resume="last", save_every_n_steps=8)
    straight, resumed = _rows(tmp_path / "straight"), _rows(tmp_path / "resumed")
    lr_cols = [k for k in straight[0] if k.startswith("lr/")]
    assert lr_cols and [[r[k] for k in lr_cols] for r in resumed] == [[r[k] for k in lr_cols] for r in straight]


def test_resume_names_what_changed_batch_size_and_a_restretched_schedule(toy, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path / "run", save_every_n_steps=3, callbacks=[CrashAt(step=4)])
    with pytest.warns(UserWarning) as caught:
        _train(tmp_path / "run", resume="last", batch_size=8, max_epochs=3)
    text = " ".join(str(w.message) for w in caught)
    assert "batch size 4 -> 8" in text and "world size" not in text
    assert "max_epochs 2 -> 3" in text and "recomputed" in text
    with pytest.warns(UserWarning, match=r"keeps the checkpoint's optimizer settings lr 0.02 \(this run: 0.5\)"):
        _train(tmp_path / "run", resume="last", batch_size=8, max_epochs=4, lr=0.5)


def test_a_class_folder_named_train_is_a_class_not_a_split(tmp_path):
    from PIL import Image

    from zoo_core.data.folders import scan_image_folder, split_dirs

    for cls in ("bus", "car", "train"):
        (tmp_path / "vehicles" / cls).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (16, 16), (i * 90, 40, 200)).save(tmp_path / "vehicles" / cls / f"{i}.png")
    assert split_dirs(tmp_path / "vehicles") == {}
    index = scan_image_folder(tmp_path / "vehicles", "train")
    assert index.class_names == ["bus", "car", "train"] and len(index.samples) == 6
    (tmp_path / "split" / "train").mkdir(parents=True)
    (tmp_path / "split" / "val").mkdir()
    (tmp_path / "split" / ".cache").mkdir()  # hidden folders never count
    assert set(split_dirs(tmp_path / "split")) == {"train", "val"}


def test_zoo_train_refuses_weights_or_options_it_cannot_apply_to_a_saved_model(tmp_path, capsys):
    zoo.load("resnet18", task="cls", num_classes=2, seed=0).save(tmp_path / "m")
    for extra in (["--weights", "default"], ["--option", "drop_rate=0.5"]):
        assert main(["train", "--model", str(tmp_path / "m"), "--data", str(tmp_path), "--out-dir",
                     str(tmp_path / "run"), *extra]) == 1
        assert "cannot apply to" in capsys.readouterr().err
