"""The Trainer on a task the zoo has never seen (tests/trainer_toy.py): outputs, features, numerics."""

from __future__ import annotations

import csv
import math

import pytest
import torch
import yaml

import trainer_toy as T
from trainer_toy import toy  # noqa: F401  (fixture)
import zoo_core as zoo
from zoo_core.errors import UnknownNameError
from zoo_core.train.callbacks import Callback
from zoo_core.train.config import TrainConfig
from zoo_core.train.optim import backbone_blocks, param_groups
from zoo_core.train.schedulers import LRSchedule
from zoo_core.train.trainer import NonFiniteLossError

QUIET = dict(num_workers=0, verbose=False, tensorboard=False, plots=False)


def test_fit_writes_checkpoints_logs_config_model_and_plots(toy, tmp_path):
    model = zoo.load("toynet", task="toytrain")
    trainer = zoo.Trainer(max_epochs=2, batch_size=8, lr=0.01, out_dir=tmp_path, num_workers=0, verbose=True,
                          log_every_n_steps=2, image_size=10)
    result = trainer.fit(model, "toy:n=32", "toy:n=12")
    assert result.epochs == 2 and result.steps == 8 and result.monitor == "accuracy"
    assert (tmp_path / "last.pt").is_file() and result.best_checkpoint == tmp_path / "best.pt"
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"] and {"train_loss", "accuracy", "lr/decay"} <= set(rows[0])
    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert config["trainer"]["max_epochs"] == 2 and config["trainer"]["monitor"] == "accuracy"
    assert config["model"]["model"] == "toytrain:toynet" and config["class_names"] == T.CLASSES
    assert result.plots == [tmp_path / "plots" / "toy_accuracy.png"] and result.plots[0].is_file()
    assert model.last_metrics["accuracy"] == result.metrics["accuracy"] and not model.training
    # the saved model is the trained one, with the dataset's class names adopted
    reloaded = zoo.load(result.model_dir)
    x = torch.rand(2, 3, 8, 8)
    assert reloaded.class_names == T.CLASSES and reloaded.preprocess.input_size == (10, 10)
    assert torch.equal(reloaded.eval()(x), model(x))


def test_tensorboard_event_files_hold_the_logged_scalars(toy, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model = zoo.load("toynet", task="toytrain")
    zoo.Trainer(max_epochs=3, batch_size=8, out_dir=tmp_path, log_every_n_steps=2,
                **{**QUIET, "tensorboard": True}).fit(model, "toy:n=32", "toy:n=8")
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"val/accuracy", "epoch/train_loss", "train/loss", "train/lr", "lr/decay"} <= set(tags)
    assert [e.step for e in events.Scalars("val/accuracy")] == [4, 8, 12]
    assert [e.step for e in events.Scalars("train/loss")] == [2, 4, 6, 8, 10, 12]
    assert all(math.isfinite(e.value) for e in events.Scalars("train/loss"))


def test_validation_every_n_epochs_and_always_after_the_last(toy, tmp_path):
    result = zoo.Trainer(max_epochs=3, batch_size=8, val_every_n_epochs=2, out_dir=tmp_path,
                         **QUIET).fit(zoo.load("toynet", task="toytrain"), "toy:n=16", "toy:n=8")
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert [bool(r["accuracy"]) for r in rows] == [False, True, True] and result.best_epoch in (2, 3)  # 1-based
    assert all(r["lr/decay"] for r in rows)


def test_early_stopping_stops_after_patience_validations_without_improvement(toy, tmp_path):
    model = zoo.load("toynet_plain", task="toytrain")  # lr 0, no batchnorm: the metric never changes
    result = zoo.Trainer(max_epochs=10, batch_size=8, lr=0.0, early_stopping=2, out_dir=tmp_path,
                         **QUIET).fit(model, "toy:n=16", "toy:n=8")
    assert result.epochs == 3 and result.stopped_early  # epoch 1 sets the best, 2 and 3 do not improve
    assert len(list(csv.DictReader(open(tmp_path / "metrics.csv")))) == 3


