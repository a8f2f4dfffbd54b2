"""out_dir never loses a file the zoo did not write, and two runs never share one: the lock and the manifest."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
import torch

import zoo_core as zoo
from trainer_toy import toy  # noqa: F401  (fixture)
from zoo_core.cli import main
from zoo_core.data.shapes import make_shapes
from zoo_core.errors import DataError
from zoo_core.run_files import LOCK_NAME, MANIFEST_NAME, DirLock, ForeignFileError, Manifest
from zoo_core.train.callbacks import Callback
from zoo_core.train.interrupt import TrainingInterrupted

RUN = dict(max_epochs=1, batch_size=8, num_workers=0, verbose=False, tensorboard=False, plots=False)


def fit(out: Path, *, callbacks=(), resume=None, **overrides):
    trainer = zoo.Trainer(out_dir=out, callbacks=callbacks, **{**RUN, **overrides})
    return trainer.fit(zoo.load("toynet", task="toytrain"), "toy:n=16", "toy:n=8", resume=resume)


def listed(out: Path) -> set[str]:
    return set(json.loads((out / MANIFEST_NAME).read_text())["files"])


# ---- the lock ----------------------------------------------------------------------------------------------
def test_a_second_run_into_a_busy_out_dir_is_refused_naming_the_first_and_a_dead_ones_lock_is_taken_over(
        toy, tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from zoo_core.run_files import DirLock
        DirLock({str(out)!r}).acquire()
        print("locked", flush=True)
        time.sleep(120)
    """), "--epochs", "9"], stdout=subprocess.PIPE, text=True)
    try:
        out.mkdir()
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(zoo.ZooError, match=rf"out_dir .*run is in use by another run: pid {holder.pid} on host "
                                               rf"{socket.gethostname()} since 20\d\d-.*--epochs 9.*wait for that run "
                                               r"to end, or pick another out_dir"):
            fit(out)
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # nothing of the second run was written
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    assert (out / LOCK_NAME).exists()  # a killed run cannot remove its lock file...
    with pytest.warns(UserWarning, match=rf"taking over the lock left by pid {holder.pid} .*no longer running"):
        fit(out)  # ...but the kernel dropped its flock: the lock is stale
    assert not (out / LOCK_NAME).exists() and (out / "last.pt").is_file()


def test_the_lock_is_released_on_an_error_and_on_ctrl_c(toy, tmp_path):
    class Interrupt(Callback):
        def on_optimizer_step(self, trainer):
            assert (tmp_path / LOCK_NAME).is_file()  # held while the run runs
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted, match="training interrupted"):  # not the callback's failing assert
        fit(tmp_path, callbacks=[Interrupt()])
    assert not (tmp_path / LOCK_NAME).exists()
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "README.md").write_text("mine")
    with pytest.raises(ForeignFileError, match=r"model/README\.md"):  # refused in the preamble, holding the lock
        fit(tmp_path)
    assert not (tmp_path / LOCK_NAME).exists()
    with DirLock(tmp_path):  # nobody holds it: taken without a warning about a stale lock
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()


def test_a_run_started_inside_another_run_in_the_same_out_dir_is_refused(toy, tmp_path):
    class Nested(Callback):
        def on_fit_start(self, trainer):
            fit(tmp_path / "run")

    with pytest.raises(zoo.ZooError, match=rf"in use by another run: pid {os.getpid()}"):
        fit(tmp_path / "run", callbacks=[Nested()])
    assert not (tmp_path / "run" / LOCK_NAME).exists()


