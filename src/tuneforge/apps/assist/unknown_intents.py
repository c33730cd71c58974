"""Leave intents out: how the assistant treats questions about intents it was never taught.

Real out-of-scope questions are rarely at hand, so they are imitated with the user's own
intents: per fold a share of the intents is held out, a head is fit on the embeddings of the
others, and the held-out intents' questions play the unknown ones. The encoder is frozen in
the head method, so each text is embedded once and a fold costs one logistic regression.
`assist eval` measures how well each score separates them (AUROC, FPR at 95% TPR);
`assist train` estimates the share of them its threshold rule hands off (`expected_handoff`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tuneforge.apps.assist.oos import SCORES, Reference, in_scope_score
from tuneforge.apps.assist.thresholds import Targets, choose_threshold, handoff_share
from tuneforge.errors import ConfigError

HELD_OUT = 0.25  # share of intents held out per fold
TRAIN_FOLDS = 3  # at `assist train`: enough for a stable mean, cheap beside the encoder


def held_out_count(intents: int, held_out: float = HELD_OUT) -> int:
    return max(1, round(held_out * intents))


def unknown_intent_folds(
    names: list[str], folds: int, held_out: float = HELD_OUT, seed: int = 0
) -> list[set[str]]:
    """The held-out intents of each fold: a random `held_out` share, drawn anew per fold."""
    names = sorted(names)
    k, rng = held_out_count(len(names), held_out), np.random.default_rng(seed)
    return [set(rng.choice(names, k, replace=False).tolist()) for _ in range(folds)]


def fit_head(x: np.ndarray, y: np.ndarray, seed: int, c: float | None = None):
    """Logistic regression with C chosen on a held-out tenth, like the head method (or `c`)."""
    from sklearn.linear_model import LogisticRegression

    if c is None:
        c = _choose_c(x, y, seed)
    return LogisticRegression(C=c, max_iter=2000).fit(x, y)


def _choose_c(x: np.ndarray, y: np.ndarray, seed: int) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    from tuneforge.methods.head import HeadOptions

    n_val, counts = int(np.ceil(0.1 * len(y))), np.unique(y, return_counts=True)[1]
    stratify = y if counts.min() >= 2 and n_val >= len(counts) else None  # as stratified_split
    x_fit, x_val, y_fit, y_val = train_test_split(
        x, y, test_size=n_val, stratify=stratify, random_state=seed
    )
    return max(
        HeadOptions().C,
        key=lambda c: LogisticRegression(C=c, max_iter=2000).fit(x_fit, y_fit).score(x_val, y_val),
    )


@dataclass
class FoldModel:
    """A head fit on the known intents of one fold, and its training reference."""

    unknown: set[str]
    clf: object  # a fitted LogisticRegression
    reference: Reference

    def score(self, x: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(predicted intent, {score kind: in-scope score}) per embedding."""
        logits = self.clf.decision_function(x)
        if logits.ndim == 1:  # two known intents: sigmoid(d) == softmax([-d/2, d/2])
            logits = np.c_[-logits / 2, logits / 2]
        predicted = self.clf.classes_[logits.argmax(axis=1)]
        return predicted, {k: in_scope_score(k, logits, x, self.reference) for k in SCORES}

    def is_known(self, labels: np.ndarray) -> np.ndarray:
        return ~np.isin(labels, list(self.unknown))


def fit_fold(
    x_fit: np.ndarray, y_fit: np.ndarray, unknown: set[str], seed: int, c: float | None = None
) -> FoldModel:
    known = ~np.isin(y_fit, list(unknown))
    clf = fit_head(x_fit[known], y_fit[known], seed, c)
    reference = Reference.build(x_fit[known], list(y_fit[known]), list(clf.classes_))
    return FoldModel(unknown, clf, reference)


def expected_handoff(
    x_fit: np.ndarray,
    y_fit: list[str],
    x_val: np.ndarray,
    y_val: list[str],
    targets: Targets,
    x_oos: np.ndarray | None = None,
    folds: int = TRAIN_FOLDS,
    seed: int = 0,
    c: float | None = None,
) -> dict:
    """Share of unknown-intent questions that the threshold rule of `thresholds.py` hands off
    (or sends to an article), per score kind, estimated by leaving intents out of `fit`.

    Per fold the threshold is chosen as at training time, on the known intents' validation
    rows (and the out-of-scope examples, if any); every question of the held-out intents, fit
    and validation rows alike (the fold's head saw neither), is an unknown one. `c`: the
    assistant head's regularization, so the folds' heads are alike and need no search.
    """
    y_fit, y_val = np.asarray(y_fit), np.asarray(y_val)
    names = sorted(set(y_fit.tolist()))
    k = held_out_count(len(names))
    if len(names) - k < 2:
        return {"note": f"{len(names)} intents: too few to hold a quarter out"}
    per_fold: dict[str, list[float | None]] = {kind: [] for kind in SCORES}
    unknown_questions = []
    for fold, unknown in enumerate(unknown_intent_folds(names, folds, seed=seed)):
        model = fit_fold(x_fit, y_fit, unknown, seed + fold, c)
        known_val = model.is_known(y_val)
        predicted, scores = model.score(x_val[known_val])
        unknown_x = np.vstack([x_val[~known_val], x_fit[~model.is_known(y_fit)]])
        unknown_scores = model.score(unknown_x)[1]
        oos_scores = model.score(x_oos)[1] if x_oos is not None and len(x_oos) else {}
        correct = predicted == y_val[known_val]
        unknown_questions.append(len(unknown_x))
        for kind in SCORES:
            try:
                choice = choose_threshold(scores[kind], correct, targets, oos_scores.get(kind))
            except ConfigError:  # the accuracy target is out of reach with this score
                per_fold[kind].append(None)
                continue
            per_fold[kind].append(round(handoff_share(unknown_scores[kind], choice.threshold), 4))
    return {
        "intents": len(names),
        "held_out_per_fold": k,
        "folds": folds,
        "unknown_questions_per_fold": unknown_questions,
        "handoff": {kind: _mean(values) for kind, values in per_fold.items()},
        "handoff_per_fold": per_fold,
    }


def _mean(values: list[float | None]) -> float | None:
    return None if any(v is None for v in values) else round(float(np.mean(values)), 4)