def test_early_stopping_on_another_metric_and_mode(toy, tmp_path):
    from types import SimpleNamespace

    from zoo_core.train.callbacks import EarlyStopping

    stopper = EarlyStopping("val_loss", patience=2, mode="min", min_delta=0.05)
    fake = SimpleNamespace(should_stop=False, state=SimpleNamespace(epoch=0), stop_reason="")
    for epoch, value in enumerate([1.0, 0.5, 0.47, 0.6, 0.3]):
        fake.state.epoch = epoch
        stopper.on_validation_end(fake, {"val_loss": value})
        if fake.should_stop:
            break
    assert fake.should_stop and stopper.stopped_epoch == 3 and stopper.best == 0.5  # 0.47: within min_delta

    model = zoo.load("toynet_plain", task="toytrain")
    trainer = zoo.Trainer(max_epochs=10, batch_size=8, early_stopping=2, early_stopping_metric="val_los",
                          out_dir=tmp_path, **QUIET)
    with pytest.raises(UnknownNameError, match="val_los.*did you mean 'val_loss'"):
        trainer.fit(model, "toy:n=16", "toy:n=8")
    trainer = zoo.Trainer(max_epochs=10, batch_size=8, lr=0.0, early_stopping=2, early_stopping_metric="val_loss",
                          out_dir=tmp_path, **QUIET)
    assert trainer.fit(model, "toy:n=16", "toy:n=8").epochs == 3
    assert [c.mode for c in trainer.callbacks if isinstance(c, EarlyStopping)] == ["min"]


def test_ema_weights_differ_from_raw_and_are_evaluated_and_saved(toy, tmp_path):
    model = zoo.load("toynet", task="toytrain")
    result = zoo.Trainer(max_epochs=2, batch_size=4, lr=0.05, ema=0.9, out_dir=tmp_path,
                         **QUIET).fit(model, "toy:n=32", "toy:n=12")
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)
    assert ckpt["callbacks"]["ema"]["updates"] == 16
    ema, raw = ckpt["model"], ckpt["train_model"]
    assert not torch.equal(ema["fc.weight"], raw["fc.weight"])
    assert all(torch.equal(v, ema[k]) for k, v in model.net.state_dict().items())  # the model left = EMA
    # the metrics reported are those of the EMA weights, through the same loop as zoo.evaluate
    assert zoo.evaluate(model, "toy:n=12", batch_size=4, plots=False)["val_loss"] == result.metrics["val_loss"]
    model.net.load_state_dict(raw)
    assert zoo.evaluate(model, "toy:n=12", batch_size=4, plots=False)["val_loss"] != result.metrics["val_loss"]


def test_gradient_accumulation_matches_a_larger_batch(toy, tmp_path):
    def run(batch_size, accumulate):
        model = zoo.load("toynet_plain", task="toytrain")
        zoo.Trainer(max_epochs=2, batch_size=batch_size, accumulate_grad_batches=accumulate, optimizer="sgd",
                    lr=0.1, seed=1, out_dir=tmp_path / f"{batch_size}", **QUIET).fit(model, "toy:n=16")
        return T.weights(model.net)

    a, b = run(4, 1), run(2, 2)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=1e-5)
    start = T.weights(zoo.load("toynet_plain", task="toytrain").net)
    assert not torch.allclose(a["fc.weight"], start["fc.weight"])  # it did train


