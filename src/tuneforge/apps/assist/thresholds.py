"""The answer threshold, chosen from validation scores for both sides of the decision.

Accuracy of answered questions alone is not enough: when the model is right on almost every
validation question, that rule answers everything, including every question about something
the assistant was never taught. So the threshold is the strictest of
- the accuracy target: answered in-scope questions are right at least `accuracy` of the time;
- the recall target: it keeps (answers) `in_scope_recall` of in-scope questions, so the lowest
  scores (where unknown questions gather) are handed off even when the model is accurate;
- with out-of-scope examples: it hands off `oos_handoff` of them, but it is raised for this
  no further than keeps `min_in_scope_recall` of in-scope questions answered.

Scores are "higher = more in scope"; a question is answered when its score >= the threshold.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from tuneforge.apps.assist.oos import recall_threshold
from tuneforge.evaluation.calibration import abstain_threshold


@dataclass(frozen=True)
class Targets:
    accuracy: float = 0.95
    in_scope_recall: float = 0.95
    oos_handoff: float = 0.8
    min_in_scope_recall: float = 0.9

    @classmethod
    def of(cls, cfg) -> Targets:
        """The targets set in an `AssistConfig`."""
        return cls(
            cfg.target_accuracy,
            cfg.target_in_scope_recall,
            cfg.target_oos_handoff,
            cfg.min_in_scope_recall,
        )


@dataclass(frozen=True)
class ThresholdChoice:
    threshold: float
    # which target set it: "accuracy", "in_scope_recall", "oos_handoff" or, when the
    # out-of-scope target would have cost more in-scope answers, "min_in_scope_recall"
    bound_by: str
    answered: float  # share of the in-scope validation questions answered
    accuracy_of_answered: float | None
    oos_handoff: float | None = None  # share of the out-of-scope examples not answered

    def to_dict(self) -> dict:
        """The validation figures behind the threshold (which is stored on its own)."""
        return {k: _round(v) for k, v in asdict(self).items() if k != "threshold"}


def choose_threshold(
    scores: np.ndarray,
    correct: np.ndarray,
    targets: Targets,
    oos_scores: np.ndarray | None = None,
) -> ThresholdChoice:
    """The answer threshold for in-scope `scores` (with `correct` predictions) and, if given,
    the scores of out-of-scope examples. Raises ConfigError if no threshold is accurate enough."""
    scores, correct = np.asarray(scores, dtype=np.float64), np.asarray(correct, dtype=bool)
    by_accuracy, _, _ = abstain_threshold(scores, correct, targets.accuracy)
    by_recall = recall_threshold(scores, targets.in_scope_recall)
    threshold, bound = (by_accuracy, "accuracy")
    if by_recall > by_accuracy:
        threshold, bound = (by_recall, "in_scope_recall")
    has_oos = oos_scores is not None and len(oos_scores) > 0
    if has_oos and handoff_share(oos_scores, threshold) < targets.oos_handoff:
        floor = recall_threshold(scores, targets.min_in_scope_recall)
        wanted = handoff_threshold(oos_scores, targets.oos_handoff)
        if floor > threshold:  # else the accuracy or recall target is already stricter
            threshold, bound = (
                (wanted, "oos_handoff") if wanted <= floor else (floor, "min_in_scope_recall")
            )
    answered = scores >= threshold
    return ThresholdChoice(
        threshold=float(threshold),
        bound_by=bound,
        answered=float(answered.mean()),
        accuracy_of_answered=float(correct[answered].mean()) if answered.any() else None,
        oos_handoff=handoff_share(oos_scores, threshold) if has_oos else None,
    )


def handoff_share(scores: np.ndarray, threshold: float) -> float:
    """Share of questions with these scores that are not answered at `threshold`."""
    return float(np.mean(np.asarray(scores) < threshold))


def handoff_threshold(scores: np.ndarray, share: float) -> float:
    """The lowest threshold that leaves at least `share` of these scores unanswered."""
    ordered = np.sort(np.asarray(scores, dtype=np.float64))
    below = int(np.ceil(share * len(ordered) - 1e-9))
    if below == 0:
        return -np.inf
    return float(np.nextafter(ordered[below - 1], np.inf))  # just above the last one handed off


def _round(value):
    return round(value, 4) if isinstance(value, float) else value