# ---- the manifest: only the zoo's files are replaced or deleted --------------------------------------------
def test_a_users_files_where_a_run_writes_are_never_replaced_overwrite_or_not(toy, tmp_path):
    out = tmp_path / "run"
    (out / "model").mkdir(parents=True)
    mine = {"config.yaml": "my: settings\n", "metrics.csv": "my,numbers\n", "model/README.md": "# my model\n",
            "notes.txt": "not in the way\n"}
    for name, text in mine.items():
        (out / name).write_text(text)
    for overwrite in (False, True):
        with pytest.raises(ForeignFileError, match=r"holds files that are not the zoo's at the paths a run writes "
                                                   r"\(last\.pt, .*plots/\): config\.yaml, metrics\.csv \(this out_dir "
                                                   r"has no manifest.*\); model/README\.md \(not written by model\.save"
                                                   r"\(\).*never replaces, deletes .*overwrite=True included"):
            fit(out, overwrite=overwrite)
        assert {n: (out / n).read_text() for n in mine} == mine
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "metrics.csv", "model", "notes.txt"]


def test_overwrite_removes_exactly_the_previous_runs_files(toy, tmp_path):
    out = tmp_path / "run"
    fit(out, tensorboard=True, plots=True)
    first = listed(out)
    assert {"last.pt", "best.pt", "config.yaml", "metrics.csv", "plots/toy_accuracy.png"} <= first
    assert any(n.startswith("tensorboard/events.out.tfevents.") for n in first)
    (out / "notes.txt").write_text("mine")  # not where a run writes: left alone
    (out / "tensorboard" / "theirs.tfevents").write_text("another tool's curves")
    (out / "model" / "my_package.py").write_text("# mine")
    with pytest.raises(ForeignFileError, match=r"model/my_package\.py \(not written by model\.save\(\): not listed "
                                               r"in its \.zoo-manifest\.json\); tensorboard/theirs\.tfevents \(not "
                                               r"listed in \.zoo-manifest\.json"):
        fit(out, overwrite=True)
    assert (out / "last.pt").is_file() and (out / "model" / "config.json").is_file()  # nothing was deleted
    (out / "tensorboard" / "theirs.tfevents").unlink()
    (out / "model" / "my_package.py").unlink()
    fit(out, overwrite=True, save_best=False)
    assert not (out / "best.pt").exists() and not (out / "tensorboard").exists() and not (out / "plots").exists()
    assert (out / "notes.txt").read_text() == "mine"
    assert listed(out) == {"last.pt", "config.yaml", "metrics.csv"}


def test_an_out_dir_written_before_manifests_is_recognised_by_its_zoo_checkpoint(toy, tmp_path):
    old = tmp_path / "old"
    fit(old, tensorboard=True)
    (old / MANIFEST_NAME).unlink()  # what a zoo before the manifest left
    fit(old, resume="last", max_epochs=2)  # resuming adopts the old run's files into a manifest
    assert {"last.pt", "best.pt", "config.yaml", "metrics.csv"} <= listed(old)
    (old / MANIFEST_NAME).unlink()
    fit(old, overwrite=True)  # its checkpoint says it is a zoo run: its run files are the zoo's
    assert Manifest.read(old).found

    other = tmp_path / "other"  # no manifest and no zoo checkpoint: nothing there is the zoo's
    other.mkdir()
    torch.save({"weights": torch.zeros(2)}, other / "last.pt")
    (other / "metrics.csv").write_text("epoch\n1\n")
    with pytest.raises(ForeignFileError, match=r"last\.pt, metrics\.csv \(this out_dir has no manifest and no zoo "
                                               r"checkpoint"):
        fit(other, overwrite=True)
    assert (other / "metrics.csv").read_text() == "epoch\n1\n"


def test_a_resumed_run_keeps_and_extends_the_manifest(toy, tmp_path):
    class Stop(Callback):
        def on_epoch_end(self, trainer):
            if trainer.state.epoch == 1:
                raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted, match="training interrupted"):
        fit(tmp_path, callbacks=[Stop()], max_epochs=2, plots=True)
    before = listed(tmp_path)
    assert {"last.pt", "best.pt", "config.yaml", "metrics.csv"} <= before
    fit(tmp_path, resume="last", max_epochs=2, plots=True)
    assert listed(tmp_path) == before | {"plots/toy_accuracy.png"}


