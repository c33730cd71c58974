"""Stratified train/validation splits that keep every class on both sides when possible."""

from __future__ import annotations

from collections import Counter

from tuneforge.data.dataset import TextDataset


def stratified_split(
    ds: TextDataset, fraction: float, seed: int
) -> tuple[TextDataset, TextDataset]:
    """Split off `fraction` of rows; stratified by label (first label for multi-label data)."""
    from sklearn.model_selection import train_test_split

    keys = [labs[0] if labs else "" for labs in ds.labels] if ds.multi_label else ds.labels
    indices = list(range(len(ds)))
    n_eval = max(1, round(fraction * len(ds)))
    counts = Counter(keys)
    stratify = keys if min(counts.values()) >= 2 and n_eval >= len(counts) else None
    train_ix, eval_ix = train_test_split(
        indices, test_size=n_eval, random_state=seed, stratify=stratify
    )
    return ds.subset(sorted(train_ix)), ds.subset(sorted(eval_ix))
