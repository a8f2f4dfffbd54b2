"""Every Trainer setting is checked where it enters: ``TrainConfig(...)``/``Trainer(...)``/``.replace``,
``zoo train --flag`` and ``--config run.yaml``, with one rule per field and one message form
(``max_epochs=1.5 (from run.yaml): expected a whole number >= 1``). Nothing here trains."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import yaml

import zoo_core as zoo
from zoo_core.cli import main
from zoo_core.errors import SettingError, UnknownNameError
from zoo_core.train.config import _RULES, TrainConfig
from zoo_core.train.sources import add_arguments, from_sources, load_yaml

#: (field, a value it must refuse): each was accepted (or crashed later, or was truncated) before
BAD = [
    ("max_epochs", 1.5), ("max_epochs", True), ("max_epochs", 0), ("max_epochs", "ten"),
    ("batch_size", "abc"), ("batch_size", None), ("batch_size", -4),
    ("eval_batch_size", 0), ("accumulate_grad_batches", 0),
    ("limit_train_batches", 0), ("limit_train_batches", 2.5), ("limit_val_batches", 0), ("val_every_n_epochs", 0),
    ("optimizer", "adamx"), ("optimizer", None),
    ("lr", -1e-3), ("lr", "fast"), ("lr", float("nan")), ("lr", float("inf")), ("lr", True),
    ("weight_decay", -0.01), ("momentum", 1.0), ("momentum", -0.1), ("nesterov", "maybe"),
    ("scheduler", "linear"), ("warmup_epochs", -1), ("warmup_start_factor", 1.5), ("min_lr_ratio", 2),
    ("step_epochs", 0), ("step_gamma", 0), ("step_gamma", 1.5), ("plateau_patience", 0), ("fused_optimizer", 3),
    ("gradient_clip_val", -1.0), ("gradient_clip_val", 0), ("ema", 1.0), ("ema", -0.5),
    ("image_size", 0), ("image_size", 32.5), ("freeze_backbone", "sometimes"), ("freeze_blocks", -1),
    ("backbone_lr_mult", -0.1), ("precision", "fp8"), ("precision", 16), ("channels_last", 2),
    ("compile", None), ("compile_backend", ""), ("compile_mode", "fast"), ("matmul_precision", "fast"),
    ("sync_batchnorm", "sure"), ("seed", -1), ("seed", 2**63), ("seed", 0.5), ("deterministic", None),
    ("monitor_mode", "up"), ("early_stopping", 0), ("early_stopping_min_delta", -0.1),
    ("save_every_n_steps", -5), ("out_dir", None), ("out_dir", ""), ("out_dir", 3), ("log_every_n_steps", 0),
    ("tensorboard", "2"), ("num_workers", -1), ("num_workers", 1.5), ("prefetch_factor", 0),
    ("device", "gpu"), ("device", "cuda:x"), ("device", 0),
]

#: (flag argv, field): the same refusals through ``zoo train``
BAD_FLAGS = [
    (["--epochs", "1.5"], "max_epochs"), (["--max-epochs", "0"], "max_epochs"), (["--lr", "-1"], "lr"),
    (["--lr", "abc"], "lr"), (["--gradient-clip-val", "-1"], "gradient_clip_val"),
    (["--weight-decay", "-0.1"], "weight_decay"), (["--warmup-epochs", "-1"], "warmup_epochs"),
    (["--save-every-n-steps", "-1"], "save_every_n_steps"), (["--limit-train-batches", "0"], "limit_train_batches"),
    (["--out-dir", ""], "out_dir"), (["--precision", "fp8"], "precision"), (["--seed", "-1"], "seed"),
    (["--momentum", "1"], "momentum"), (["--channels-last", "maybe"], "channels_last"), (["--device", "gpu"], "device"),
    (["--num-workers", "2.5"], "num_workers"), (["--compile-mode", "fast"], "compile_mode"),
    (["--batch-size", "true"], "batch_size"),
]


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


@pytest.mark.parametrize("name, value", BAD, ids=[f"{n}={v!r}" for n, v in BAD])
def test_python_refuses_a_bad_value_naming_the_field_and_what_is_allowed(name, value):
    with pytest.raises(SettingError) as info:
        TrainConfig(**{name: value})
    message = str(info.value)
    assert message.startswith(f"{name}={value!r}: expected ") and info.value.field == name, message
    assert isinstance(info.value, ValueError)  # `except ValueError` callers keep working


@pytest.mark.parametrize("name, value", BAD, ids=[f"{n}={v!r}" for n, v in BAD])
def test_a_yaml_file_refuses_the_same_values_naming_the_file(name, value, tmp_path, capsys):
    run = tmp_path / "run.yaml"
    run.write_text(yaml.safe_dump({name: value}))
    assert yaml.safe_load(run.read_text())[name] == value or value != value  # the file holds that value (nan)
    assert main(["train", "--config", str(run)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"zoo train: error: {name}=") and f"(from {run}): expected " in err, err
    assert err.count("\n") == 1 and "Traceback" not in err  # one line


@pytest.mark.parametrize("argv, name", BAD_FLAGS, ids=[" ".join(a) for a, _ in BAD_FLAGS])
def test_a_flag_refuses_with_the_python_message_plus_the_flag(argv, name, capsys):
    assert main(["train", *argv]) == 1  # checked before anything is built or read
    err = capsys.readouterr().err
    with pytest.raises(SettingError) as info:
        TrainConfig(**{name: argv[1]})  # the flag's text given in Python: the same rule, the same words
    python = str(info.value)
    flags = "/".join(["--" + name.replace("_", "-"), *_RULES[name].meta["aliases"]])
    assert err == "zoo train: error: " + python.replace(": expected", f" (from {flags}): expected", 1) + "\n"


def test_the_message_reads_as_documented(tmp_path, capsys):
    (tmp_path / "run.yaml").write_text("max_epochs: 1.5\n")
    assert main(["train", "--config", str(tmp_path / "run.yaml")]) == 1
    assert capsys.readouterr().err == \
        f"zoo train: error: max_epochs=1.5 (from {tmp_path / 'run.yaml'}): expected a whole number >= 1\n"
    with pytest.raises(SettingError, match=r"^gradient_clip_val=-1: expected a number > 0, or None; None turns "):
        zoo.Trainer(gradient_clip_val=-1)
    with pytest.raises(SettingError, match=r"limit_val_batches=0: .*val=False \(zoo train --val none\)"):
        TrainConfig(limit_val_batches=0)
    with pytest.raises(SettingError, match=r"^seed=-1: expected a whole number in \[0, 2\*\*63\)$"):
        TrainConfig(seed=-1)
    with pytest.raises(SettingError, match="max_epochs=True: .*true/false is not a number"):
        TrainConfig(max_epochs=True)


def test_yaml_1_1_text_numbers_are_numbers_and_none_words_are_none(tmp_path):
    (tmp_path / "run.yaml").write_text(
        "lr: 1e-3\nweight_decay: 5e-2\nmax_epochs: '10'\nbatch_size: 1e1\nprecision: 32\nema: null\n"
        "matmul_precision: none\ndevice: cpu\nchannels_last: auto\nout_dir: runs/x\nverbose: off\nnum_workers: 0\n")
    values = load_yaml(tmp_path / "run.yaml")
    assert values["lr"] == "1e-3"  # what PyYAML (YAML 1.1) gives: text
    config = from_sources(values, _parse([]), source="run.yaml")
    assert (config.lr, config.weight_decay, config.max_epochs, config.batch_size) == (0.001, 0.05, 10, 10)
    assert type(config.lr) is float and type(config.max_epochs) is int and type(config.batch_size) is int
    assert (config.precision, config.ema, config.matmul_precision, config.channels_last) == ("32", None, None, None)
    assert (config.device, config.out_dir, config.verbose, config.num_workers) == ("cpu", "runs/x", False, 0)


def test_flags_take_none_words_and_numbers_as_text():
    config = from_sources({}, _parse(["--lr", "1e-3", "--epochs", "3", "--matmul-precision", "none",
                                      "--monitor-mode", "auto", "--precision", "32", "--ema", "0.99",
                                      "--limit-val-batches", "null", "--fused-optimizer", "off"]))
    assert (config.lr, config.max_epochs, config.precision, config.ema) == (0.001, 3, "32", 0.99)
    assert config.matmul_precision is None and config.monitor_mode is None and config.limit_val_batches is None
    assert config.fused_optimizer is False  # argparse's choices refused "none" for optional choice flags


def test_python_values_are_normalised_to_the_annotated_types():
    config = TrainConfig(out_dir=Path("runs") / "p", max_epochs=np.int64(4), lr=np.float32(0.5), precision=32,
                         batch_size=8.0, seed=2**63 - 1, momentum=0, warmup_start_factor=0)
    assert config.out_dir == str(Path("runs") / "p") and type(config.out_dir) is str  # never ./None, never a Path
    assert type(config.max_epochs) is int and type(config.lr) is float and type(config.batch_size) is int
    assert config.precision == "32" and config.momentum == 0.0 and type(config.momentum) is float
    assert yaml.safe_load(yaml.safe_dump(config.to_dict())) == config.to_dict()  # numpy scalars would not dump
    torch = pytest.importorskip("torch")
    assert TrainConfig(device=torch.device("cpu")).device == "cpu"
    # the edges that stay allowed, each on purpose: lr 0 (a known debugging run; torch accepts it),
    # warmup from 0, min_lr_ratio 1 (constant), save_every_n_steps 0 (epoch ends), freeze_blocks 0, ema 0
    TrainConfig(lr=0.0, warmup_start_factor=0.0, min_lr_ratio=1.0, save_every_n_steps=0, freeze_blocks=0, ema=0.0,
                step_gamma=1.0, early_stopping_min_delta=0.0, num_workers=0, backbone_lr_mult=0.0, fused_optimizer=1)


def test_replace_assignment_and_trainer_check_like_construction():
    base = TrainConfig(lr=0.1)
    with pytest.raises(SettingError, match="^warmup_epochs=-2: expected a number >= 0$"):
        base.replace(warmup_epochs=-2)
    with pytest.raises(UnknownNameError, match="'warmup_epoch'.*did you mean 'warmup_epochs'"):
        base.replace(warmup_epoch=2)  # was a TypeError from dataclasses.replace
    with pytest.raises(SettingError, match="^lr=-1: "):
        base.lr = -1
    assert base.lr == 0.1
    base.max_epochs = "7"
    assert base.max_epochs == 7
    with pytest.raises(SettingError, match="^save_every_n_steps=-1: "):
        zoo.Trainer(base, save_every_n_steps=-1)
    with pytest.raises(SettingError, match="^out_dir=None: expected a folder path$"):
        zoo.Trainer(out_dir=None)
    assert zoo.Trainer(base, lr="2e-2").config.lr == 0.02


def test_from_dict_gives_named_errors_not_type_errors():
    with pytest.raises(SettingError, match="^batch_size='x' \\(from run.json\\): "):
        TrainConfig.from_dict({"batch_size": "x"}, source="run.json")
    with pytest.raises(UnknownNameError, match="unknown Trainer setting '3'"):
        TrainConfig.from_dict({3: 1})  # a non-text key: was an AttributeError
    with pytest.raises(SettingError, match="must be a mapping of name: value, got list"):
        TrainConfig.from_dict([("lr", 0.1)])
    assert TrainConfig.from_dict({"lr": "1e-2", "ema": "none"}) == TrainConfig(lr=0.01, ema=None)


def test_settings_that_contradict_each_other_are_refused():
    with pytest.raises(SettingError, match="nesterov=True: Nesterov momentum needs momentum > 0"):
        TrainConfig(optimizer="sgd", momentum=0.0, nesterov=True)  # torch would refuse it at fit
    TrainConfig(optimizer="sgd", momentum=0.9, nesterov=True)


def test_unknown_yaml_keys_name_the_closest_field_and_the_file(tmp_path, capsys):
    (tmp_path / "run.yaml").write_text("warmup_epoch: 2\n")
    assert main(["train", "--config", str(tmp_path / "run.yaml")]) == 1
    err = capsys.readouterr().err
    assert f"unknown setting in {tmp_path / 'run.yaml'} 'warmup_epoch'; did you mean 'warmup_epochs'" in err


def test_every_field_declares_what_it_accepts():
    """A new numeric field without a range, or text field without choices or a description, fails here."""
    for f in dataclasses.fields(TrainConfig):
        rule = _RULES[f.name]
        assert rule(f.default) == f.default, f.name  # the default passes its own rule
        if rule.base in (int, float):
            assert rule.bounds(), f"{f.name}: declare its range (ge=/gt=/le=/lt=)"
        if rule.base is str:
            assert rule.choices or f.metadata["what"], f"{f.name}: declare choices= or what="
