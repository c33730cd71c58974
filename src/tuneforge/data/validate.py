"""Checks that stop training on unusable data, and warnings about data that trains badly."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

from tuneforge.data.dataset import TextDataset
from tuneforge.errors import DataError

IMBALANCE_RATIO = 10.0


def check_trainable(ds: TextDataset, min_per_class: int = 2) -> None:
    """Raise DataError when a model cannot be trained on `ds` at all."""
    if ds.labels is None:
        raise DataError(
            f"{ds.source}: no label column. Training needs labelled rows "
            "(pass --label-col), or use --method zeroshot with --labels."
        )
    counts = ds.class_counts()
    if len(counts) < 2 and not ds.multi_label:
        only = next(iter(counts), "?")
        raise DataError(
            f"{ds.source}: column '{ds.label_col}' has a single class ('{only}'). "
            "A classifier needs at least two classes: add examples of other classes."
        )
    rare = sorted(lab for lab, n in counts.items() if n < min_per_class)
    if rare:
        where = _first_lines(ds, set(rare))
        raise DataError(
            f"{ds.source}: class(es) with fewer than {min_per_class} examples in "
            f"column '{ds.label_col}': {', '.join(repr(r) for r in rare[:10])} "
            f"(line(s) {where}). Add examples of them or remove those rows."
        )


def _first_lines(ds: TextDataset, wanted: set[str]) -> str:
    hits = [
        line
        for line, lab in zip(ds.lines, ds.labels, strict=True)
        if (set(lab) & wanted if ds.multi_label else lab in wanted)
    ]
    return ", ".join(str(x) for x in hits[:5])


def data_warnings(
    train: TextDataset,
    eval_ds: TextDataset | None = None,
    token_lengths: list[int] | None = None,
    max_length: int | None = None,
) -> list[str]:
    """Problems worth a warning: duplicates, conflicting labels, leakage, imbalance, truncation."""
    out = _duplicate_warnings(train)
    if eval_ds is not None:
        seen = {_norm(t) for t in train.texts}
        leaked = [
            line for t, line in zip(eval_ds.texts, eval_ds.lines, strict=True) if _norm(t) in seen
        ]
        if leaked:
            out.append(
                f"{len(leaked)} eval row(s) also appear in the training data (leakage: "
                f"eval scores will be optimistic), e.g. {eval_ds.source} line(s) "
                f"{', '.join(map(str, leaked[:5]))}. Remove them from one of the files."
            )
    counts = train.class_counts()
    if counts and max(counts.values()) / min(counts.values()) > IMBALANCE_RATIO:
        big, small = counts.most_common()[0], counts.most_common()[-1]
        out.append(
            f"Strong class imbalance: '{big[0]}' has {big[1]} examples, '{small[0]}' only "
            f"{small[1]}. Class weights are applied; consider collecting more of the rare "
            "classes."
        )
    if token_lengths and max_length:
        cut = sum(n > max_length for n in token_lengths)
        if cut:
            out.append(
                f"{cut} of {len(token_lengths)} texts ({100 * cut / len(token_lengths):.1f}%)"
                f" are longer than max_length={max_length} tokens and will be truncated. "
                "Raise --max-length if the ends of texts matter."
            )
    return out


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def _duplicate_warnings(ds: TextDataset) -> list[str]:
    groups: dict[str, list[int]] = defaultdict(list)
    for i, t in enumerate(ds.texts):
        groups[_norm(t)].append(i)
    dups = [ix for ix in groups.values() if len(ix) > 1]
    if not dups:
        return []
    extra = sum(len(ix) - 1 for ix in dups)
    out = [
        f"{extra} duplicate text(s) in {ds.source} (e.g. lines "
        f"{', '.join(str(ds.lines[i]) for i in dups[0])}). Duplicates over-weight those examples."
    ]
    if ds.labels is not None:
        conflicts = [ix for ix in dups if len({str(ds.labels[i]) for i in ix}) > 1]
        if conflicts:
            out.append(
                f"{len(conflicts)} text(s) appear with different labels (e.g. lines "
                f"{', '.join(str(ds.lines[i]) for i in conflicts[0])}). Fix the labels."
            )
    return out


def dataset_stats(
    ds: TextDataset, token_lengths: list[int] | None = None, max_length: int | None = None
) -> dict:
    """Summary numbers for the model card and reports."""
    words = np.array([len(t.split()) for t in ds.texts]) if ds.texts else np.zeros(1)
    stats = {
        "rows": len(ds),
        "classes": len(ds.label_names),
        "multi_label": ds.multi_label,
        "class_counts": dict(sorted(Counter(ds.class_counts()).items())),
        "words_mean": round(float(words.mean()), 2),
        "words_max": int(words.max()),
        "duplicates": sum(n - 1 for n in Counter(map(_norm, ds.texts)).values()),
    }
    if token_lengths and max_length:
        stats["truncation_rate"] = round(
            sum(n > max_length for n in token_lengths) / len(token_lengths), 4
        )
    return stats
