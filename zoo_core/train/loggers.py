"""What a run writes and shows: CSV metrics, TensorBoard events, a progress bar, a summary table.

Only rank 0 logs (the Trainer builds :class:`RunLogger` with ``enabled=False`` elsewhere). Files in
``out_dir``: ``metrics.csv`` (one row per epoch, rewritten atomically as columns appear),
``tensorboard/`` (real event files; on resume, events after the resumed step are purged),
``config.yaml`` (the resolved run configuration). Each is listed in ``out_dir``'s manifest
(:mod:`zoo_core.run_files`) as the zoo's when written.
"""

from __future__ import annotations

import csv
import io
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..errors import ZooError
from ..fileio import atomic_write_bytes
from ..run_files import files_under, record


@dataclass
class FitResult:
    """What ``fit`` returns: the last validation's metrics, best value, files written.

    Epochs are counted from 1, as the progress bar, ``metrics.csv``'s ``epoch`` column and the summary
    table count them: ``best_epoch`` is the number of the epoch whose validation gave ``best_value``
    (None without validation); ``epochs`` is how many epochs have run.
    """

    metrics: dict[str, float] = field(default_factory=dict)
    monitor: str = ""
    best_value: float | None = None
    #: 1-based: the epoch whose validation gave ``best_value`` (metrics.csv's ``epoch`` of that row)
    best_epoch: int | None = None
    epochs: int = 0
    steps: int = 0
    stopped_early: bool = False
    out_dir: Path | None = None
    last_checkpoint: Path | None = None
    best_checkpoint: Path | None = None
    model_dir: Path | None = None
    plots: list[Path] = field(default_factory=list)


def make_progress(total: int | None, desc: str, *, enabled: bool | None = None, leave: bool = False) -> Any:
    """A tqdm bar on stderr, or None when disabled (default: only when stderr is a terminal)."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=leave, dynamic_ncols=True, mininterval=0.5)


class CSVLogger:
    """``metrics.csv``: one row per epoch, numbered from 1 as the console and the summary table show
    them; a run resumed at epoch index ``e`` (0-based: ``e`` epochs done) keeps rows 1..e only.

    The file is listed in its folder's manifest (:mod:`zoo_core.run_files`) as the zoo's.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: list[dict[str, Any]] = []

    def resume(self, from_epoch: int) -> None:
        """Keep the rows of the epochs done; a file that cannot be read that way is an error naming the row."""
        if not self.path.exists():
            return
        rows, line = [], 1
        try:
            with open(self.path, newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                if reader.fieldnames is not None and "epoch" not in reader.fieldnames:
                    raise ValueError(f"its header has no 'epoch' column ({', '.join(reader.fieldnames)[:200]})")
                for row in reader:
                    line = reader.line_num
                    if None in row:
                        raise ValueError(f"line {line} has more cells than the header has columns")
                    epoch = (row.get("epoch") or "").strip()
                    if not (epoch.isascii() and epoch.isdigit()):
                        raise ValueError(f"line {line}: epoch {epoch!r} is not a whole number")
                    if int(epoch) <= from_epoch:
                        rows.append(row)
        except UnicodeDecodeError as exc:
            raise ZooError(self._unreadable(f"after line {line}: not UTF-8 text ({exc.reason})")) from exc
        except csv.Error as exc:
            raise ZooError(self._unreadable(f"after line {line}: {exc}")) from exc
        except ValueError as exc:
            raise ZooError(self._unreadable(str(exc))) from exc
        self.rows = rows

    def _unreadable(self, why: str) -> str:
        # a file changed since the zoo wrote it never gets here: the out_dir check refuses it first, naming it
        return (f"cannot resume the metrics log {self.path}: {why}. Fix that row, or delete {self.path.name} to "
                "resume without the earlier epochs' rows")

    def log(self, row: Mapping[str, Any]) -> None:
        self.rows.append(dict(row))
        columns: list[str] = []
        for r in self.rows:
            columns += [k for k in r if k not in columns]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns)
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_bytes(self.path, buf.getvalue().encode(), what="metrics log", elsewhere="choose another out_dir",
                           record_in=self.path.parent)


class TensorBoardLogger:
    """Scalars to ``out_dir/tensorboard`` through ``torch.utils.tensorboard``."""

    def __init__(self, log_dir: Path, *, purge_step: int | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)

    def log(self, values: Mapping[str, float], step: int) -> None:
        for key, value in values.items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(key, value, global_step=step)

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()


