"""`TrainTask`: what a method hands the trainer: a module from features to logits, plus data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass
class TrainTask:
    module: nn.Module
    collate: Callable[[str, list[int]], dict[str, torch.Tensor]]  # (split, indices) -> features
    train_lengths: list[int]
    eval_lengths: list[int]
    train_targets: torch.Tensor  # (N,) class ids, or (N, C) 0/1 for multi-label
    eval_targets: torch.Tensor
    multi_label: bool = False
    class_weights: torch.Tensor | None = None
    monitor_lengths: list[int] | None = None  # a split scored for the curve only, never selected on
    monitor_targets: torch.Tensor | None = None


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
