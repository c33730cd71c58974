"""`TextDataset` and `load_data`: labelled texts with their source rows, for precise errors."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from tuneforge.data.readers import read_frame
from tuneforge.errors import DataError

TEXT_NAMES = (
    "text",
    "sentence",
    "utterance",
    "query",
    "question",
    "review",
    "content",
    "message",
    "tweet",
    "body",
    "document",
)
LABEL_NAMES = (
    "label",
    "labels",
    "intent",
    "category",
    "class",
    "target",
    "sentiment",
    "y",
    "tag",
    "tags",
    "topic",
)
MULTI_LABEL_SEP = "|"


@dataclass
class TextDataset:
    """Texts and labels plus where each came from (file and 1-based line) for error messages."""

    texts: list[str]
    labels: list[str] | list[list[str]] | None
    source: str = "<memory>"
    lines: list[int] = field(default_factory=list)
    text_col: str = "text"
    label_col: str | None = "label"
    multi_label: bool = False
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.lines:
            self.lines = list(range(2, len(self.texts) + 2))  # line 1 is the header

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def label_names(self) -> list[str]:
        if self.labels is None:
            return []
        flat = (lab for labs in self.labels for lab in labs) if self.multi_label else self.labels
        return sorted(set(flat))

    def class_counts(self) -> Counter:
        if self.labels is None:
            return Counter()
        if self.multi_label:
            return Counter(lab for labs in self.labels for lab in labs)
        return Counter(self.labels)

    def subset(self, indices: list[int]) -> TextDataset:
        """These rows, as a dataset of the same kind (the load warnings are not carried)."""
        return replace(
            self,
            texts=[self.texts[i] for i in indices],
            labels=None if self.labels is None else [self.labels[i] for i in indices],
            lines=[self.lines[i] for i in indices],
            warnings=[],
        )

    @classmethod
    def from_lists(cls, texts: list[str], labels: list | None = None) -> TextDataset:
        multi = labels is not None and any(isinstance(lab, list | tuple) for lab in labels)
        labs = None if labels is None else [list(x) if multi else str(x) for x in labels]
        return cls(texts=[str(t) for t in texts], labels=labs, multi_label=multi)


def load_data(
    path: str | Path,
    text_col: str | None = None,
    label_col: str | None = None,
    encoding: str = "utf-8",
    require_labels: bool = True,
    multi_label: bool | None = None,
) -> TextDataset:
    """Read a file, pick the text and label columns, and check every row."""
    path = Path(path)
    frame = read_frame(path, encoding=encoding)
    if frame.empty:
        raise DataError(f"{path}: no data rows. The file needs a header and at least one row.")
    text_col = pick_text_column(frame, path, text_col)
    label_col = pick_label_column(frame, path, text_col, label_col, required=require_labels)
    texts = frame[text_col].tolist()
    _check_texts(texts, path, text_col)
    labels = None
    if label_col is not None:
        raw = [str(v).strip() for v in frame[label_col].tolist()]
        _check_labels(raw, path, label_col)
        if multi_label is None:
            multi_label = any(MULTI_LABEL_SEP in lab for lab in raw)
        labels = (
            [[p.strip() for p in lab.split(MULTI_LABEL_SEP) if p.strip()] for lab in raw]
            if multi_label
            else raw
        )
    return TextDataset(
        texts=texts,
        labels=labels,
        source=str(path),
        text_col=text_col,
        label_col=label_col,
        multi_label=bool(multi_label),
    )


def pick_text_column(frame: pd.DataFrame, path: Path, wanted: str | None) -> str:
    if wanted is not None:
        return _require_column(frame, path, wanted, "--text-col")
    by_name = {c.lower(): c for c in frame.columns}
    for name in TEXT_NAMES:
        if name in by_name:
            return by_name[name]
    lengths = {c: frame[c].astype(str).str.len().mean() for c in frame.columns}
    best = max(lengths, key=lengths.get)
    if lengths[best] < 8:
        raise DataError(
            f"{path}: cannot tell which column holds the text (columns: "
            f"{', '.join(frame.columns)}). Pass --text-col NAME."
        )
    return best


def pick_label_column(
    frame: pd.DataFrame, path: Path, text_col: str, wanted: str | None, required: bool
) -> str | None:
    if wanted is not None:
        return _require_column(frame, path, wanted, "--label-col")
    others = [c for c in frame.columns if c != text_col]
    by_name = {c.lower(): c for c in others}
    for name in LABEL_NAMES:
        if name in by_name:
            return by_name[name]
    if len(others) == 1 and frame[others[0]].nunique() < max(2, len(frame) // 2):
        return others[0]
    if required:
        raise DataError(
            f"{path}: cannot tell which column holds the labels (columns: "
            f"{', '.join(frame.columns)}). Pass --label-col NAME."
        )
    return None


def _require_column(frame: pd.DataFrame, path: Path, name: str, flag: str) -> str:
    if name in frame.columns:
        return name
    raise DataError(
        f"Column '{name}' not found in {path.name} (columns: "
        f"{', '.join(frame.columns)}). Pass {flag} with one of them."
    )


def _rows_text(lines: list[int], limit: int = 5) -> str:
    shown = ", ".join(str(x) for x in lines[:limit])
    return shown + (f" and {len(lines) - limit} more" if len(lines) > limit else "")


def _check_texts(texts: list[str], path: Path, col: str) -> None:
    empty = [i + 2 for i, t in enumerate(texts) if not str(t).strip()]
    if empty:
        raise DataError(
            f"{path}: empty or missing text in column '{col}' at line(s) "
            f"{_rows_text(empty)}. Fill them in or delete those rows."
        )


def _check_labels(labels: list[str], path: Path, col: str) -> None:
    missing = [i + 2 for i, lab in enumerate(labels) if not lab]
    if missing:
        raise DataError(
            f"{path}: missing label in column '{col}' at line(s) "
            f"{_rows_text(missing)}. Add a label or delete those rows "
            "(for unlabelled data use `tuneforge predict`)."
        )