def test_no_weight_decay_on_norms_and_biases_and_a_lower_backbone_lr(toy):
    model = zoo.load("toynet", task="toytrain")
    groups = param_groups(model, TrainConfig(lr=0.1, weight_decay=0.05, backbone_lr_mult=0.1))
    names = {id(p): n for n, p in model.net.named_parameters()}
    by_group = {g["name"]: ({names[id(p)] for p in g["params"]}, g["weight_decay"], g["lr"]) for g in groups}
    assert by_group["backbone_decay"] == ({"stem.0.weight", "blocks.0.weight", "blocks.1.weight"}, 0.05,
                                          pytest.approx(0.01))
    assert by_group["backbone_no_decay"][0] == {"stem.0.bias", "stem.1.weight", "stem.1.bias", "blocks.0.bias",
                                                "blocks.1.bias"}
    assert by_group["backbone_no_decay"][1] == 0.0
    assert by_group["head_decay"] == ({"fc.weight"}, 0.05, 0.1)
    assert by_group["head_no_decay"] == ({"fc.bias"}, 0.0, 0.1)
    # groups that no setting separates are merged (one optimizer kernel per group and step)
    merged = param_groups(model, TrainConfig(lr=0.1, weight_decay=0.05))
    assert [(g["name"], len(g["params"])) for g in merged] == [("decay", 4), ("no_decay", 6)]
    merged = param_groups(model, TrainConfig(lr=0.1, weight_decay=0.0))
    assert [(g["name"], len(g["params"]), g["weight_decay"]) for g in merged] == [("all", 10, 0.0)]
    merged = param_groups(model, TrainConfig(lr=0.1, weight_decay=0.0, backbone_lr_mult=0.5))
    assert [g["name"] for g in merged] == ["backbone", "head"]


def test_freezing_the_backbone_or_its_first_blocks(toy, tmp_path):
    model = zoo.load("toynet", task="toytrain")
    assert backbone_blocks(model) == ["stem.0", "stem.1", "blocks.0", "blocks.1"]
    before = T.weights(model.net)
    zoo.Trainer(max_epochs=1, batch_size=8, freeze_backbone=True, out_dir=tmp_path / "a",
                **QUIET).fit(model, "toy:n=16")
    after = T.weights(model.net)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"fc.weight", "fc.bias"}  # BatchNorm statistics of the frozen part did not drift

    model = zoo.load("toynet", task="toytrain")
    before = T.weights(model.net)
    zoo.Trainer(max_epochs=1, batch_size=8, freeze_blocks=2, out_dir=tmp_path / "b",
                **QUIET).fit(model, "toy:n=16")
    after = T.weights(model.net)
    changed = {k.rsplit(".", 1)[0] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"blocks.0", "blocks.1", "fc"}


def test_warmup_then_cosine_and_the_other_schedules():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    cfg = TrainConfig(max_epochs=3, warmup_epochs=1, warmup_start_factor=0.1, min_lr_ratio=0.0)
    sched = LRSchedule(opt, cfg, steps_per_epoch=10)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(29):
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[0] == pytest.approx(0.1) and lrs[5] == pytest.approx(0.55) and lrs[10] == pytest.approx(1.0)
    assert lrs[20] == pytest.approx(0.5 * (1 + math.cos(math.pi * 10 / 19)))
    assert lrs[29] == pytest.approx(0.0, abs=1e-12) and all(a >= b for a, b in zip(lrs[10:], lrs[11:]))

    step = LRSchedule(opt, TrainConfig(max_epochs=4, scheduler="step", step_epochs=2, step_gamma=0.5),
                      steps_per_epoch=5)
    assert [step.factor(s) for s in (0, 9, 10, 19)] == [1.0, 1.0, 0.5, 0.5]
    one = LRSchedule(opt, TrainConfig(max_epochs=1, scheduler="onecycle"), steps_per_epoch=10)
    assert one.factor(0) == pytest.approx(1 / 25) and one.factor(3) == pytest.approx(1.0)
    assert one.factor(9) == pytest.approx(1 / 25e4)
    plateau = LRSchedule(opt, TrainConfig(scheduler="plateau", plateau_patience=2, step_gamma=0.1),
                         steps_per_epoch=5, mode="max")
    for value in (0.5, 0.6, 0.6, 0.55):
        plateau.on_validation(value)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1) and plateau.state_dict()["plateau_bad"] == 0


