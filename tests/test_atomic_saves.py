"""Saving survives what a disk does: a crash mid-save, a full disk, the user's umask, a file in the way."""

from __future__ import annotations

import contextlib
import errno
import importlib
import os
import socket
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import zoo_core as zoo
import zoo_remote_plugin as remote
from trainer_toy import toy  # noqa: F401  (fixture)
from zoo_core import fileio, saving
from zoo_core.cli import main
from zoo_core.fileio import PathError, WriteError, atomic_write_bytes
from zoo_core.registry import reset_registry
from zoo_core.run_files import MANIFEST_NAME, ForeignFileError, Manifest
from zoo_core.train import checkpoint as C
from zoo_core.train.callbacks import Callback
from zoo_core.train.loggers import CSVLogger

QUIET = dict(max_epochs=1, batch_size=8, num_workers=0, verbose=False, tensorboard=False, plots=False)
#: what torch.save raises when the disk fills (a RuntimeError from inline_container.cc, not an OSError)
TORCH_FULL = ("[enforce fail at inline_container.cc:603] . PytorchStreamWriter failed writing file data/0: "
              "file write failed")


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def siblings(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def toynet():
    return zoo.load("toynet", task="toytrain")


# ---- model.save: staged in a sibling folder, renamed into place ----------------------------------------
def test_a_save_killed_between_its_files_leaves_the_previous_save_loadable(toy, tmp_path, monkeypatch):
    first = toynet()
    first.save(tmp_path / "m")
    second = toynet()
    with torch.no_grad():
        for p in second.net.parameters():
            p.add_(1.0)
    written = []

    def die_after_the_weights(path, data):
        if written:  # model.safetensors is on disk; config.json never comes
            raise KeyboardInterrupt
        written.append(path.name)
        saving.__dict__["_real_write"](path, data)

    monkeypatch.setitem(saving.__dict__, "_real_write", saving._write_file)
    monkeypatch.setattr(saving, "_write_file", die_after_the_weights)
    with pytest.raises(KeyboardInterrupt):
        second.save(tmp_path / "m")
    assert written == ["model.safetensors"]
    reloaded = zoo.load(tmp_path / "m")  # the old save, whole: its weights match its config's sha256
    x = torch.rand(2, 3, 8, 8)
    assert torch.equal(reloaded.eval()(x), first.eval()(x))
    assert siblings(tmp_path) == ["m"]  # the staging folder is gone
    monkeypatch.undo()
    second.save(tmp_path / "m")
    assert torch.equal(zoo.load(tmp_path / "m").eval()(x), second.eval()(x))


def dead_pid() -> str:
    return subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()


def temp_name(name: str, pid: str) -> str:
    """The name of a temp file/staging folder for ``name`` written by process ``pid`` of this host."""
    return fileio.temp_prefix(name).replace(f"-{os.getpid()}-", f"-{pid}-") + "0123456789ab.tmp"


def test_a_save_killed_between_its_two_renames_is_recovered_by_the_next_save(toy, tmp_path):
    model = toynet()
    model.save(tmp_path / "m")
    staged = tmp_path / temp_name("m", dead_pid())
    (tmp_path / "m").rename(staged.with_name(staged.name + ".old"))  # the old save, renamed aside
    staged.mkdir()  # the new one, never renamed in
    (staged / "model.safetensors").write_bytes(b"partial")
    model.save(tmp_path / "m")
    assert siblings(tmp_path) == ["m"] and zoo.load(tmp_path / "m").label == model.label


def test_temp_names_carry_host_and_pid_and_only_this_hosts_dead_ones_are_cleaned(toy, tmp_path, monkeypatch):
    names = []

    def spy(obj, f):
        names.extend(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp"))  # the file being written
        torch.save(obj, f)

    monkeypatch.setattr(C, "_serialize", spy)
    C.atomic_save({"format": "zoo.checkpoint", "format_version": 1}, tmp_path / "last.pt")
    host_and_pid = fileio.temp_prefix("last.pt")  # .last.pt.zoo-<host>-<pid>-
    assert socket.gethostname().split(".")[0] in host_and_pid and len(names) == 1
    assert names[0].startswith(host_and_pid) and names[0].endswith(".tmp")
    dead = dead_pid()
    ours_dead = tmp_path / temp_name("m", dead)
    ours_alive = tmp_path / temp_name("last.pt", str(os.getpid()))
    elsewhere = tmp_path / temp_name("m", dead).replace(fileio.temp_prefix("m").split(".zoo-")[1].rsplit("-", 2)[0],
                                                        "another-host")
    for folder in (ours_dead, elsewhere):
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"partial")
    ours_alive.write_bytes(b"a save in progress")
    toynet().save(tmp_path / "m")  # cleans up after this host's killed saves only
    assert not ours_dead.exists()
    assert (elsewhere / "model.safetensors").is_file()  # another host's save may be running: its pid means nothing here
    assert ours_alive.read_bytes() == b"a save in progress"
    assert C.remove_stale_temps(tmp_path) == [] and "another-host" in elsewhere.name


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="renameat2(RENAME_EXCHANGE) is Linux's")
def test_a_resave_swaps_the_folders_in_one_step_so_the_path_never_disappears(toy, tmp_path, monkeypatch):
    from zoo_core import fileio

    model = toynet()
    model.save(tmp_path / "m")
    renamed: list[tuple[str, str]] = []
    real_rename = os.rename
    monkeypatch.setattr(fileio.os, "rename", lambda a, b: renamed.append((str(a), str(b))) or real_rename(a, b))
    model.save(tmp_path / "m")  # over the previous save: no rename of m aside, one exchange
    assert not any(a == str(tmp_path / "m") for a, _ in renamed)
    assert siblings(tmp_path) == ["m"] and zoo.load(tmp_path / "m").label == model.label
    monkeypatch.setattr(fileio, "exchange_paths", lambda a, b: False)  # a filesystem without it: two renames
    model.save(tmp_path / "m")
    assert any(a == str(tmp_path / "m") for a, _ in renamed) and siblings(tmp_path) == ["m"]


