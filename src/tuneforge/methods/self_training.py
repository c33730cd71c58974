"""Self-training on unlabelled in-domain texts: pseudo-label, keep the confident, refit the head.

Used by `fewshot -O unlabeled=FILE`. The unlabelled file is read like training data but its
labels, if any, are ignored. Pseudo-labels are class-balanced (at most `per_class` per class,
the most confident first), so frequent classes do not swamp the few labelled examples.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from tuneforge.errors import ConfigError, DataError


def load_unlabeled(path: str, exclude: list[str], cap: int, seed: int) -> tuple[list[str], dict]:
    """Distinct texts of `path` that are not in `exclude`, at most `cap` (a seeded sample).

    Returns (texts, counts of what was read, dropped and kept) for the artifact's record.
    """
    from tuneforge.data.dataset import load_data

    file = Path(path)
    if not file.is_file():
        raise ConfigError(
            f"Unlabelled texts file {path} does not exist: pass an existing CSV/TSV/JSONL/Parquet "
            "file of in-domain texts, e.g. -O unlabeled=pool.csv."
        )
    try:
        ds = load_data(file, require_labels=False)
    except DataError as exc:
        raise DataError(f"Unlabelled texts file {path}: {exc}") from None
    labelled = set(exclude)
    seen: set[str] = set()
    texts = []
    for text in ds.texts:  # a label column, if present, is never read
        if text not in labelled and text not in seen:
            seen.add(text)
            texts.append(text)
    distinct_new = len(texts)
    if len(texts) > cap:
        rows = np.sort(np.random.default_rng(seed).choice(len(texts), cap, replace=False))
        texts = [texts[i] for i in rows]
    info = {
        "file": str(path),
        "rows": len(ds),
        "duplicates_of_labelled": sum(t in labelled for t in ds.texts),
        "distinct_new": distinct_new,
        "used": len(texts),
    }
    return texts, info


def pseudo_label_selection(
    probs: np.ndarray, per_class: int, min_confidence: float = 0.0
) -> np.ndarray:
    """Row indices to pseudo-label: per predicted class, its `per_class` most confident rows
    with top probability >= `min_confidence`. Sorted; at most per_class x classes rows."""
    best, conf = probs.argmax(1), probs.max(1)
    keep = []
    for c in range(probs.shape[1]):
        rows = np.flatnonzero((best == c) & (conf >= min_confidence))
        keep.extend(rows[np.argsort(-conf[rows], kind="stable")][:per_class].tolist())
    return np.asarray(sorted(keep), dtype=np.int64)


def self_train(
    fit: Callable[[np.ndarray, np.ndarray, np.ndarray], object],
    clf,
    x_lab: np.ndarray,
    y_lab: np.ndarray,
    x_unl: np.ndarray,
    rounds: int,
    per_class: int,
    min_confidence: float,
    weight: float,
) -> tuple[object, list[dict], np.ndarray, np.ndarray]:
    """`rounds` of: pseudo-label `x_unl` with `clf`, refit on labelled + kept rows.

    `fit(x, y, sample_weight)` returns a fitted classifier with predict_proba and classes_.
    Returns (the last classifier, per-round counts, kept row indices, their pseudo-labels).
    """
    record: list[dict] = []
    keep, pseudo = np.zeros(0, np.int64), np.zeros(0, y_lab.dtype)
    for r in range(rounds):
        probs = clf.predict_proba(x_unl)
        keep = pseudo_label_selection(probs, per_class, min_confidence)
        pseudo = np.asarray(clf.classes_)[probs[keep].argmax(1)]
        if not len(keep):
            break
        x = np.concatenate([x_lab, x_unl[keep]])
        y = np.concatenate([y_lab, pseudo])
        w = np.concatenate([np.ones(len(y_lab)), np.full(len(keep), weight)])
        clf = fit(x, y, w)
        counts = np.bincount(np.searchsorted(clf.classes_, pseudo), minlength=len(clf.classes_))
        record.append(
            {
                "round": r + 1,
                "kept": len(keep),
                "kept_per_class_min": int(counts.min()),
                "kept_per_class_max": int(counts.max()),
                "mean_confidence": round(float(probs[keep].max(1).mean()), 4),
            }
        )
    return clf, record, keep, pseudo
