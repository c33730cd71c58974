"""Out-of-scope scores and their thresholds, calibrated on validation data, never guessed.

In-scope scores (higher = more likely a known intent):
- `msp`: the maximum softmax probability (Hendrycks & Gimpel, 2017);
- `energy`: logsumexp of the logits, the negative free energy (Liu et al., 2020), which keeps
  the magnitude information softmax normalises away;
- `centroid`: the cosine similarity of the message embedding to the nearest intent centroid,
  which does not depend on the classifier head at all;
- `knn`: the cosine similarity to the nearest training example (Sun et al., 2022, "deep
  nearest neighbours", with k = 1): an unknown intent lies far from every example, even where
  the head's softmax is confident because its boundaries were never drawn there;
- `msp_knn`: msp + knn, both in [0, 1]: confident head *and* a close example. It measured best
  (leave-intents-out AUROC on banking77 and hwu64, benchmarks/results/assist.json).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tuneforge.evaluation.calibration import softmax

SCORES = ("msp", "energy", "centroid", "knn", "msp_knn")
EMBEDDING_SCORES = ("centroid", "knn", "msp_knn")  # these need the message embedding
KNN_K = 1  # measured against k = 3, 10, 30: the larger k, the worse (README)


@dataclass
class Reference:
    """What the distance scores compare a message with: unit-length training embeddings."""

    centroids: np.ndarray  # one per intent, in the model's label order
    examples: np.ndarray | None = None  # every training example (None: trained before `knn`)

    @classmethod
    def build(cls, embeddings: np.ndarray, labels: list[str], names: list[str]) -> Reference:
        return cls(class_centroids(embeddings, labels, names), _unit(embeddings).astype(np.float32))


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


def knn_similarity(embeddings: np.ndarray, examples: np.ndarray, k: int = KNN_K) -> np.ndarray:
    """Cosine similarity of each embedding to its k-th nearest example, in blocks of rows."""
    x = _unit(embeddings).astype(np.float32)
    return np.concatenate(
        [
            np.partition(x[i : i + 1024] @ examples.T, -k, axis=1)[:, -k]
            for i in range(0, len(x), 1024)
        ]
    )


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def in_scope_score(
    kind: str,
    logits: np.ndarray,
    embeddings: np.ndarray | None = None,
    reference: Reference | None = None,
) -> np.ndarray:
    if kind == "msp":
        return softmax(logits).max(axis=1)
    if kind == "energy":
        return energy(logits)
    if kind not in EMBEDDING_SCORES:
        raise ValueError(f"unknown score {kind!r}; use one of {SCORES}")
    if embeddings is None or reference is None:
        raise ValueError(f"the {kind} score needs embeddings and the training reference")
    if kind == "centroid":
        return centroid_similarity(embeddings, reference.centroids)
    if reference.examples is None:
        raise ValueError(f"the {kind} score needs the training examples: retrain the assistant")
    knn = knn_similarity(embeddings, reference.examples)
    return knn if kind == "knn" else softmax(logits).max(axis=1) + knn


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
