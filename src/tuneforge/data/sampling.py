"""N-shot sampling: a reproducible training set with at most N examples of every class.

The same (file, shots, seed) always gives the same rows, whatever the platform: rows are picked
by one seeded permutation of the row indices, then the first N of each class in that order.
Multi-label rows are stratified by their first label.
"""

from __future__ import annotations

import numpy as np

from tuneforge.data.dataset import TextDataset
from tuneforge.errors import DataError


def sample_shots(ds: TextDataset, shots: int, seed: int = 0) -> TextDataset:
    """At most `shots` rows per class (all rows of smaller classes), in the file's row order."""
    if shots < 1:
        raise DataError(f"--shots must be at least 1, got {shots}.")
    if ds.labels is None:
        raise DataError(
            f"{ds.source} has no label column, so it cannot be sampled per class; pass --label-col."
        )
    keys = [labs[0] if labs else "" for labs in ds.labels] if ds.multi_label else ds.labels
    taken: dict[str, int] = {}
    chosen = []
    for i in np.random.default_rng(seed).permutation(len(ds)).tolist():
        if taken.get(keys[i], 0) < shots:
            taken[keys[i]] = taken.get(keys[i], 0) + 1
            chosen.append(i)
    out = ds.subset(sorted(chosen))
    short = sorted(k for k, n in taken.items() if n < shots)
    if short:
        out.warnings.append(
            f"{len(short)} classes have fewer than {shots} rows and were taken whole: "
            + ", ".join(short[:10])
            + (" ..." if len(short) > 10 else "")
        )
    return out


def write_dataset(ds: TextDataset, path) -> None:
    """CSV/TSV/JSONL/Parquet by extension, with the dataset's own column names."""
    import pandas as pd

    from tuneforge.data.dataset import MULTI_LABEL_SEP

    labels = [MULTI_LABEL_SEP.join(labs) for labs in ds.labels] if ds.multi_label else ds.labels
    frame = pd.DataFrame({ds.text_col: ds.texts, ds.label_col or "label": labels})
    suffix = str(path).lower()
    if suffix.endswith(".jsonl"):
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    elif suffix.endswith(".parquet"):
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False, sep="\t" if suffix.endswith(".tsv") else ",")
