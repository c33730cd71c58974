"""Out-of-scope scores and their thresholds, calibrated on validation data, never guessed.

Three in-scope scores (higher = more likely a known intent):
- `msp`: the maximum softmax probability (Hendrycks & Gimpel, 2017);
- `energy`: logsumexp of the logits, the negative free energy (Liu et al., 2020), which keeps
  the magnitude information softmax normalises away;
- `centroid`: the cosine similarity of the message embedding to the nearest intent centroid,
  which does not depend on the classifier head at all.
"""

from __future__ import annotations

import numpy as np

from tuneforge.evaluation.calibration import softmax

SCORES = ("msp", "energy", "centroid")


def energy(logits: np.ndarray) -> np.ndarray:
    m = logits.max(axis=1)
    return m + np.log(np.exp(logits - m[:, None]).sum(axis=1))


def class_centroids(embeddings: np.ndarray, labels: list[str], names: list[str]) -> np.ndarray:
    """Unit-length mean of each intent's unit-length example embeddings, in `names` order."""
    x = _unit(embeddings)
    index = {n: i for i, n in enumerate(names)}
    sums = np.zeros((len(names), x.shape[1]), dtype=np.float64)
    np.add.at(sums, [index[label] for label in labels], x)
    return _unit(sums).astype(np.float32)


def centroid_similarity(embeddings: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    return (_unit(embeddings) @ centroids.T).max(axis=1)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def in_scope_score(
    kind: str,
    logits: np.ndarray,
    embeddings: np.ndarray | None = None,
    centroids: np.ndarray | None = None,
) -> np.ndarray:
    if kind == "msp":
        return softmax(logits).max(axis=1)
    if kind == "energy":
        return energy(logits)
    if kind == "centroid":
        if embeddings is None or centroids is None:
            raise ValueError("the centroid score needs embeddings and centroids")
        return centroid_similarity(embeddings, centroids)
    raise ValueError(f"unknown score {kind!r}; use one of {SCORES}")


def recall_threshold(scores: np.ndarray, recall: float) -> float:
    """The highest threshold that at least a share `recall` of these (relevant) scores reach."""
    keep = max(1, int(np.ceil(recall * len(scores) - 1e-9)))
    return float(np.sort(scores)[::-1][keep - 1])


def auroc(in_scores: np.ndarray, out_scores: np.ndarray) -> float:
    """Probability that a random in-scope message outscores a random out-of-scope one."""
    from sklearn.metrics import roc_auc_score

    y = np.r_[np.ones(len(in_scores)), np.zeros(len(out_scores))]
    return float(roc_auc_score(y, np.r_[in_scores, out_scores]))


def fpr_at_tpr(in_scores: np.ndarray, out_scores: np.ndarray, tpr: float = 0.95) -> float:
    """Share of out-of-scope messages accepted at the threshold that keeps `tpr` of in-scope."""
    threshold = recall_threshold(in_scores, tpr)
    return float(np.mean(out_scores >= threshold))
