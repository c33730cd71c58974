"""Progress bar (loss, metric, ETA) and TensorBoard/JSON logs for a training run."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)


class TrainLogger:
    def __init__(self, progress: bool = True, log_dir: Path | None = None) -> None:
        self.show = progress
        self.log_dir = log_dir
        self._bar: Progress | None = None
        self._task = None
        self._writer = None
        self._last_eval = ""

    def start(self, total: int, done: int) -> None:
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            self._writer = _tensorboard_writer(self.log_dir)
        if self.show:
            self._bar = Progress(
                TextColumn("[bold]train"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=console,
            )
            self._bar.start()
            self._task = self._bar.add_task("train", total=total, completed=done, info="")

    def note(self, message: str) -> None:
        console.print(message)

    def step(self, step: int, loss: float, lr: float) -> None:
        if self._writer:
            self._writer.add_scalar("train/loss", loss, step)
            self._writer.add_scalar("train/lr", lr, step)
        self._write_jsonl({"step": step, "loss": round(loss, 5), "lr": lr})
        if self._bar:
            self._bar.update(self._task, completed=step, info=f"loss {loss:.4f}{self._last_eval}")

    def eval(self, entry: dict, metric: str = "accuracy") -> None:
        short = {"accuracy": "acc"}.get(metric, metric)
        self._last_eval = f" · {short} {entry[metric]:.4f}" if metric in entry else ""
        if self._writer:
            for key, value in entry.items():
                if key not in ("step", "epoch"):
                    self._writer.add_scalar(f"eval/{key}", value, entry["step"])
        self._write_jsonl({"eval": True, **entry})

    def finish(self, state) -> None:
        if self._bar:
            self._bar.stop()
        if self._writer:
            self._writer.close()
        if state.stop_reason:
            console.print(f"Stopped: {state.stop_reason}.")

    def _write_jsonl(self, record: dict) -> None:
        if self.log_dir is not None:
            with open(self.log_dir / "training_log.jsonl", "a") as fh:
                fh.write(json.dumps(record) + "\n")


def _tensorboard_writer(log_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is an optional extra
        return None
    return SummaryWriter(str(log_dir))