def _tag(key: str) -> str:
    """TensorBoard tag of an epoch value: ``lr/head`` as is, ``train_loss`` -> ``epoch/train_loss``,
    validation metrics -> ``val/<name>``."""
    if "/" in key:
        return key
    return f"epoch/{key}" if key.startswith("train_") else f"val/{key}"


class RunLogger:
    """The run's loggers together; every method is a no-op when not ``enabled`` (ranks > 0)."""

    def __init__(self, out_dir: Path, *, enabled: bool, tensorboard: bool, verbose: bool) -> None:
        self.out_dir, self.enabled, self.verbose = out_dir, enabled, verbose
        self.csv = CSVLogger(out_dir / "metrics.csv") if enabled else None
        self.use_tensorboard = tensorboard and enabled
        self.tb: TensorBoardLogger | None = None
        self.tb_files: list[Path] = []

    def start(self, *, resume_epoch: int = 0, resume_step: int | None = None) -> None:
        if not self.enabled:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if self.csv is not None and resume_step is not None:
            self.csv.resume(resume_epoch)
        if self.use_tensorboard:
            before = set(files_under(self.out_dir / "tensorboard"))
            self.tb = TensorBoardLogger(self.out_dir / "tensorboard", purge_step=resume_step)
            self.tb_files = [p for p in files_under(self.out_dir / "tensorboard") if p not in before]
            record(self.out_dir, *self.tb_files)  # at once: a killed run's events stay recognisably the zoo's

    def write_config(self, config: Mapping[str, Any]) -> Path | None:
        """The resolved configuration as ``config.yaml``."""
        if not self.enabled:
            return None
        import yaml

        path = self.out_dir / "config.yaml"
        atomic_write_bytes(path, yaml.safe_dump(dict(config), sort_keys=False).encode(), what="run configuration",
                           elsewhere="choose another out_dir", record_in=self.out_dir)
        return path

    def log_step(self, values: Mapping[str, float], step: int) -> None:
        if self.tb is not None:
            self.tb.log({f"train/{k}": v for k, v in values.items()}, step)

    def log_epoch(self, epoch: int, step: int, values: Mapping[str, float], seconds: float) -> None:
        if not self.enabled:
            return
        row = {"epoch": epoch + 1, "step": step, **values, "epoch_seconds": round(seconds, 3)}
        if self.csv is not None:
            self.csv.log(row)
        if self.tb is not None:
            self.tb.log({_tag(k): v for k, v in values.items()}, step)
            self.tb.writer.flush()
        if self.verbose:
            items = [(k, v) for k, v in values.items() if not k.startswith("lr")][:10]
            shown = "  ".join(f"{k} {v:.4g}" for k, v in items)
            print(f"epoch {epoch + 1}: {shown}  ({seconds:.1f} s)", flush=True)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
            self.tb = None
            record(self.out_dir, *(p for p in self.tb_files if p.exists()))  # their final sizes


def summary_table(title: str, rows: list[tuple[str, str]], *, file: Any = None) -> str:
    """Print a two-column table with rich (plain text when not a terminal); return its text."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value", overflow="fold")  # paths wrap, never end in "…"
    for key, value in rows:
        table.add_row(key, value)
    console = Console(file=file or sys.stdout, width=max(100, Console().width))
    with console.capture() as cap:
        console.print(table)
    text = cap.get()
    (file or sys.stdout).write(text)
    return text


def print_fit_summary(title: str, result: Any, stop_reason: str = "") -> str:
    """The table printed at the end of ``Trainer.fit`` (a :class:`~zoo_core.train.trainer.FitResult`)."""
    rows = [(k, f"{v:.4f}") for k, v in list(result.metrics.items())[:10]]
    best = "-" if result.best_value is None else f"{result.best_value:.4f} (epoch {result.best_epoch})"  # 1-based
    rows += [(f"best {result.monitor}", best), ("epochs / steps", f"{result.epochs} / {result.steps}")]
    if stop_reason:
        rows.append(("stopped", stop_reason))
    ckpts = f"{result.last_checkpoint}" + (f", {result.best_checkpoint}" if result.best_checkpoint else "")
    rows += [("checkpoints", ckpts), ("model", str(result.model_dir))] + [("plot", str(p)) for p in result.plots]
    return summary_table(title, rows)
