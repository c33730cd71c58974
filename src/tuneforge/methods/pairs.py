"""Bounded pair sampling for contrastive few-shot tuning.

SetFit builds pairs from combinations of examples, so its pair count (and time) grows with
(classes x shots)^2 unless capped. Here an epoch is a list of small batches of
`classes_per_batch x per_class` examples, each example in `views` batches; every pair inside a
batch is compared once (a supervised contrastive loss). The pairs per epoch are therefore at
most n_examples x views x batch size: linear in classes x shots. A batch's classes are a seed
class plus classes whose centroids lie closest to it (the ones the classifier will confuse:
hard negatives), the rest random, so far-away classes are still pushed apart.
"""

from __future__ import annotations

import numpy as np


def confusable_classes(
    embeddings: np.ndarray, labels: np.ndarray, k: int, chunk: int = 1024
) -> np.ndarray:
    """(n_classes, k) ids of each class's k nearest other classes by centroid cosine similarity.

    Similarities are computed `chunk` classes at a time, so memory stays linear in the number
    of classes even for tens of thousands of them.
    """
    n_classes = int(labels.max()) + 1
    dim = embeddings.shape[1]
    centroids = np.zeros((n_classes, dim), dtype=np.float32)
    np.add.at(centroids, labels, embeddings)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True).clip(min=1e-9)
    k = max(0, min(k, n_classes - 1))
    out = np.zeros((n_classes, k), dtype=np.int64)
    for start in range(0, n_classes, chunk):
        sims = centroids[start : start + chunk] @ centroids.T
        rows = np.arange(sims.shape[0])
        sims[rows, rows + start] = -np.inf  # a class is not its own negative
        if k:
            top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1)
            out[start : start + chunk] = np.take_along_axis(top, order, axis=1)
    return out


def contrastive_batches(
    labels: np.ndarray,
    classes_per_batch: int,
    per_class: int,
    confusable: np.ndarray | None = None,
    hard_fraction: float = 0.5,
    views: int = 1,
    seed: int = 0,
) -> list[np.ndarray]:
    """Batches of example indices covering every example `views` times (one "epoch").

    A batch holds `per_class` examples of each of `classes_per_batch` classes: a seed class,
    about `hard_fraction` of the others from its confusable classes, the rest random. Every
    example then meets at most `classes_per_batch * per_class - 1` others per batch, so the
    pairs per epoch are at most n_examples * views * batch size: linear, never quadratic.
    """
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    n_classes = int(labels.max()) + 1
    members = [rng.permutation(np.flatnonzero(labels == c)) for c in range(n_classes)]
    cursor = np.zeros(n_classes, dtype=np.int64)
    present = [c for c in range(n_classes) if len(members[c])]
    n_batches = -(-len(labels) * views // (classes_per_batch * per_class))
    seeds = np.concatenate([rng.permutation(present) for _ in range(n_batches // len(present) + 1)])
    batches = []
    for seed_class in seeds[:n_batches]:
        classes = _batch_classes(
            int(seed_class), present, classes_per_batch, confusable, hard_fraction, cursor, rng
        )
        batch = [_take(members[c], cursor, c, per_class, rng) for c in classes]
        batches.append(np.concatenate(batch))
    return batches


def pair_count(batches: list[np.ndarray]) -> int:
    """Ordered (anchor, other) pairs the batches compare: what memory and time scale with."""
    return int(sum(len(b) * (len(b) - 1) for b in batches))


def _batch_classes(seed_class, present, size, confusable, hard_fraction, used, rng) -> list[int]:
    chosen = [seed_class]
    if confusable is not None and confusable.shape[1]:
        n_hard = round((min(size, len(present)) - 1) * hard_fraction)
        for c in confusable[seed_class][:n_hard].tolist():
            if c in present and c not in chosen:
                chosen.append(c)
    # fill with the least-used classes (random among equals), so every example gets its turn
    tie = rng.random(len(present))
    order = sorted(range(len(present)), key=lambda i: (used[present[i]], tie[i]))
    others = [present[i] for i in order if present[i] not in chosen]
    return chosen + others[: max(0, size - len(chosen))]


def _take(members: np.ndarray, cursor: np.ndarray, c: int, k: int, rng) -> np.ndarray:
    """The next k examples of class c, cycling through a shuffled order (every one gets used)."""
    idx = (cursor[c] + np.arange(min(k, len(members)))) % len(members)
    cursor[c] += len(idx)
    return members[idx]