def test_model_save_refuses_a_folder_holding_files_it_did_not_write(toy, tmp_path):
    model = toynet()
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "README.md").write_text("my package")
    (tmp_path / "pkg" / "setup.py").write_text("# mine")
    with pytest.raises(zoo.ZooError, match=r"pkg holds files that are not a previous save's: README\.md, setup\.py "
                                           r"\(not written by model\.save\(\): the folder has no zoo config\.json\)"
                                           r".*never replaces or deletes anything else"):
        model.save(tmp_path / "pkg")
    assert (tmp_path / "pkg" / "README.md").read_text() == "my package"
    assert siblings(tmp_path / "pkg") == ["README.md", "setup.py"]
    model.save(tmp_path / "fresh")
    model.save(tmp_path / "fresh")  # over a previous save: fine
    (tmp_path / "fresh" / "notes.txt").write_text("mine")
    with pytest.raises(zoo.ZooError, match=r"notes\.txt \(not written by model\.save\(\): not listed in its "
                                           r"\.zoo-manifest\.json\)"):
        model.save(tmp_path / "fresh")
    assert (tmp_path / "fresh" / "notes.txt").read_text() == "mine"
    (tmp_path / "empty").mkdir()
    model.save(tmp_path / "empty")  # an empty folder is fine


def test_a_saved_file_the_user_edited_is_theirs_and_never_replaced(toy, tmp_path):
    model, m = toynet(), tmp_path / "m"
    model.save(m)
    manifest = Manifest.read(m)
    assert set(manifest.files) == set(saving.SAVED_FILES) and all(e["sha256"] for e in manifest.files.values())
    assert zoo.load(m).label == model.label  # loading reads config.json and the weights, not the manifest
    (m / "README.md").write_text("# my notes on this model\n")
    with pytest.raises(ForeignFileError, match=r"m holds files that are not a previous save's: README\.md \(changed "
                                               r"after model\.save\(\) wrote it.*never replaces or deletes anything"):
        model.save(m)
    assert (m / "README.md").read_text() == "# my notes on this model\n"
    (m / "README.md").unlink()
    model.save(m)
    (m / MANIFEST_NAME).unlink()  # a save by a zoo before manifests: its own model card is recognised...
    model.save(m)
    assert Manifest.read(m).found
    (m / MANIFEST_NAME).unlink()
    (m / "README.md").write_text("# mine\n")  # ...a README.md that is not that card is not
    with pytest.raises(ForeignFileError, match=r"README\.md \(not the model card model\.save\(\) writes for this "
                                               r"config\.json"):
        model.save(m)
    assert (m / "README.md").read_text() == "# mine\n"


