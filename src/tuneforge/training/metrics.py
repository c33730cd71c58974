"""Classification scores from logits (sklearn does the arithmetic)."""

from __future__ import annotations

import torch


def classification_scores(
    logits: torch.Tensor, targets: torch.Tensor, multi_label: bool
) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    if multi_label:
        pred = (logits > 0).int().numpy()
        gold = targets.int().numpy()
        return {
            "accuracy": float(accuracy_score(gold, pred)),  # exact-match (subset) accuracy
            "macro_f1": float(f1_score(gold, pred, average="macro", zero_division=0)),
            "micro_f1": float(f1_score(gold, pred, average="micro", zero_division=0)),
        }
    keep = targets >= 0  # eval labels unseen in training cannot be scored
    pred = logits.argmax(-1)[keep].numpy()
    gold = targets[keep].numpy()
    return {
        "accuracy": float(accuracy_score(gold, pred)),
        "macro_f1": float(f1_score(gold, pred, average="macro", zero_division=0)),
    }
