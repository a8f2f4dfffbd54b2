"""The Trainer's speed settings change speed, not results (on the CPU), and its step never syncs."""

from __future__ import annotations

import argparse
import copy

import pytest
import torch

import trainer_toy as T
from trainer_toy import toy  # noqa: F401  (fixture)
import zoo_core as zoo
from zoo_core.bench.runner import batch_loader
from zoo_core.bench.syncs import HostSyncCounter
from zoo_core.train import perf
from zoo_core.train.callbacks import Callback
from zoo_core.train.sources import add_arguments, from_sources


def toy_batch(model, n: int = 8):
    data = T.ToyData(n, train=True)
    return model.task_impl.collate([data[i] for i in range(n)])


class SyncsPerStep(Callback):
    """Counts host syncs (through the dispatcher) between consecutive optimizer steps."""

    def __init__(self) -> None:
        self.counter = HostSyncCounter()
        self.marks: list[int] = []

    def on_fit_start(self, trainer) -> None:
        self.counter.__enter__()
        self.marks.append(self.counter.count)

    def on_optimizer_step(self, trainer) -> None:
        self.marks.append(self.counter.count)

    def on_train_epoch_end(self, trainer) -> None:
        self.counter.__exit__(None, None, None)

    def per_step(self) -> list[int]:
        return [b - a for a, b in zip(self.marks, self.marks[1:])]


def fit(model, tmp_path, steps: int = 4, callbacks=(), **settings):
    batch = toy_batch(model)
    trainer = zoo.Trainer(max_epochs=1, out_dir=tmp_path, tensorboard=False, plots=False, verbose=False,
                          progress_bar=False, callbacks=callbacks, **settings)
    return trainer, trainer.fit(model, batch_loader(batch, steps))


def test_the_training_step_reads_nothing_back_except_at_log_steps(toy, tmp_path):
    syncs = SyncsPerStep()
    model = zoo.load("toynet", task="tt")
    # SGD: Adam keeps its step counters on the host unless fused (as on CUDA), which a CPU run cannot tell
    # from a device read; step 1 also holds the epoch's DataLoader iterator (its seed is read once)
    fit(model, tmp_path, steps=6, callbacks=[syncs], log_every_n_steps=3, ema=0.9, gradient_clip_val=1.0,
        optimizer="sgd")
    per_step = syncs.per_step()
    assert len(per_step) == 6
    # steps 3 and 6 are log steps: right after their optimizer step (so in the next interval) the
    # non-finite check reads one flag back; no other step reads anything
    assert [n > 0 for n in per_step[1:]] == [False, False, True, False, False], (per_step, syncs.counter.ops)
    assert syncs.counter.count == 3  # the iterator's seed, and one read at each of the two log steps


def weights_after(tmp_path, name: str, **settings) -> dict[str, torch.Tensor]:
    model = zoo.load("toynet_plain", task="tt")
    fit(model, tmp_path / name, **{"optimizer": "sgd", "lr": 0.1, **settings})
    return {k: v.detach().clone() for k, v in model.net.state_dict().items()}


def test_compile_trains_to_the_same_weights_as_eager(toy, tmp_path):
    from torch._dynamo.utils import counters

    eager = weights_after(tmp_path, "eager")
    counters.clear()
    compiled = weights_after(tmp_path, "compiled", compile=True, compile_backend="aot_eager")
    assert counters["aot_autograd"]["ok"] >= 1  # the network really ran compiled (forward and backward)
    assert eager.keys() == compiled.keys()  # no _orig_mod. prefixes
    for k in eager:
        torch.testing.assert_close(compiled[k], eager[k], rtol=1e-4, atol=1e-5)
    assert any(not torch.equal(v, weights_after(tmp_path, "other", lr=0.05)[k])
               for k, v in eager.items())  # the comparison can fail: other settings give other weights