def test_bf16_and_fp16_with_a_grad_scaler_that_skips_overflowing_steps(toy, tmp_path):
    model = zoo.load("toynet_plain", task="toytrain")
    result = zoo.Trainer(max_epochs=1, batch_size=8, precision="bf16-mixed", out_dir=tmp_path / "bf16",
                         **QUIET).fit(model, "toy:n=16", "toy:n=8")
    assert math.isfinite(result.metrics["val_loss"])

    model = zoo.load("toynet_plain", task="toytrain")
    start = T.weights(model.net)
    # sample 0's loss is weighted 1e35: finite in fp32, but its scaled gradients overflow
    zoo.Trainer(max_epochs=1, batch_size=16, precision="16-mixed", optimizer="sgd", out_dir=tmp_path / "fp16",
                **QUIET).fit(model, "toy:n=16,huge_at=0")
    ckpt = torch.load(tmp_path / "fp16" / "last.pt", weights_only=True)
    assert ckpt["scaler"]["scale"] == 2.0**15  # halved once: the one step was skipped
    assert all(torch.equal(v, start[k]) for k, v in model.net.state_dict().items())


@pytest.mark.parametrize("nesterov", [False, True])
def test_fused_sgd_after_a_skipped_first_fp16_step_equals_plain_sgd(toy, nesterov):
    """torch's fused SGD leaves its momentum buffers uninitialised when GradScaler skips its first step."""
    from zoo_core.train.optim import build_optimizer

    results = []
    for fused in (True, False):
        model = zoo.load("toynet_plain", task="toytrain")
        torch.manual_seed(0)
        for p in model.net.parameters():
            p.data = torch.randn_like(p)
        config = TrainConfig(optimizer="sgd", lr=0.1, momentum=0.9, nesterov=nesterov, weight_decay=0.0,
                             fused_optimizer=fused)
        opt = build_optimizer(model, config)
        scaler = torch.amp.GradScaler("cpu", init_scale=4.0)
        for step in range(3):
            scaler.scale(torch.ones(()))  # starts the scaler's per-step state, as scaling the loss does
            torch.full((4096,), float("nan"))  # leave NaN in the allocator for an empty_like to pick up
            for p in model.net.parameters():
                p.grad = torch.ones_like(p) * scaler.get_scale()
                if step == 0:
                    p.grad.view(-1)[0] = float("inf")  # the first step overflows and is skipped
            scaler.step(opt)
            scaler.update()
        results.append({k: v.clone() for k, v in model.net.named_parameters()})
    fused, plain = results
    assert all(torch.isfinite(v).all() for v in fused.values())
    for k in plain:
        torch.testing.assert_close(fused[k], plain[k])


def test_a_nan_loss_stops_naming_the_step_and_batch_and_keeps_the_last_good_checkpoint(toy, tmp_path):
    model = zoo.load("toynet_plain", task="toytrain")
    trainer = zoo.Trainer(max_epochs=2, batch_size=4, out_dir=tmp_path, **QUIET)
    trainer.fit(model, "toy:n=16")
    good = (tmp_path / "last.pt").read_bytes()
    trainer = zoo.Trainer(max_epochs=3, batch_size=4, out_dir=tmp_path, **QUIET)
    with pytest.raises(NonFiniteLossError) as err:
        trainer.fit(model, "toy:n=16,nan_at=5", resume="last")
    message = str(err.value)
    assert "toy/train/005.png" in message and f"last good checkpoint is {tmp_path / 'last.pt'}" in message
    order = trainer.train_loader.sampler.indices()
    assert f"step {8 + order.index(5) // 4 + 1} (epoch 3, batch {order.index(5) // 4})" in message
    assert (tmp_path / "last.pt").read_bytes() == good
    saved = torch.load(tmp_path / "last.pt", weights_only=True)["model"]
    assert "model in memory was reset to the weights of" in message  # not left holding NaN weights
    assert all(torch.equal(saved[k], v) for k, v in model.net.state_dict().items())
    elsewhere = zoo.Trainer(max_epochs=3, batch_size=4, out_dir=tmp_path / "b", **QUIET)
    with pytest.raises(NonFiniteLossError, match=f"reset to the weights of {tmp_path / 'last.pt'}"):
        elsewhere.fit(model, "toy:n=16,nan_at=5", resume=tmp_path / "last.pt")  # this run's start is its good one
    fresh = zoo.load("toynet_plain", task="toytrain")
    with pytest.raises(NonFiniteLossError, match="no longer finite and this run has no checkpoint: load the model"):
        zoo.Trainer(max_epochs=1, batch_size=4, out_dir=tmp_path / "new", **QUIET).fit(fresh, "toy:n=16,nan_at=1")