def test_model_save_into_a_folder_whose_parent_is_not_writable_writes_it_file_by_file(toy, tmp_path, monkeypatch):
    parent = tmp_path / "shared"
    (parent / "m").mkdir(parents=True)
    real = fileio.create_temp_dir

    def no_write_in_parent(folder, prefix, suffix=".tmp"):  # what a read-only parent does (root ignores modes)
        if Path(folder) == parent:
            raise PermissionError(errno.EACCES, "Permission denied", str(folder))
        return real(folder, prefix, suffix)

    monkeypatch.setattr(fileio, "create_temp_dir", no_write_in_parent)
    first, second = toynet(), toynet()
    with torch.no_grad():
        for p in second.net.parameters():
            p.add_(1.0)
    x = torch.rand(2, 3, 8, 8)
    parent.chmod(0o555)
    try:
        first.save(parent / "m")  # the first save into a pre-created folder, and a re-save
        assert torch.equal(zoo.load(parent / "m").eval()(x), first.eval()(x))
        second.save(parent / "m")
        assert torch.equal(zoo.load(parent / "m").eval()(x), second.eval()(x))
        assert siblings(parent / "m") == [MANIFEST_NAME, "README.md", "config.json", "model.safetensors"]
        manifest = Manifest.read(parent / "m")
        assert not any(manifest.edited(n) for n in saving.SAVED_FILES) and siblings(parent) == ["m"]
        (parent / "m" / "notes.txt").write_text("mine")
        with pytest.raises(ForeignFileError, match=r"notes\.txt"):
            second.save(parent / "m")
        with pytest.raises(WriteError, match=r"could not write saved model .*shared/new \(Permission denied\)"):
            first.save(parent / "new")  # a folder that does not exist cannot be made there
    finally:
        parent.chmod(0o755)