def test_a_run_file_changed_after_the_zoo_wrote_it_is_the_users_and_never_replaced(toy, tmp_path):
    fit(tmp_path)
    csv_path, config = tmp_path / "metrics.csv", tmp_path / "config.yaml"
    lines = csv_path.read_text().splitlines()
    edited = "\n".join([lines[0], "one" + lines[1][1:]]) + "\n"
    csv_path.write_text(edited)
    config.write_text(config.read_text() + "# my notes on this run\n")
    mine = config.read_text()
    for resume, overwrite in (("last", False), (None, True)):
        with pytest.raises(ForeignFileError, match=r"config\.yaml, metrics\.csv \(changed after the zoo wrote it: no "
                                                   r"longer what \.zoo-manifest\.json records, so it is yours now\)\..*"
                                                   r"move them away"):
            fit(tmp_path, resume=resume, overwrite=overwrite, max_epochs=2)
        assert csv_path.read_text() == edited and config.read_text() == mine
    config.unlink()  # what the message says to do (config.yaml moved away)

    (tmp_path / MANIFEST_NAME).unlink()  # an out_dir written before manifests: a metrics.csv resume cannot read
    with pytest.raises(zoo.ZooError, match=r"cannot resume the metrics log .*metrics\.csv: line 2: epoch 'one' is "
                                           r"not a whole number\. Fix that row, or delete metrics\.csv"):
        fit(tmp_path, resume="last", max_epochs=2)
    csv_path.write_text("\n".join([lines[0], lines[1] + ",extra,cells"]) + "\n")
    with pytest.raises(zoo.ZooError, match=r"metrics\.csv: line 2 has more cells than the header has columns"):
        fit(tmp_path, resume="last", max_epochs=2)
    csv_path.unlink()  # what the message says to do
    assert fit(tmp_path, resume="last", max_epochs=2).epochs == 2


def test_an_edited_model_card_in_out_dir_is_never_regenerated(toy, tmp_path):
    fit(tmp_path)
    card = tmp_path / "model" / "README.md"
    card.write_text(card.read_text() + "\nMy notes: trained on the March data.\n")
    mine = card.read_text()
    with pytest.raises(ForeignFileError, match=r"model/README\.md \(changed after model\.save\(\) wrote it"):
        fit(tmp_path, overwrite=True)
    assert card.read_text() == mine and (tmp_path / "last.pt").is_file()


def test_resuming_from_another_runs_checkpoint_is_a_new_run_in_this_out_dir(toy, tmp_path):
    other, here = tmp_path / "other", tmp_path / "here"
    fit(other)
    fit(here, lr=0.05)  # another run
    kept = {n: (here / n).read_bytes() for n in ("last.pt", "metrics.csv", "config.yaml")}
    with pytest.raises(zoo.ZooError, match=r"already holds a run \(last\.pt, best\.pt\); a new run would replace it\. "
                                           r".*other/last\.pt is not this out_dir's own checkpoint, so a run continued "
                                           r"from it is a new run here.*overwrite=True"):
        fit(here, resume=other / "last.pt", max_epochs=2)
    assert {n: (here / n).read_bytes() for n in kept} == kept
    with pytest.warns(UserWarning, match="changed schedule"):
        fit(here, resume=other / "last.pt", max_epochs=2, overwrite=True)
    epochs = [line.split(",")[0] for line in (here / "metrics.csv").read_text().splitlines()[1:]]
    assert epochs == ["2"]  # the replaced run's row for epoch 1 is gone, not passed off as this run's
    with pytest.warns(UserWarning, match="changed schedule"):
        assert fit(tmp_path / "empty", resume=other / "last.pt", max_epochs=2).epochs == 2  # a new out_dir: fine
    with pytest.warns(UserWarning, match="changed schedule"):  # its own last.pt, by path: this run, continued
        assert fit(here, resume=here / "last.pt", max_epochs=3).epochs == 3
    assert [line.split(",")[0] for line in (here / "metrics.csv").read_text().splitlines()[1:]] == ["2", "3"]


