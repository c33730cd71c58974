"""`TrainJob`: what a method hands the trainer — a module from features to outputs, the rows of
each split, and the task's targets, loss and scores. The loop knows nothing else about a task."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

Split = str  # "train", "eval" (validation: every choice is made on it) or "monitor"


@dataclass
class TrainJob:
    """The module's trainable parameters (`requires_grad`) are what trains and what a
    checkpoint holds. A supervised job gives `collate`, `targets` and `loss`; another objective
    (contrastive pairs, distillation) gives `step` instead, and its own `batches`. Without
    `score` nothing is evaluated (and nothing selected): the last weights are kept."""

    module: nn.Module
    lengths: dict[Split, list[int]]  # per split, one length per row (for length batching)
    collate: Callable[[Split, list[int]], dict[str, torch.Tensor]] | None = None
    targets: Callable[[Split, list[int]], torch.Tensor] | None = None  # (split, rows) -> targets
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None  # (outputs, targets)
    # (split, outputs of every row in row order) -> scores; must include `metric`
    score: Callable[[Split, list[torch.Tensor]], dict[str, float]] | None = None
    metric: str = "accuracy"  # the score early stopping and the best checkpoint go by
    # (forward, training rows of a batch) -> loss: `forward` is the module, compiled with
    # --compile; default: loss(forward(**collate("train", rows)), targets("train", rows))
    step: Callable[[nn.Module, list[int]], torch.Tensor] | None = None
    # epoch -> its batches of training rows, deterministic (so a resumed run sees the same);
    # default: length-grouped batches of the config's batch size
    batches: Callable[[int], list[list[int]]] | None = None
    min_steps: int = 0  # a floor on optimizer steps, whatever the epochs

    @property
    def train_lengths(self) -> list[int]:
        return self.lengths["train"]

    @property
    def eval_lengths(self) -> list[int]:
        return self.lengths["eval"]

    @property
    def monitored(self) -> bool:
        """Is there a split scored for the learning curve only (never selected on)?"""
        return "monitor" in self.lengths


def encode_targets(labels: list, label_names: list[str], multi_label: bool) -> torch.Tensor:
    index = {name: i for i, name in enumerate(label_names)}
    if multi_label:
        out = torch.zeros((len(labels), len(label_names)))
        for row, labs in enumerate(labels):
            for lab in labs:
                if lab in index:
                    out[row, index[lab]] = 1.0
        return out
    return torch.tensor([index.get(lab, -100) for lab in labels], dtype=torch.long)


def balanced_class_weights(targets: torch.Tensor, n_classes: int, mode: str) -> torch.Tensor | None:
    """'balanced' always; 'auto' only when the largest class is over 3x the smallest."""
    if mode == "none" or targets.ndim != 1:
        return None
    counts = np.bincount(targets[targets >= 0].numpy(), minlength=n_classes).astype(float)
    counts = np.maximum(counts, 1.0)
    if mode == "auto" and counts.max() / counts.min() <= 3.0:
        return None
    weights = counts.sum() / (n_classes * counts)
    return torch.tensor(weights / weights.mean(), dtype=torch.float32)