def test_listing_models_imports_no_saving_machinery(tmp_path):
    script = textwrap.dedent("""
        import json, sys
        from zoo_timm import catalog
        path = catalog.catalog_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"format": catalog.FORMAT, "format_version": catalog.FORMAT_VERSION,
                                    "timm_version": catalog.timm_version(), "models": {}}))
        import zoo_core
        zoo_core.list_models()
        print(sorted(m for m in ("zoo_core.saving", "zoo_core.model_card", "ctypes") if m in sys.modules))
    """)
    env = {**os.environ, "ZOO_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert out.stdout.strip().splitlines()[-1:] == ["[]"], out.stderr[-2000:]


# ---- the umask, not mkstemp's 0600 --------------------------------------------------------------------
@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_every_atomic_write_follows_the_umask(toy, tmp_path, mask):
    with umask(mask):
        atomic_write_bytes(tmp_path / "a.bin", b"x")
        C.atomic_save({"format": "zoo.checkpoint", "format_version": 1}, tmp_path / "c.pt")
        toynet().save(tmp_path / "m")
        zoo.Trainer(out_dir=tmp_path / "run", **QUIET).fit(toynet(), "toy:n=16", "toy:n=8")
    file_mode, dir_mode = 0o666 & ~mask, 0o777 & ~mask
    assert mode(tmp_path / "a.bin") == file_mode and mode(tmp_path / "c.pt") == file_mode
    assert mode(tmp_path / "m") == dir_mode
    assert {p.name: mode(p) for p in (tmp_path / "m").iterdir()} == \
        dict.fromkeys([*saving.SAVED_FILES, MANIFEST_NAME], file_mode)
    run = tmp_path / "run"
    assert {p.name: mode(p) for p in run.iterdir() if p.is_file()} == \
        dict.fromkeys(["last.pt", "best.pt", "config.yaml", "metrics.csv", ".zoo-manifest.json"], file_mode)


def test_zoo_pull_mirror_files_follow_the_umask(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(remote, "SOURCE", dict(remote.SOURCE))
    reset_registry(remote.make_registry())
    try:
        (tmp_path / "src").mkdir()
        remote.publish(tmp_path / "src")
        with umask(0o022):
            assert main(["pull", "remote_tiny.v1", "--to", str(tmp_path / "mirror")]) == 0
    finally:
        reset_registry()
    pulled = tmp_path / "mirror" / "weights" / "remote" / remote.FILENAME
    assert mode(pulled) == 0o644  # others on the offline machine can read it (was 0600)


def test_synthetic_dataset_folders_follow_the_umask(tmp_path):
    from zoo_core.data.shapes import make_shapes

    with umask(0o022):
        root = make_shapes(tmp_path / "shapes", layout="masks", n_train=1, n_val=1, image_size=32)
    assert mode(root) == 0o755  # was mkdtemp's 0700


# ---- a full disk ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "No space left on device"), RuntimeError(TORCH_FULL)],
                         ids=["ENOSPC", "torch"])
def test_a_full_disk_during_a_checkpoint_save_is_named_and_keeps_the_previous_file(tmp_path, monkeypatch, failure):
    path = tmp_path / "last.pt"
    C.atomic_save({"format": "zoo.checkpoint", "format_version": 1, "n": torch.arange(5)}, path)

    def half_then_fail(obj, f):
        f.write(b"x" * 1000)
        raise failure

    monkeypatch.setattr(C, "_serialize", half_then_fail)
    with pytest.raises(WriteError, match=r"could not write checkpoint .*last\.pt \(.*free on its disk\); the "
                                         r"previous checkpoint was kept\. Free disk space or choose another "
                                         r"out_dir") as err:
        C.atomic_save({"format": "zoo.checkpoint", "format_version": 1, "n": torch.arange(9)}, path)
    assert isinstance(err.value, OSError) and "inline_container" not in str(err.value)
    assert torch.equal(C.load_checkpoint(path)["n"], torch.arange(5))
    assert siblings(tmp_path) == [".zoo-manifest.json", "last.pt"]  # no temp file left


def test_a_full_disk_in_training_ends_with_the_zoos_message_not_torchs(toy, tmp_path, monkeypatch):
    class FillDisk(Callback):
        def on_epoch_end(self, trainer):
            monkeypatch.setattr(C, "_serialize", lambda obj, f: (_ for _ in ()).throw(RuntimeError(TORCH_FULL)))

    with pytest.raises(WriteError, match=r"could not write checkpoint .*last\.pt.*previous checkpoint was kept"):
        zoo.Trainer(out_dir=tmp_path, callbacks=[FillDisk()], **{**QUIET, "max_epochs": 2}).fit(
            toynet(), "toy:n=16", "toy:n=8")
    assert C.load_checkpoint(tmp_path / "last.pt")["progress"]["epoch"] == 1
    assert not list(tmp_path.glob(".*.tmp")) and not (tmp_path / ".zoo-lock").exists()


def test_a_full_disk_writing_the_model_metrics_or_config_is_named(toy, tmp_path, monkeypatch):
    model = toynet()
    model.save(tmp_path / "m")
    before = {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()}
    monkeypatch.setattr(saving, "_write_file", lambda path, data: (_ for _ in ()).throw(
        OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(WriteError, match=r"could not write saved model .*m \(No space left on device; .* free on "
                                         r"its disk\); the previous saved model was kept\. Free disk space"):
        model.save(tmp_path / "m")
    assert {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()} == before and siblings(tmp_path) == ["m"]

    log = CSVLogger(tmp_path / "metrics.csv")
    log.log({"epoch": 1, "loss": 0.5})
    kept = (tmp_path / "metrics.csv").read_bytes()

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(WriteError, match=r"could not write metrics log .*metrics\.csv \(No space left.*\); the "
                                         r"previous metrics log was kept\. Free disk space or choose another out_dir"):
        log.log({"epoch": 2, "loss": 0.4})
    assert (tmp_path / "metrics.csv").read_bytes() == kept
    assert not [n for n in siblings(tmp_path) if n.endswith(".tmp")]


# ---- a file where a folder goes --------------------------------------------------------------------------
def test_an_out_dir_that_is_a_file_is_refused_before_the_first_epoch(toy, tmp_path):
    started = []

    class Started(Callback):
        def on_train_epoch_start(self, trainer):
            started.append(True)

    (tmp_path / "run").write_text("a file")
    for out_dir, blocker in ((tmp_path / "run", "is a file, not a folder"),
                             (tmp_path / "run" / "sub", r"cannot be created: .*run is a file")):
        with pytest.raises(PathError, match=f"out_dir .*{blocker}"):
            zoo.Trainer(out_dir=out_dir, callbacks=[Started()], **QUIET).fit(toynet(), "toy:n=16", "toy:n=8")
    assert started == [] and (tmp_path / "run").read_text() == "a file"


def test_export_and_model_save_into_a_path_blocked_by_a_file_are_refused_before_any_work(toy, tmp_path,
                                                                                           monkeypatch):
    E = importlib.import_module("zoo_core.export")  # the module (zoo_core.export is also the function)

    (tmp_path / "file").write_text("x")
    monkeypatch.setattr(E, "default_sample", lambda *a, **k: pytest.fail("the export started"))
    with pytest.raises(PathError, match=r"export path .*file/m\.onnx.*cannot be created: .*file is a file"):
        toynet().export("onnx", tmp_path / "file" / "m.onnx")
    (tmp_path / "out.onnx").mkdir()
    with pytest.raises(PathError, match=r"export path .*out\.onnx is a folder"):
        toynet().export("onnx", tmp_path / "out.onnx")
    with pytest.raises(PathError, match=r"model\.save\(\) folder .*file is a file, not a folder"):
        toynet().save(tmp_path / "file")
    with pytest.raises(PathError, match=r"model\.save\(\) folder .*file/m cannot be created"):
        toynet().save(tmp_path / "file" / "m")
    assert (tmp_path / "file").read_text() == "x"