def test_two_runs_starting_together_into_a_new_out_dir_one_wins_the_other_is_told_it_is_busy(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from zoo_core.train import out_dir as run_dir

    out = tmp_path / "new"
    both_looked = threading.Barrier(2)
    real_mkdir = os.mkdir

    def mkdir_together(path, *args, **kwargs):
        if Path(path) == out:
            both_looked.wait(timeout=30)  # each has seen no folder there: both try to create it
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir_together)
    outcomes: list = []

    def start():
        try:
            outcomes.append(run_dir.claim(out, SimpleNamespace(is_main=True, distributed=False)))
        except BaseException as exc:  # noqa: BLE001 - the outcome is what the test checks
            outcomes.append(exc)

    threads = [threading.Thread(target=start) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    won = [o for o in outcomes if isinstance(o, run_dir.OutDirClaim)]
    lost = [o for o in outcomes if not isinstance(o, run_dir.OutDirClaim)]
    assert len(won) == 1 and len(lost) == 1, outcomes
    assert type(lost[0]) is zoo.ZooError and "is in use by another run" in str(lost[0])  # not OSError: not empty
    won[0].release()
    assert not out.exists() or list(out.iterdir()) == []  # removed when the winner made it, and nothing left


def test_a_lock_whose_owner_cannot_be_written_is_not_kept(tmp_path, monkeypatch):
    from zoo_core.fileio import WriteError

    def disk_full(fd, data, offset):
        raise OSError(errno.ENOSPC, "No space left on device")

    open_fds = len(os.listdir("/proc/self/fd")) if Path("/proc/self/fd").is_dir() else None
    monkeypatch.setattr(os, "pwrite", disk_full)
    with pytest.raises(WriteError, match=r"could not write lock file .*\.zoo-lock \(No space left on device"):
        DirLock(tmp_path).acquire()
    monkeypatch.undo()
    if open_fds is not None:
        assert len(os.listdir("/proc/self/fd")) == open_fds  # its descriptor (holding the flock) was closed
    with DirLock(tmp_path):  # this process can lock the folder again: no "in use by another run: pid <itself>"
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()


def test_hidden_files_nothing_writes_block_neither_resume_nor_overwrite(toy, tmp_path):
    fit(tmp_path, tensorboard=True, plots=True)
    (tmp_path / "tensorboard" / ".DS_Store").write_bytes(b"finder")
    (tmp_path / "plots" / ".ipynb_checkpoints").mkdir()
    (tmp_path / "plots" / ".ipynb_checkpoints" / "toy_accuracy-checkpoint.png").write_bytes(b"jupyter")
    with pytest.warns(UserWarning, match="changed schedule"):
        fit(tmp_path, resume="last", max_epochs=2, tensorboard=True, plots=True)
    fit(tmp_path, overwrite=True)
    assert (tmp_path / "tensorboard" / ".DS_Store").read_bytes() == b"finder"  # left alone...
    assert [p.name for p in (tmp_path / "tensorboard").iterdir()] == [".DS_Store"]  # ...the zoo's events removed
    assert (tmp_path / "plots" / ".ipynb_checkpoints" / "toy_accuracy-checkpoint.png").read_bytes() == b"jupyter"
    (tmp_path / "model" / ".DS_Store").write_bytes(b"finder")  # model/ is replaced whole: there it counts
    with pytest.raises(ForeignFileError, match=r"model/\.DS_Store \(not written by model\.save\(\)"):
        fit(tmp_path, overwrite=True)


def test_plots_written_before_plotting_stops_are_listed_as_the_runs(toy, tmp_path, monkeypatch):
    from trainer_toy import ToyTask

    def half_then_ctrl_c(self, model, dataset, report, out_dir):
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "first.png").write_bytes(b"a plot")
        raise KeyboardInterrupt

    monkeypatch.setattr(ToyTask, "plots", half_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        fit(tmp_path, plots=True)
    assert "plots/first.png" in listed(tmp_path)
    monkeypatch.undo()
    fit(tmp_path, overwrite=True)  # the zoo's plot, not a user's file in the way
    assert not (tmp_path / "plots").exists()


# ---- generated datasets and the demo --------------------------------------------------------------------
def test_synth_rerun_replaces_only_its_own_dataset_and_never_deletes_a_users_files(tmp_path):
    root = make_shapes(tmp_path / "d", layout="masks", n_train=2, n_val=1, image_size=32, seed=0)
    assert listed(root) >= {"train/images/00000.png", "classes.txt", "shapes.json"}
    assert "files" not in json.loads((root / "shapes.json").read_text())  # the manifest says it, once
    (root / "train" / "images" / "mine.png").write_bytes(b"my own image")
    (root / "notes.txt").write_text("mine")
    make_shapes(root, layout="masks", n_train=2, n_val=1, image_size=32, seed=0)  # same dataset: reused as is
    with pytest.raises(DataError, match=r"holds other files than make_shapes's: notes\.txt, "
                                        r"train/images/mine\.png.*never deletes anything else"):
        make_shapes(root, layout="masks", n_train=3, n_val=1, image_size=32, seed=0)
    assert (root / "notes.txt").read_text() == "mine" and (root / "train/images/mine.png").is_file()
    assert main(["data", "synth", "--task", "seg", str(root), "--n-train", "3", "--size", "32"]) == 1
    assert (root / "notes.txt").read_text() == "mine"
    (root / "notes.txt").unlink()
    (root / "train" / "images" / "mine.png").unlink()
    make_shapes(root, layout="masks", n_train=3, n_val=1, image_size=32, seed=0)  # only its own: replaced
    assert len(list((root / "train" / "images").iterdir())) == 3
    assert [p.name for p in tmp_path.iterdir()] == ["d"]  # no staging folder left


def test_a_dataset_written_before_manifests_is_recognised_by_its_names(tmp_path):
    root = make_shapes(tmp_path / "d", layout="coco", n_train=2, n_val=1, image_size=32)
    (root / MANIFEST_NAME).unlink()
    (root / "val" / "extra.json").write_text("{}")
    with pytest.raises(DataError, match=r"val/extra\.json"):
        make_shapes(root, layout="coco", n_train=3, n_val=1, image_size=32)
    (root / "val" / "extra.json").unlink()
    make_shapes(root, layout="coco", n_train=3, n_val=1, image_size=32)
    assert len(json.loads((root / "train" / "annotations.json").read_text())["images"]) == 3


def toy_data(out_dir: Path, *, n: int = 16) -> str:
    """A demo generator for the toy task: writes its marker folder, returns the toy task's source string."""
    from zoo_core.data.generated import write_once

    write_once(out_dir, marker="toy.json", params={"n": n}, write=lambda tmp: {}, what="toy_data")
    return f"toy:n={n}"


def test_zoo_demo_rerun_in_the_same_dir_replaces_its_own_runs_and_keeps_a_users_files(toy, tmp_path, monkeypatch):
    from zoo_core.demo import DemoRecipe

    recipe = DemoRecipe(dataset="toy", make="test_run_files:toy_data", data={"n": 16}, model="toynet", load={},
                        train={"max_epochs": 1, "batch_size": 8, "num_workers": 0, "tensorboard": True,
                               "verbose": False}, quick_data={"n": 8})
    monkeypatch.setattr("zoo_core.demo.demo_recipes", lambda tasks=None, every=False: {"toytrain": recipe})
    assert main(["demo", "--dir", str(tmp_path)]) == 0
    (tmp_path / "runs" / "toytrain" / "notes.txt").write_text("mine")
    assert main(["demo", "--dir", str(tmp_path), "--quick"]) == 0  # other data, a new run: its own replaced
    run = tmp_path / "runs" / "toytrain"
    assert (run / "notes.txt").read_text() == "mine"
    events = [p.relative_to(run).as_posix() for p in (run / "tensorboard").iterdir()]
    assert len(events) == 1  # the first run's events are gone, the second run's are listed as the zoo's
    assert listed(run) == {"last.pt", "best.pt", "config.yaml", "metrics.csv", "plots/toy_accuracy.png", *events}
    assert json.loads((tmp_path / "data" / "toytrain" / "toy.json").read_text())["params"] == {"n": 8}