def test_datasets_dataloaders_compile_and_channels_last_leave_no_wrapper_prefixes(toy, tmp_path):
    model = zoo.load("toynet", task="toytrain")
    task = model.task_impl
    train = T.ToyData(16, train=True)
    val = torch.utils.data.DataLoader(T.ToyData(8, train=False), batch_size=4, collate_fn=task.collate)
    zoo.Trainer(max_epochs=1, batch_size=4, compile=True, compile_backend="eager", channels_last=True,
                out_dir=tmp_path, **QUIET).fit(model, train, val)
    assert type(model.net) is T.ToyNet
    keys = list(torch.load(tmp_path / "last.pt", weights_only=True)["model"])
    assert keys == list(model.net.state_dict()) and not any("module." in k or "_orig_mod" in k for k in keys)


def test_callbacks_are_called_by_name_in_loop_order(toy, tmp_path):
    seen = []

    class Recorder(Callback):
        def on_fit_start(self, trainer): seen.append("fit_start")
        def on_train_epoch_start(self, trainer): seen.append(f"epoch_start{trainer.state.epoch}")
        def on_optimizer_step(self, trainer): seen.append(f"step{trainer.state.step}")
        def on_train_epoch_end(self, trainer): seen.append(f"train_end{sorted(trainer.epoch_log)}")
        def on_validation_end(self, trainer, metrics): seen.append(f"val{sorted(metrics)}")
        def on_epoch_end(self, trainer): seen.append(f"epoch_end{trainer.state.epoch}")
        def on_fit_end(self, trainer): seen.append("fit_end")

    zoo.Trainer(max_epochs=1, batch_size=8, out_dir=tmp_path, callbacks=[Recorder()],
                **QUIET).fit(zoo.load("toynet", task="toytrain"), "toy:n=16", "toy:n=4")
    assert seen == ["fit_start", "epoch_start0", "step1", "step2",
                    "train_end['lr/decay', 'lr/no_decay', "
                    "'train_ce', 'train_loss']",
                    "val['accuracy', 'num_samples', 'val_loss']", "epoch_end1", "fit_end"]


def test_bad_settings_are_named():
    with pytest.raises(UnknownNameError, match="max_epoch.*did you mean 'max_epochs'"):
        zoo.Trainer(max_epoch=3)
    with pytest.raises(ValueError, match="precision='fp8'"):
        zoo.Trainer(precision="fp8")
    with pytest.raises(TypeError, match="pass an instance"):
        zoo.Trainer(callbacks=[Callback])

    class Typo(Callback):
        def on_epoch_ends(self, trainer): ...

    with pytest.raises(UnknownNameError, match="on_epoch_ends.*did you mean 'on_epoch_end'"):
        zoo.Trainer(callbacks=[Typo()])


def test_a_dataset_root_validates_on_its_val_split_unless_told_not_to(tmp_path):
    from PIL import Image

    for split, per_class in (("train", 2), ("val", 3)):  # 4 training images, 6 validation images
        for k, name in enumerate(("a", "b")):
            (tmp_path / "data" / split / name).mkdir(parents=True)
            for i in range(per_class):
                Image.new("RGB", (16, 16), (200 * k, 30 * i, 90)).save(tmp_path / "data" / split / name / f"{i}.png")
    model = zoo.load("timm:test_resnet", task="cls", num_classes=2)
    settings = dict(max_epochs=1, batch_size=2, image_size=16, **QUIET)
    fit = zoo.Trainer(out_dir=tmp_path / "auto", **settings).fit(model, tmp_path / "data")
    assert fit.metrics["num_samples"] == 6 and "accuracy" in fit.metrics   # validated on data/val
    fit = zoo.Trainer(out_dir=tmp_path / "off", **settings).fit(model, tmp_path / "data", val=False)
    assert "accuracy" not in fit.metrics and fit.monitor == "train_loss"  # best.pt follows the training loss


