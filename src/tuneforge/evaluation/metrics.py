"""`EvalResult`: accuracy, F1 scores, per-class table and confusion matrix (sklearn arithmetic)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from tuneforge.paths import write_text_atomically


@dataclass
class EvalResult:
    accuracy: float
    macro_f1: float
    weighted_f1: float
    n: int
    labels: list[str]
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    confusion: list[list[int]] = field(default_factory=list)
    multi_label: bool = False
    unknown_labels: dict[str, int] = field(default_factory=dict)
    micro_f1: float | None = None  # multi-label only

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path: str | Path) -> Path:
        return write_text_atomically(path, json.dumps(self.to_dict(), indent=1))

    def summary(self) -> dict[str, float]:
        return {
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "weighted_f1": self.weighted_f1,
            "n": self.n,
        }

    def summary_line(self) -> str:
        return (
            f"accuracy {self.accuracy:.4f} · macro-F1 {self.macro_f1:.4f} · "
            f"weighted-F1 {self.weighted_f1:.4f} · n={self.n}"
        )

    def table(self, title: str = "Evaluation"):
        """A rich Table: the summary row, then every class sorted by F1 (worst first)."""
        from rich.table import Table

        table = Table(title=title, caption=self.summary_line())
        for col in ("class", "precision", "recall", "F1", "support"):
            table.add_column(col, justify="left" if col == "class" else "right")
        for name, row in sorted(self.per_class.items(), key=lambda kv: kv[1]["f1"]):
            table.add_row(
                name,
                f"{row['precision']:.3f}",
                f"{row['recall']:.3f}",
                f"{row['f1']:.3f}",
                str(int(row["support"])),
            )
        return table


def evaluate_predictions(
    gold: list, pred: list, labels: list[str], multi_label: bool = False
) -> EvalResult:
    """Score predicted against gold labels (strings; lists of strings when multi-label)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score
    from sklearn.metrics import precision_recall_fscore_support as prfs

    known = set(labels)
    if multi_label:
        from sklearn.preprocessing import MultiLabelBinarizer

        mlb = MultiLabelBinarizer(classes=labels)
        y_true = mlb.fit_transform([[g for g in gs if g in known] for gs in gold])
        y_pred = mlb.transform(pred)
        unknown = _unknown(gold, known, multi_label)
        confusion: list = []
    else:
        unknown = _unknown(gold, known, multi_label)
        y_true, y_pred = np.array(gold, dtype=object), np.array(pred, dtype=object)
        confusion = confusion_matrix(y_true, y_pred, labels=labels).tolist()
    p, r, f, s = prfs(y_true, y_pred, labels=None if multi_label else labels, zero_division=0)
    per_class = {
        lab: {
            "precision": float(p[i]),
            "recall": float(r[i]),
            "f1": float(f[i]),
            "support": int(s[i]),
        }
        for i, lab in enumerate(labels)
    }
    return EvalResult(
        accuracy=float(accuracy_score(y_true, y_pred)),
        macro_f1=float(
            f1_score(y_true, y_pred, average="macro", labels=_present(labels, s), zero_division=0)
        )
        if not multi_label
        else float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        weighted_f1=float(f1_score(y_true, y_pred, average="weighted", zero_division=0)),
        n=len(gold),
        labels=labels,
        per_class=per_class,
        confusion=confusion,
        multi_label=multi_label,
        unknown_labels=unknown,
        micro_f1=float(f1_score(y_true, y_pred, average="micro", zero_division=0))
        if multi_label
        else None,
    )


def _present(labels: list[str], support) -> list[str]:
    # Macro-F1 over the classes that occur in the gold data, as sklearn's default does.
    return [lab for lab, n in zip(labels, support, strict=True) if n > 0] or labels


def _unknown(gold: list, known: set, multi_label: bool) -> dict[str, int]:
    out: dict[str, int] = {}
    for g in gold:
        for lab in g if multi_label else [g]:
            if lab not in known:
                out[lab] = out.get(lab, 0) + 1
    return out
