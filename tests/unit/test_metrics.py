"""One metrics implementation: the training loop's evaluations and `evaluate` count alike."""

from __future__ import annotations

import pytest
import torch

from tuneforge.evaluation.metrics import evaluate_predictions
from tuneforge.training.job import encode_targets
from tuneforge.training.metrics import classification_scores

LABELS = ["a", "b", "c"]


def test_rows_whose_label_training_never_saw_count_as_errors_in_both():
    gold = ["a", "b", "zzz", "c", "zzz", "a"]  # `zzz`: an eval label absent from training
    pred = ["a", "b", "a", "b", "c", "a"]
    logits = torch.nn.functional.one_hot(torch.tensor([LABELS.index(p) for p in pred]), 3)
    loop = classification_scores(logits.float(), encode_targets(gold, LABELS, False), False)
    final = evaluate_predictions(gold, pred, LABELS)
    assert loop["accuracy"] == pytest.approx(final.accuracy) == pytest.approx(3 / 6)
    assert loop["macro_f1"] == pytest.approx(final.macro_f1)
    assert final.unknown_labels == {"zzz": 2}


def test_macro_f1_is_over_the_classes_present_in_the_gold_data_in_both():
    gold = ["a", "a", "b", "b"]  # no `c` in gold, yet predicted once
    pred = ["a", "c", "b", "b"]
    logits = torch.nn.functional.one_hot(torch.tensor([LABELS.index(p) for p in pred]), 3)
    loop = classification_scores(logits.float(), encode_targets(gold, LABELS, False), False)
    final = evaluate_predictions(gold, pred, LABELS)
    # F1(a) = 2/3, F1(b) = 1: the mean over a and b, not over a, b and c
    assert loop["macro_f1"] == pytest.approx(final.macro_f1) == pytest.approx((2 / 3 + 1) / 2)


def test_multi_label_scores_agree():
    gold = [["a"], ["a", "b"], ["c"], []]
    pred = [["a"], ["a"], ["c", "b"], []]
    names = {lab: i for i, lab in enumerate(LABELS)}
    logits = torch.full((4, 3), -5.0)
    for row, labs in enumerate(pred):
        for lab in labs:
            logits[row, names[lab]] = 5.0
    loop = classification_scores(logits, encode_targets(gold, LABELS, True), True)
    final = evaluate_predictions(gold, pred, LABELS, multi_label=True)
    assert loop["accuracy"] == pytest.approx(final.accuracy) == pytest.approx(2 / 4)
    assert loop["macro_f1"] == pytest.approx(final.macro_f1)
    assert loop["micro_f1"] == pytest.approx(final.micro_f1)