def test_summary_table_wraps_long_paths_instead_of_cutting_them(capsys):
    from zoo_core.train.loggers import summary_table

    path = "/tmp/runs/cls/plots/" + "x" * 150 + "/confusion_matrix.png"
    text = summary_table("run", [("plot", path), ("accuracy", "0.9190")])
    assert "…" not in text and capsys.readouterr().out == text
    cells = "".join(line.split("│")[2].strip() for line in text.splitlines() if line.count("│") == 3)
    assert path in cells and "0.9190" in cells  # the whole path, folded over lines


def test_freezing_lasts_one_run_so_a_second_stage_trains_everything(toy, tmp_path):
    """Two-stage fine-tuning: head only, then all. The second fit must not inherit the first's freezing."""
    model = zoo.load("toynet", task="toytrain")
    zoo.Trainer(max_epochs=1, batch_size=8, freeze_backbone=True, out_dir=tmp_path / "a",
                **QUIET).fit(model, "toy:n=16")
    assert all(p.requires_grad for p in model.net.parameters())
    before = T.weights(model.net)
    trainer = zoo.Trainer(max_epochs=1, batch_size=8, out_dir=tmp_path / "b", **QUIET)
    trainer.fit(model, "toy:n=16")
    assert sum(len(g["params"]) for g in trainer.optimizer.param_groups) == len(list(model.net.parameters()))
    after = T.weights(model.net)
    assert not torch.equal(before["stem.0.weight"], after["stem.0.weight"])


def test_gradients_left_on_the_model_do_not_reach_the_first_step(toy, tmp_path):
    def run(dirty: bool):
        model = zoo.load("toynet_plain", task="toytrain")
        torch.manual_seed(3)
        for p in model.net.parameters():
            p.data = torch.randn_like(p) * 0.1
        if dirty:
            for p in model.net.parameters():
                p.grad = torch.full_like(p, 5.0)
        zoo.Trainer(max_epochs=1, batch_size=8, optimizer="sgd", lr=0.1, out_dir=tmp_path / str(dirty),
                    **QUIET).fit(model, "toy:n=16")
        return T.weights(model.net)

    clean, dirty = run(False), run(True)
    assert all(torch.equal(clean[k], dirty[k]) for k in clean)


def test_a_shorter_last_accumulation_window_is_averaged_over_its_own_batches(toy, tmp_path):
    """20 samples: batch 4 x accumulate 4 steps on windows of 16 and 4, like batch 16 does."""
    def run(batch_size, accumulate):
        model = zoo.load("toynet_plain", task="toytrain")
        zoo.Trainer(max_epochs=1, batch_size=batch_size, accumulate_grad_batches=accumulate, optimizer="sgd",
                    lr=0.1, momentum=0.0, weight_decay=0.0, scheduler="constant", seed=1,
                    out_dir=tmp_path / f"{batch_size}", **QUIET).fit(model, "toy:n=20")
        return T.weights(model.net)

    a, b = run(16, 1), run(4, 4)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=1e-5)


def test_the_logged_lr_is_the_one_the_step_used(toy, tmp_path):
    zoo.Trainer(max_epochs=1, batch_size=4, lr=0.1, warmup_epochs=1.0, warmup_start_factor=0.01, weight_decay=0.0,
                out_dir=tmp_path, **QUIET).fit(zoo.load("toynet_plain", task="toytrain"), "toy:n=16")
    row = next(csv.DictReader((tmp_path / "metrics.csv").open()))
    # 4 warmup steps from 0.001 to 0.1: the last one used 0.001 + 3/4 x 0.099; the scheduler then moved to 0.1
    assert float(row["lr/all"]) == pytest.approx(0.001 + 0.75 * 0.099)


def test_a_nested_trunks_no_weight_decay_names_are_honoured():
    """timm ViTs name pos_embed/cls_token in no_weight_decay(); a composed model holds the ViT deeper down."""
    model = zoo.build("seg", backbone="timm:test_vit", head="deeplabv3", num_classes=3)
    names = {id(p): n for n, p in model.net.named_parameters()}
    groups = param_groups(model, TrainConfig(weight_decay=0.05))
    decayed = {names[id(p)] for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    nested = [n for n in names.values() if n.endswith(("pos_embed", "cls_token"))]
    assert nested and not set(nested) & decayed