def test_channels_last_and_matmul_precision_keep_the_results(toy, tmp_path):
    base = weights_after(tmp_path, "base", channels_last=False)
    nhwc = weights_after(tmp_path, "nhwc", channels_last=True)
    high = weights_after(tmp_path, "high", matmul_precision="high")
    for k in base:
        torch.testing.assert_close(nhwc[k].contiguous(), base[k], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(high[k], base[k], rtol=1.6e-2, atol=1e-3)  # bf16 rounding at most
    assert torch.get_float32_matmul_precision() == "highest"  # restored after fit


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_fused_optimizer_kernels_give_the_per_parameter_results(toy, tmp_path, optimizer):
    loop = weights_after(tmp_path, "loop", optimizer=optimizer, fused_optimizer=False)
    fused = weights_after(tmp_path, "fused", optimizer=optimizer)  # auto: fused on the CPU too
    for k in loop:
        torch.testing.assert_close(fused[k], loop[k], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="no fused rmsprop"):
        weights_after(tmp_path, "rms", optimizer="rmsprop", fused_optimizer=True)


def test_bf16_autocast_stays_within_bf16_rounding_of_fp32(toy, tmp_path):
    model = zoo.load("toynet_plain", task="tt")
    batch = toy_batch(model)
    with torch.no_grad():
        ref = model.task_impl.loss(model, batch)["loss"]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model.task_impl.loss(model, batch)["loss"]
    torch.testing.assert_close(low, ref, rtol=2e-2, atol=1e-2)


def test_channels_last_auto_means_cuda_and_a_convolution():
    conv, mlp = torch.nn.Conv2d(3, 4, 3), torch.nn.Sequential(torch.nn.Linear(3, 4))
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert perf.use_channels_last(conv, cuda, None) and not perf.use_channels_last(conv, cpu, None)
    assert not perf.use_channels_last(mlp, cuda, None)
    assert perf.use_channels_last(mlp, cpu, True) and not perf.use_channels_last(conv, cuda, False)
    assert perf.uses_cudagraphs(True, "reduce-overhead") and not perf.uses_cudagraphs(False, "reduce-overhead")
    assert not perf.uses_cudagraphs(True, None)


def test_the_resolved_speed_settings_are_written_with_the_run(toy, tmp_path):
    import yaml

    model = zoo.load("toynet", task="tt")
    trainer, _ = fit(model, tmp_path, steps=2)
    speed = trainer.resolved_config()["speed"]
    assert speed["channels_last"] is False and speed["cudagraphs"] is False
    assert speed["fused_optimizer"] is True  # adamw on the CPU: torch has a fused kernel
    written = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert written["speed"]["channels_last"] is False


@pytest.mark.parametrize("argv, expected", [
    ([], None), (["--channels-last"], True), (["--no-channels-last"], False),
    (["--channels-last", "false"], False), (["--channels-last", "auto"], None), (["--channels-last", "yes"], True),
])
def test_channels_last_flag_takes_auto_on_off(argv, expected):
    p = argparse.ArgumentParser()
    add_arguments(p)
    assert from_sources({}, p.parse_args(argv)).channels_last is expected


def test_matmul_precision_is_checked():
    with pytest.raises(ValueError, match="matmul_precision"):
        zoo.Trainer(matmul_precision="fast")


@pytest.mark.parametrize("name, task, options", [
    ("fasterrcnn_mobilenet_v3_large_320_fpn", "det", {"min_size": 64, "max_size": 64}),
    ("unet", "seg", {"backbone": "resnet18"}),
])
def test_channels_last_keeps_detection_and_segmentation_losses(name, task, options):
    from zoo_core.bench.runner import synthetic_batch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        losses = []
        base = zoo.load(name, task=task, num_classes=3, **options)
        base.set_image_size(64)
        for channels_last in (False, True):
            model = copy.deepcopy(base)
            if channels_last:
                model.to(memory_format=torch.channels_last)
            batch = synthetic_batch(model, 2, "cpu", channels_last=channels_last)
            torch.manual_seed(0)  # detection samples proposals at random
            with torch.no_grad():
                losses.append({k: float(v) for k, v in model.task_impl.loss(model.train(), batch).items()})
        assert losses[0].keys() == losses[1].keys()
        for k in losses[0]:
            assert losses[1][k] == pytest.approx(losses[0][k], rel=1e-4, abs=1e-5), k
    finally:
        torch.set_num_threads(threads)
