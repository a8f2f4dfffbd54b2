"""The Trainer's checkpoints: what a checkpoint holds, writing it, and resuming from one.

A mixin of :class:`~zoo_core.train.trainer.Trainer` (kept apart so the loop reads on one screen);
the file format, atomic writes and migrations are :mod:`zoo_core.train.checkpoint`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import IncompatibleError, ZooError, warn
from ..evaluate import scalar_metrics
from ..saving import model_label
from . import checkpoint as C
from .optim import groups_mismatch, legacy_group_names, merge_equal_groups


#: settings that shape the lr schedule; a resume with other values recomputes it (and says so)
SCHEDULE_SETTINGS = ("max_epochs", "warmup_epochs", "warmup_start_factor", "min_lr_ratio", "step_epochs",
                     "step_gamma", "plateau_patience")
#: settings held in the optimizer's state; a resume restores the checkpoint's (and says so)
OPTIMIZER_SETTINGS = ("lr", "backbone_lr_mult", "weight_decay", "momentum", "nesterov")


@dataclass
class TrainState:
    """Where the run is: ``epoch`` in progress (0-based), optimizer ``step`` s so far, and how many
    batches of the current epoch are done (non-zero only in a mid-epoch checkpoint)."""

    epoch: int = 0
    step: int = 0
    batch_in_epoch: int = 0


class CheckpointMixin:
    """``checkpoint_dict``, ``save_checkpoint`` and the resume side (``_read_resume``, ``_restore``)."""

    # set by Trainer.fit
    model: Any
    env: Any
    config: Any
    state: Any
    raw_net: Any
    ema: Any
    optimizer: Any
    scheduler: Any
    scaler: Any
    callbacks: list[Any]
    guard: Any
    metrics: dict[str, Any]
    last_path: Path
    out_dir: Path

    def checkpoint_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly (see :mod:`zoo_core.train.checkpoint`)."""
        from ..saving import versions

        model, env = self.model, self.env
        weights = (self.ema.module if self.ema is not None else self.raw_net).state_dict()
        rng = C.rng_state()
        ranks = [None] * env.world_size
        if env.distributed:
            torch.distributed.all_gather_object(ranks, rng)
        out = {"format": C.FORMAT, "format_version": C.FORMAT_VERSION, "zoo_version": versions()["zoo"],
               "versions": C.plain(versions()), "task": model.task, "model_config": C.plain(model.config),
               "class_names": list(model.class_names), "preprocess": C.plain(model.preprocess.to_dict()),
               "model": weights, "optimizer": self.optimizer.state_dict(),
               "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
               "progress": {"epoch": self.state.epoch, "step": self.state.step,
                            "batch_in_epoch": self.state.batch_in_epoch, "world_size": env.world_size,
                            "batch_size": self.config.batch_size, "step_lrs": list(self.step_lrs)},
               "epoch_losses": self._epoch_losses() if self.state.batch_in_epoch else {},
               "rng": rng, "rng_per_rank": ranks if env.distributed else [],
               "data": {"seed": self.config.seed, "epoch": self.state.epoch,
                        "batches_done": self.state.batch_in_epoch},
               "callbacks": {cb.state_key: C.plain(cb.state_dict()) for cb in self.callbacks
                             if hasattr(cb, "state_dict")},
               "config": self.config.to_dict(), "metrics": scalar_metrics(self.metrics)}
        if self.ema is not None:
            out["train_model"] = self.raw_net.state_dict()
        return out

    def _epoch_losses(self) -> dict[str, Any]:
        """This epoch's loss sums and batch count so far, summed over ranks (every rank calls this), so a
        mid-epoch resume logs the same epoch mean as an uninterrupted run; rank 0 restores them."""
        sums, count = self._read_sums(self.epoch_sums, self.epoch_count)
        return {"sums": sums, "count": int(count)}

    def save_checkpoint(self, path: Path) -> Path:
        """Write a checkpoint atomically (rank 0); refuses to save weights a NaN loss has touched."""
        self.guard.check(self.env, self.last_path)
        ckpt = self.checkpoint_dict()
        if self.env.is_main:
            C.atomic_save(ckpt, path)
        self.good_checkpoint = Path(path)
        return path

    def _reset_after_nan(self, model: Any) -> str:
        """Put the last good checkpoint's weights back into ``model`` (NaN/Inf updates already reached it).

        Only a checkpoint of this run counts: the one it resumed from or the last one it wrote.
        """
        good = self.good_checkpoint
        if good is None or not good.exists():
            return ("The model's weights in memory are no longer finite and this run has no checkpoint: "
                    "load the model again before using it")
        model.net.load_state_dict(C.load_checkpoint(good)["model"])
        return f"The model in memory was reset to the weights of {good}"

    def _keep_epoch(self, exc: ZooError) -> ZooError:
        """A validation refused NaN/Inf outputs or metrics: write ``last.pt`` first (when the weights are finite),
        so the epoch's training survives and the run resumes once the cause is fixed; ``exc``, telling so."""
        from ..finite import nonfinite_weights

        if nonfinite_weights(self.raw_net):  # the message already names the tensors; nothing worth keeping
            return exc
        path = self.save_checkpoint(self.last_path)
        exc.args = (f"{exc.args[0]} This epoch's training is kept in {path}: once the cause is fixed (e.g. "
                    "precision='32'), resume with resume='last' (zoo train --resume last) to validate it again",)
        return exc

    def _read_resume(self, resume: str | Path | bool | None) -> dict | None:
        path = C.resume_path(resume, self.last_path)  # Lightning-style resume=True means the run's last
        if path is None:
            return None
        if path == self.last_path and not path.exists():
            raise ZooError(f"resume='last' but {path} does not exist: nothing to resume in {self.out_dir}; "
                           "start without resume or pass the checkpoint's path")
        ckpt = C.load_checkpoint(path)
        self.good_checkpoint = path
        return ckpt

    def _warn_schedule_change(self, saved: dict[str, Any], state: dict[str, Any]) -> None:
        """Say so when this run's settings differ from the checkpoint's in what shapes the lr.

        The schedule is recomputed from this run's settings (a larger ``max_epochs`` stretches a cosine
        mid-run); the optimizer's own hyperparameters (lr, weight decay, momentum) come back from the
        checkpoint and this run's values are not applied. Neither is an exact continuation.
        """
        cfg, sched = self.config, self.scheduler
        reshaped = [f"{k} {saved[k]!r} -> {getattr(cfg, k)!r}" for k in SCHEDULE_SETTINGS
                    if k in saved and saved[k] != getattr(cfg, k)]
        if state.get("total_steps") not in (None, sched.total_steps):
            reshaped.append(f"length {state['total_steps']} -> {sched.total_steps} optimizer steps")
        if reshaped:
            before, now = state.get("factor"), sched.factor(sched.step_count)
            moved = (f"; at step {sched.step_count} the lr factor goes from {before:.4g} to {now:.4g}"
                     if isinstance(before, float) and before != now else "")
            warn(f"resuming with a changed schedule ({', '.join(reshaped)}; checkpoint -> this run): the "
                 f"{sched.kind} schedule is recomputed for this run's settings instead of continuing the "
                 f"checkpoint's{moved}. Resume with the checkpoint's settings (its config.yaml) to continue it")
        kept = [f"{k} {saved[k]!r} (this run: {getattr(cfg, k)!r})" for k in OPTIMIZER_SETTINGS
                if k in saved and saved[k] != getattr(cfg, k)]
        if kept:
            warn(f"resuming keeps the checkpoint's optimizer settings {', '.join(kept)}: they are part of the "
                 "optimizer state it restores. To train with new values, start a new run from its weights "
                 "(zoo.load(<run>/model) or weights=<checkpoint>) without resume")

    def _matching_optimizer_state(self, state: dict) -> dict:
        """The checkpoint's optimizer state if its parameter groups are this run's, else a refusal.

        A checkpoint written before groups with equal settings were merged holds four groups
        (backbone/head x decay/no_decay) where this run may hold two or one; those merge the same way
        (their parameter indices concatenated in this run's order), so such a run still resumes exactly.
        """
        def names(groups: list[dict]) -> list[str]:
            return [g.get("name", str(i)) for i, g in enumerate(groups)]

        theirs, ours = names(state["param_groups"]), names(self.optimizer.param_groups)
        if theirs != ours and all("base_lr" in g and "_" in str(g.get("name", "")) for g in state["param_groups"]):
            merged = merge_equal_groups(state["param_groups"])
            if names(merged) == ours:
                state, theirs = {**state, "param_groups": merged}, ours
        if theirs == ours:  # same groups: do they hold the same parameters, in the same order?
            reason = groups_mismatch(state["param_groups"], self.optimizer.param_groups,
                                     legacy=lambda: legacy_group_names(self.model, self.config))
            if reason is None:
                return state
            raise IncompatibleError(
                f"the checkpoint's optimizer state does not fit this run's parameters: {reason}. Resume with "
                "the checkpoint's model and settings (its config.yaml), or start a new run from its weights "
                "(zoo.load(<run>/model) or weights=<checkpoint>) without resume")
        raise IncompatibleError(  # torch would only say "different number of parameter groups"
            f"the checkpoint's optimizer has parameter groups {theirs}, this run's has {ours}: "
            "groups split by weight_decay and backbone_lr_mult (equal settings share a group), and by "
            "freezing. Resume with the checkpoint's settings (its config.yaml), or start a new run from its "
            "weights (zoo.load(<run>/model) or weights=<checkpoint>) without resume")

    def _restore(self, ckpt: dict) -> dict | None:
        """Load a checkpoint into the run's components; return the RNG state to restore at the start."""
        from ..weights import load_into

        model, env = self.model, self.env
        if ckpt["task"] != model.task:
            raise IncompatibleError(f"the checkpoint is for task {ckpt['task']!r} (model "
                                    f"{ckpt['model_config'].get('model')!r}), this model is {model.task!r}")
        saved = ckpt.get("config") or {}
        for key in ("optimizer", "scheduler"):  # their states only fit the same kind
            if key in saved and saved[key] != getattr(self.config, key):
                raise IncompatibleError(
                    f"the checkpoint was trained with {key}={saved[key]!r}, this run uses "
                    f"{getattr(self.config, key)!r}: resume with {key}={saved[key]!r}, or start a new run "
                    f"from its weights (zoo.load(<run>/model) or weights=<checkpoint>) without resume")
        optimizer_state = self._matching_optimizer_state(ckpt["optimizer"])
        # Every check that can refuse the resume runs before the model is touched.
        theirs, ours = model_label(ckpt["model_config"]), model.label
        source = f"checkpoint of {theirs} (this model: {ours})"
        trained = f"{theirs}, {ckpt['model_config'].get('num_classes')} classes"
        load_into(self.raw_net, ckpt.get("train_model", ckpt["model"]), source=source, strict=True,
                  advice=f"A run resumes with the model it trained ({trained}): pass that model (zoo train "
                         "--model/--num-classes), or start a new run in another out_dir")
        if self.ema is not None:
            self.ema.module.load_state_dict(ckpt["model"])  # the EMA weights, or the raw ones if EMA is new
        self.optimizer.load_state_dict(optimizer_state)
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if self.scaler.is_enabled() and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        for cb in self.callbacks:
            if hasattr(cb, "load_state_dict") and cb.state_key in ckpt.get("callbacks", {}):
                cb.load_state_dict(ckpt["callbacks"][cb.state_key])
        p = ckpt["progress"]
        self.state = TrainState(p["epoch"], p["step"], p["batch_in_epoch"])
        self.step_lrs = [float(v) for v in p.get("step_lrs") or []]  # what the last step used (logged as lr/...)
        self._warn_schedule_change(saved, ckpt["scheduler"])
        self.resumed_losses = ckpt.get("epoch_losses") or {}  # the interrupted epoch's loss sums so far
        self.metrics = dict(ckpt.get("metrics", {}))
        changed = [f"{what} {theirs} -> {ours}" for what, theirs, ours in
                   (("world size", p["world_size"], env.world_size),
                    ("batch size", p["batch_size"], self.config.batch_size)) if theirs != ours]
        same = not changed
        if changed and p["batch_in_epoch"]:
            warn(f"resuming with {', '.join(changed)} (checkpoint -> this run): the checkpoint's position "
                 f"inside epoch {p['epoch'] + 1} means other samples now, so the run resumes at the start of "
                 f"epoch {p['epoch'] + 1} instead of mid-epoch")
            self.state.batch_in_epoch = 0
        elif changed:
            warn(f"resuming with {', '.join(changed)} (checkpoint -> this run): the data order and random "
                 "streams differ from an uninterrupted run")
        per_rank = ckpt.get("rng_per_rank") or []
        return per_rank[env.rank] if same and len(per_rank) == env.world_size else ckpt["rng"]
