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
    module: nn.Module
    collate: Callable[[Split, list[int]], dict[str, torch.Tensor]]  # (split, rows) -> features
    lengths: dict[Split, list[int]]  # per split, one length per row (for length batching)
    targets: Callable[[Split, list[int]], torch.Tensor]  # (split, rows) -> a batch of targets
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (outputs, targets) -> scalar
    # (split, outputs of every row in row order) -> scores; must include the config's metric
    score: Callable[[Split, list[torch.Tensor]], dict[str, float]]
    metric: str = "accuracy"  # the score early stopping and the best checkpoint go by

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
