"""The Trainer: one training loop for every task.

>>> trainer = zoo.Trainer(max_epochs=20, batch_size=64, lr=1e-3, precision="bf16-mixed", out_dir="runs/x")
>>> result = trainer.fit(model, "data/train", "data/val")            # paths, Datasets or DataLoaders
>>> trainer.fit(model, "data/train", "data/val", resume="last")      # or a checkpoint path

It knows no task: reading data, collating, the loss, the evaluation forward, the metrics and the
plots all come from ``model.task_impl``. Settings are the fields of
:class:`~zoo_core.train.config.TrainConfig`. The loop below reads top to bottom; callbacks
(:mod:`zoo_core.train.callbacks`) are called by hook name. The hot loop never reads a value back from
the device: losses are summed on the device and read every ``log_every_n_steps`` steps, which is
also when a non-finite loss is detected (the step and the batch's sources are still named exactly).
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import torch

from ..errors import NonFiniteMetricError, NonFiniteOutputError
from ..evaluate import autocast, evaluation_loop, scalar_metrics
from ..finite import check_finite_metrics
from . import checkpoint as C
from . import out_dir as run_dir
from . import perf
from . import distributed as D
from .callbacks import (Callback, EarlyStopping, LRMonitor, ModelCheckpoint, ModelEMA, check_callbacks, mode_of,
                        watched_metric)
from .config import TrainConfig
from ..data.folders import dataset_splits, missing_split_error
from .data import base_dataset, make_loader, read_data, set_loader_epoch
from .interrupt import InterruptFlag, TrainingInterrupted, interrupted
from .loggers import FitResult, RunLogger, make_progress, print_fit_summary  # noqa: F401  (FitResult: re-export)
from .numerics import FiniteGuard, NonFiniteLossError, numerics, seed_everything  # noqa: F401
from .optim import apply_freezing, build_optimizer, frozen_norm_modules
from .resume import CheckpointMixin, TrainState
from .schedulers import LRSchedule

if TYPE_CHECKING:
    from ..model import ZooModel


class Trainer(CheckpointMixin):
    """Trains any zoo model; settings are :class:`TrainConfig` fields (``Trainer(max_epochs=5, ...)``).

    ``callbacks``: extra :class:`~zoo_core.train.callbacks.Callback` instances.
    """

    def __init__(self, config: TrainConfig | None = None, *, callbacks: Iterable[Callback] = (),
                 **settings: Any) -> None:
        self.config = config.replace(**settings) if config is not None else TrainConfig.from_dict(settings)
        self.user_callbacks = check_callbacks(list(callbacks))
        self.state = TrainState()
        self.optimizer: torch.optim.Optimizer | None = None
        self.should_stop = False
        self.stop_reason = ""
        self.epoch_log: dict[str, float] = {}
        self.metrics: dict[str, Any] = {}

    # ---- the run ----------------------------------------------------------------------------------
    def fit(self, model: "ZooModel", train: Any, val: Any = None, *,
            resume: str | Path | bool | None = None) -> FitResult:
        """Train ``model`` in place on ``train``, validating on ``val`` each epoch; see the module doc.

        ``train`` given as a dataset root holding ``train/`` and ``val/`` (what ``zoo data synth``
        writes) validates on its ``val/`` split when ``val`` is None; ``val=False`` trains without
        validation. ``resume``: ``"last"`` (or True) continues from ``out_dir/last.pt``, a path from that
        checkpoint; without it, an ``out_dir`` that already holds a run is refused unless ``overwrite``, and
        so it is when the path is not this ``out_dir``'s own ``last.pt``/``best.pt`` (a new run here).
        """
        if val is None and isinstance(train, (str, Path)):
            present = dataset_splits(train)  # train/ + val/ folders, or the format's own splits (YOLO, VOC)
            if present and "val" not in present:  # never train on a root's train/ without a word about val
                raise missing_split_error(train, "val", present)
            val = train if present else None  # the task reads split="val" of the same root
        val = None if val is False else val
        cfg = self.config
        self.env = env = D.setup(cfg.device)
        self.out_dir = Path(cfg.out_dir)
        self.last_path, self.best_path = self.out_dir / "last.pt", self.out_dir / "best.pt"
        self.model, self.task = model, model.task_impl
        self.should_stop, self.stop_reason = False, ""
        self.good_checkpoint: Path | None = None  # what a NaN resets to: the resumed or a written checkpoint
        trainable = [(p, p.requires_grad) for p in model.net.parameters()]  # freezing lasts for this run only
        claimed = None  # the out_dir's lock: one run at a time (zoo_core.train.out_dir)
        try:
            claimed = run_dir.claim(self.out_dir, env)
            ckpt = self._read_resume(resume)
            # only a resume from this out_dir's own last.pt/best.pt continues the run here; any other is a new run
            run_dir.prepare(self.out_dir, env, resume_from=C.resume_path(resume, self.last_path),
                            overwrite=cfg.overwrite)
            with numerics(cfg.deterministic), perf.matmul_precision(cfg.matmul_precision):
                seed_everything(cfg.seed)
                return self._fit(model, train, val, ckpt)
        except NonFiniteLossError as exc:
            exc.args = (f"{exc.args[0]}. {self._reset_after_nan(model)}",)
            raise
        finally:
            for p, flag in trainable:
                p.requires_grad_(flag)
            run_dir.release(claimed)
            D.teardown(env)

    def _fit(self, model: "ZooModel", train: Any, val: Any, ckpt: dict | None) -> FitResult:
        cfg, env = self.config, self.env
        if cfg.image_size:
            model.set_image_size(cfg.image_size)
        self.train_loader = self._loader(train, train=True)
        train_names = getattr(base_dataset(self.train_loader), "class_names", None)
        self.val_loader = self._loader(val, train=False, class_names=train_names) if val is not None else None
        if train_names and len(train_names) == model.num_classes and \
                model.class_names == [f"class_{i}" for i in range(model.num_classes)]:
            model.class_names = list(train_names)
        self.monitor, self.mode = watched_metric(cfg, self.task, validating=self.val_loader is not None,
                                                 class_names=list(train_names or model.class_names), model=model)

        model.to(env.device)
        self.channels_last = perf.use_channels_last(model.net, env.device, cfg.channels_last)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        self.raw_net = raw_net = model.net
        apply_freezing(model, cfg)
        sync_bn = D.convert_sync_batchnorm(raw_net) if cfg.sync_batchnorm and env.distributed else {}
        self.frozen_norms = frozen_norm_modules(raw_net)  # after the conversion: the modules that will run
        self.optimizer = build_optimizer(model, cfg)
        raw_net.zero_grad(set_to_none=True)  # gradients left on the model must not join the first step
        n_batches = len(self.train_loader) if cfg.limit_train_batches is None else \
            min(len(self.train_loader), cfg.limit_train_batches)
        self.batches_per_epoch = n_batches
        self.scheduler = LRSchedule(self.optimizer, cfg, mode=self.mode,
                                    steps_per_epoch=math.ceil(n_batches / cfg.accumulate_grad_batches))
        self.scaler = torch.amp.GradScaler(env.device.type, enabled=cfg.precision == "16-mixed")
        self.ema = ModelEMA(raw_net, cfg.ema) if cfg.ema is not None else None
        self.checkpointer = ModelCheckpoint(self.monitor, self.mode, save_best=cfg.save_best,
                                            every_n_steps=cfg.save_every_n_steps)
        self.callbacks: list[Any] = [c for c in (self.ema, self.checkpointer, LRMonitor()) if c is not None]
        if cfg.early_stopping:
            metric = cfg.early_stopping_metric or self.monitor
            mode = self.mode if metric == self.monitor else mode_of(self.task, metric)
            self.callbacks.append(EarlyStopping(metric, cfg.early_stopping, mode,
                                                cfg.early_stopping_min_delta))
        self.callbacks += self.user_callbacks
        self.state, self.guard = TrainState(), FiniteGuard()
        self.step_lrs: list[float] = []
        self.resumed_losses: dict[str, Any] = {}
        self.epoch_sums: dict[str, torch.Tensor] = {}
        self.epoch_count = 0
        self.boundary_sums: tuple[dict[str, torch.Tensor], int] = ({}, 0)  # the sums at the last optimizer step
        rng = self._restore(ckpt) if ckpt is not None else None

        net = D.wrap_ddp(raw_net, env, find_unused_parameters=cfg.find_unused_parameters)
        if cfg.compile:
            net = perf.compile_net(net, cfg.compile_backend, cfg.compile_mode)
        self.cudagraphs = perf.uses_cudagraphs(cfg.compile, cfg.compile_mode)
        self.logger = RunLogger(self.out_dir, enabled=env.is_main, tensorboard=cfg.tensorboard, verbose=cfg.verbose)
        self.logger.start(resume_epoch=self.state.epoch, resume_step=self.state.step if ckpt else None)
        self.logger.write_config(self.resolved_config())
        model.net = net
        self.interrupt = InterruptFlag(enabled=not env.distributed)
        try:
            self._emit("on_fit_start")
            if rng is not None:
                C.set_rng_state(rng)  # last: nothing above may draw from the restored generators
            with self.interrupt:
                self._epochs()
        except KeyboardInterrupt as exc:
            if isinstance(exc, TrainingInterrupted):
                raise
            raise interrupted(self.good_checkpoint, self.out_dir,  # a second Ctrl-C, or one under torchrun
                              f"at once in epoch {self.state.epoch + 1} (step {self.state.step})") from exc
        finally:
            model.net = raw_net
            D.restore_modules(raw_net, sync_bn)
            self.logger.close()
        return self._finish(model)

    def _epochs(self) -> None:
        """Train and validate epoch after epoch until ``max_epochs``, early stopping or Ctrl-C."""
        cfg = self.config
        while self.state.epoch < cfg.max_epochs and not self.should_stop:
            t0 = time.perf_counter()
            try:
                self.epoch_log = self.train_epoch()
            except RuntimeError as exc:  # "DataLoader worker exited unexpectedly": a user's loader whose
                if self.interrupt.requested:  # workers died of the same Ctrl-C; saved at the last finished step
                    raise self._save_interrupted() from exc
                raise
            self._emit("on_train_epoch_end")
            last = self.state.epoch + 1 == cfg.max_epochs
            if self.val_loader is None:  # no validation data: the training loss is the metric
                self.metrics = {"train_loss": self.epoch_log.get("train_loss", float("nan"))}
            if self.val_loader is None or (self.state.epoch + 1) % cfg.val_every_n_epochs == 0 or last:
                if self.val_loader is not None:
                    try:
                        self.metrics = self.validate()
                    except (NonFiniteOutputError, NonFiniteMetricError) as exc:
                        raise self._keep_epoch(exc)
                self._emit("on_validation_end", scalar_metrics(self.metrics))
                self.scheduler.on_validation(scalar_metrics(self.metrics).get(self.monitor))
                self.epoch_log.update(scalar_metrics(self.metrics))
            self.logger.log_epoch(self.state.epoch, self.state.step, self.epoch_log, time.perf_counter() - t0)
            self.state.epoch += 1
            self.state.batch_in_epoch = 0
            self._emit("on_epoch_end")
            if self.interrupt.requested:  # on_epoch_end has just written last.pt
                raise interrupted(self.last_path, self.out_dir, f"after epoch {self.state.epoch}")
        self._emit("on_fit_end")

    def _save_interrupted(self) -> TrainingInterrupted:
        """After Ctrl-C: write ``last.pt`` at the last finished optimizer step; the exception to raise."""
        self.epoch_sums, self.epoch_count = self.boundary_sums  # the epoch's losses up to that step
        path = self.save_checkpoint(self.last_path)
        return interrupted(path, self.out_dir, f"in epoch {self.state.epoch + 1} at step {self.state.step}")

    def train_epoch(self) -> dict[str, float]:
        """One pass over the training data (from ``batch_in_epoch`` when resuming mid-epoch)."""
        cfg, env, model, state = self.config, self.env, self.model, self.state
        model.train()
        for m in self.frozen_norms:
            m.eval()
        self._emit("on_train_epoch_start")
        skip = state.batch_in_epoch
        loader = self.train_loader
        accum, total = cfg.accumulate_grad_batches, self.batches_per_epoch
        saved = self.resumed_losses if skip and env.rank == 0 else {}  # rank 0 continues the epoch's sums
        sums: dict[str, torch.Tensor] = {k: torch.tensor(v, device=env.device) for k, v in
                                         (saved.get("sums") or {}).items()}
        self.epoch_count = int(saved.get("count", 0))
        self.resumed_losses = {}
        self.epoch_sums = sums
        self.boundary_sums = (dict(sums), self.epoch_count)  # before the loader starts (its workers may fail)
        positioned = set_loader_epoch(loader, state.epoch, skip * (loader.batch_size or 1))
        batches = iter(loader)
        if not positioned:
            warnings.warn(f"resuming mid-epoch with a user DataLoader: re-reading and dropping {skip} batches")
            for _ in range(skip):
                next(batches)
        logged: tuple[dict[str, float], float] = ({}, 0.0)
        bar = make_progress(total, f"epoch {state.epoch + 1}/{cfg.max_epochs}",
                            enabled=cfg.progress_bar if env.is_main else False)
        if bar is not None:
            bar.update(skip)
        ddp = getattr(model.net, "no_sync", None) or getattr(getattr(model.net, "_orig_mod", None), "no_sync", None)
        for i, batch in enumerate(batches, start=skip):
            if i >= total:
                break
            boundary = (i + 1) % accum == 0 or i + 1 == total
            window = min(accum, total - (i // accum) * accum)  # the epoch's last window may be shorter
            if self.cudagraphs:
                perf.mark_step_begin()
            data = batch.to(env.device, channels_last=self.channels_last, non_blocking=True)
            with (ddp() if ddp is not None and not boundary else contextlib.nullcontext()):
                with autocast(env.device, cfg.precision):
                    losses = self.task.loss(model, data)
                loss = losses["loss"]
                self.scaler.scale(loss / window if window > 1 else loss).backward()
            self.guard.record(loss, state.step, state.epoch, i, batch.meta)
            for k, v in losses.items():  # a copy, never the loss itself (CUDA graphs overwrite their outputs)
                sums[k] = sums[k] + v.detach().float() if k in sums else v.detach().float().clone()
            self.epoch_count += 1
            if boundary:
                self.optimizer_step()
                state.batch_in_epoch = i + 1
                self._emit("on_optimizer_step")
                if state.step % cfg.log_every_n_steps == 0:
                    logged = self._log_steps(sums, self.epoch_count, logged, bar)
                self.boundary_sums = (dict(sums), self.epoch_count)
                if self.interrupt.requested:
                    raise self._save_interrupted()
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        self.guard.check(env, self.last_path)
        totals = self._reduce(sums, self.epoch_count)
        return {("train_" + k if not k.startswith("train") else k): v for k, v in totals.items()}

    def optimizer_step(self) -> None:
        """Unscale and clip (if asked), step (the scaler skips steps with inf/NaN gradients), schedule."""
        cfg = self.config
        if cfg.gradient_clip_val:
            self.scaler.unscale_(self.optimizer)
            params = [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(params, cfg.gradient_clip_val, foreach=True)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.step_lrs = [float(g["lr"]) for g in self.optimizer.param_groups]  # the lrs this step used
        self.scheduler.step()
        self.state.step += 1

    def validate(self) -> dict[str, Any]:
        """The evaluator's loop over the validation data with the evaluated weights (EMA when on)."""
        model, cfg = self.model, self.config
        wrapped, model.net = model.net, (self.ema.module if self.ema is not None else self.raw_net)
        try:
            names = getattr(base_dataset(self.val_loader), "class_names", None) or model.class_names
            metrics = self.task.metrics_for(model, list(names))
            evaluation_loop(model, self.task, self.val_loader, metrics, device=self.env.device,
                            precision=cfg.precision, channels_last=self.channels_last,
                            limit_batches=cfg.limit_val_batches)
        finally:
            model.net = wrapped
        return dict(check_finite_metrics(D.merge_metrics(metrics, self.env).compute(), "validation"))

    # ---- helpers ----------------------------------------------------------------------------------
    def _emit(self, hook: str, *args: Any) -> None:
        for cb in self.callbacks:
            fn = getattr(cb, hook, None)
            if fn is not None:
                fn(self, *args)

    def _loader(self, data: Any, *, train: bool, class_names: list[str] | None = None) -> Any:
        cfg, env = self.config, self.env
        data = read_data(data, self.task, self.model, split="train" if train else "val", train=train,
                         image_size=cfg.image_size, class_names=class_names)
        if isinstance(data, torch.utils.data.DataLoader):
            return data
        bs = cfg.batch_size if train else (cfg.eval_batch_size or cfg.batch_size)
        return make_loader(data, self.task.collate, batch_size=bs, train=train, seed=cfg.seed, rank=env.rank,
                           world_size=env.world_size, num_workers=cfg.num_workers,
                           prefetch_factor=cfg.prefetch_factor, pin_memory=env.device.type == "cuda",
                           seed_per_sample=cfg.seed_per_sample)

    def _read_sums(self, sums: dict[str, torch.Tensor], count: int) -> tuple[dict[str, float], float]:
        """The loss sums and the batch count, summed over ranks: the one host sync of a log step."""
        if not sums:
            return {}, float(count)
        keys = sorted(sums)
        t = torch.stack([sums[k] for k in keys] + [torch.tensor(float(count), device=sums[keys[0]].device)])
        t = D.all_reduce_sum(t, self.env).tolist()
        return dict(zip(keys, t[:-1])), t[-1]

    def _reduce(self, sums: dict[str, torch.Tensor], count: int) -> dict[str, float]:
        totals, n = self._read_sums(sums, count)
        return {k: v / max(n, 1.0) for k, v in totals.items()}

    def _log_steps(self, sums: dict[str, torch.Tensor], count: int, prev: tuple[dict[str, float], float],
                   bar: Any) -> tuple[dict[str, float], float]:
        self.guard.check(self.env, self.last_path)
        totals, n = self._read_sums(sums, count)
        values = {k: (v - prev[0].get(k, 0.0)) / max(n - prev[1], 1.0) for k, v in totals.items()}
        values["lr"] = self.step_lrs[-1]  # the head's lr of the step just logged, not the next one
        self.logger.log_step(values, self.state.step)
        if bar is not None:
            bar.set_postfix(loss=f"{values.get('loss', float('nan')):.4g}", refresh=False)
        return totals, n

    def resolved_config(self) -> dict[str, Any]:
        """The run's settings with defaults resolved, plus what was trained (written to config.yaml)."""
        m = self.model
        return {"trainer": {**self.config.to_dict(), "monitor": self.monitor, "monitor_mode": self.mode},
                "speed": perf.describe(self.raw_net, self.env.device, self.config, self.optimizer),
                "model": C.plain(m.config), "task": m.task, "class_names": list(m.class_names),
                "preprocess": C.plain(m.preprocess.to_dict()), "world_size": self.env.world_size,
                "device": str(self.env.device)}

    def _finish(self, model: "ZooModel") -> FitResult:
        cfg, env = self.config, self.env
        if self.ema is not None:
            self.raw_net.load_state_dict(self.ema.module.state_dict())
        model.last_metrics = scalar_metrics(self.metrics)
        model.eval()
        result = FitResult(metrics=scalar_metrics(self.metrics), monitor=self.monitor,
                           best_value=self.checkpointer.best_value,  # best_epoch: 1-based, as metrics.csv
                           best_epoch=(None if self.checkpointer.best_epoch is None
                                       else self.checkpointer.best_epoch + 1),
                           epochs=self.state.epoch, steps=self.state.step, stopped_early=bool(self.stop_reason),
                           out_dir=self.out_dir, last_checkpoint=self.last_path,
                           best_checkpoint=self.best_path if self.best_path.exists() else None)
        if not env.is_main:
            return result
        if cfg.plots and self.val_loader is not None and self.metrics:
            with run_dir.recording(self.out_dir, "plots"):  # listed as the run's, even if plotting stops midway
                result.plots = list(self.task.plots(model, base_dataset(self.val_loader), self.metrics,
                                                    self.out_dir / "plots"))
        model.config["training"] = {"epochs": self.state.epoch, "steps": self.state.step,
                                    "monitor": self.monitor, "best": self.checkpointer.best_value,
                                    "out_dir": str(self.out_dir)}
        result.model_dir = model.save(self.out_dir / "model")
        if cfg.verbose:
            print_fit_summary(f"zoo train: {model.label} ({model.task})", result, self.stop_reason)
        return result
