"""Scores of the training loop's evaluations, from logits: a thin adapter over
`evaluation.metrics.evaluate_predictions`, so the curve and `tuneforge eval` count alike (rows
whose label training never saw are errors; macro-F1 over the classes present in the gold data)."""

from __future__ import annotations

import torch

from tuneforge.evaluation.metrics import evaluate_predictions

UNSEEN = "\x00unseen"  # stands for a gold label outside the model's label set (target -100)


def classification_scores(
    logits: torch.Tensor, targets: torch.Tensor, multi_label: bool
) -> dict[str, float]:
    names = [str(i) for i in range(logits.shape[1])]
    if multi_label:
        gold = [[names[j] for j in row.nonzero().flatten().tolist()] for row in targets]
        pred = [[names[j] for j in row.nonzero().flatten().tolist()] for row in logits > 0]
    else:
        gold = [names[t] if t >= 0 else UNSEEN for t in targets.tolist()]
        pred = [names[i] for i in logits.argmax(-1).tolist()]
    result = evaluate_predictions(gold, pred, names, multi_label)
    scores = {"accuracy": result.accuracy, "macro_f1": result.macro_f1}
    if multi_label:
        scores["micro_f1"] = result.micro_f1
    return scores
