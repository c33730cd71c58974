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
        """A rich Table of every class, sorted by F1 (worst first); the summary line is printed
        apart, by the caller (as a caption too, it appeared twice)."""
        return score_table(title, "class", self.per_class)


def score_table(title: str, kind: str, rows: dict[str, dict]):
    """A rich Table of precision/recall/F1/support per class or type, worst F1 first."""
    from rich.table import Table

    table = Table(title=title)
    for col in (kind, "precision", "recall", "F1", "support"):
        table.add_column(col, justify="left" if col == kind else "right")
    for name, row in sorted(rows.items(), key=lambda kv: kv[1]["f1"]):
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


# ---- spans (token classification) ----------------------------------------------------------
@dataclass
class SpanEvalResult:
    """Entity-level strict scores: a predicted span counts only with the exact words and type
    (seqeval's strict mode on BIO, which equals conlleval on well-formed BIO predictions)."""

    f1: float  # micro over every span
    precision: float
    recall: float
    macro_f1: float  # mean over the types present in the gold data
    per_type: dict[str, dict[str, float]]
    n: int  # sentences
    tokens: int
    gold_spans: int
    predicted_spans: int
    errors: dict = field(default_factory=dict)  # missed, spurious and type confusions

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path: str | Path) -> Path:
        return write_text_atomically(path, json.dumps(self.to_dict(), indent=1))

    def summary(self) -> dict[str, float]:
        keys = ("f1", "precision", "recall", "macro_f1", "n")
        return {k: getattr(self, k) for k in keys}

    def summary_line(self) -> str:
        return (
            f"span F1 {self.f1:.4f} · precision {self.precision:.4f} · recall "
            f"{self.recall:.4f} · macro-F1 {self.macro_f1:.4f} · n={self.n} sentences"
        )

    def table(self, title: str = "Evaluation"):
        return score_table(title, "type", self.per_type)


def evaluate_spans(
    gold: list[list[str]], pred: list[list[str]], words: list[list[str]] | None = None
) -> SpanEvalResult:
    """Strict span scores of predicted BIO tags against gold BIO tags, sentence by sentence;
    with `words`, up to 20 examples each of missed and spurious spans and type confusions."""
    from seqeval.metrics import classification_report
    from seqeval.scheme import IOB2

    if len(gold) != len(pred) or any(len(g) != len(p) for g, p in zip(gold, pred, strict=True)):
        raise ValueError("gold and predicted tags differ in shape")
    report = classification_report(
        gold, pred, mode="strict", scheme=IOB2, output_dict=True, zero_division=0
    )
    per_type = {
        k: {m: round(float(v[m]), 6) for m in ("precision", "recall", "f1-score", "support")}
        for k, v in report.items()
        if not k.endswith(" avg")
    }
    per_type = {
        k: {"precision": v["precision"], "recall": v["recall"], "f1": v["f1-score"],
            "support": int(v["support"])}
        for k, v in per_type.items()
    }  # fmt: skip
    micro = report.get("micro avg", {"precision": 0.0, "recall": 0.0, "f1-score": 0.0})
    present = [v["f1"] for v in per_type.values() if v["support"] > 0]
    gold_spans, pred_spans = _spans_of(gold), _spans_of(pred)
    return SpanEvalResult(
        f1=round(float(micro["f1-score"]), 6),
        precision=round(float(micro["precision"]), 6),
        recall=round(float(micro["recall"]), 6),
        macro_f1=round(float(np.mean(present)), 6) if present else 0.0,
        per_type=per_type,
        n=len(gold),
        tokens=sum(len(g) for g in gold),
        gold_spans=len(gold_spans),
        predicted_spans=len(pred_spans),
        errors=_span_errors(gold_spans, pred_spans, words) if words is not None else {},
    )


def _spans_of(rows: list[list[str]]) -> set[tuple[int, int, int, str]]:
    from tuneforge.tasks.tags import decode_bio

    return {(i, s, e, t) for i, tags in enumerate(rows) for s, e, t in decode_bio(tags)}


def _span_errors(gold: set, pred: set, words: list[list[str]], limit: int = 20) -> dict:
    """Missed gold spans, spurious predicted ones, and same-words-other-type confusions."""
    by_place = {(i, s, e): t for i, s, e, t in gold}
    confused: dict[str, int] = {}
    for i, s, e, t in sorted(pred - gold):
        g = by_place.get((i, s, e))
        if g is not None:
            key = f"{g} -> {t}"
            confused[key] = confused.get(key, 0) + 1

    def show(span) -> dict:
        i, s, e, t = span
        return {"sentence": i, "span": " ".join(words[i][s:e]), "type": t,
                "text": " ".join(words[i])[:300]}  # fmt: skip

    return {
        "missed": [show(x) for x in sorted(gold - pred)[:limit]],
        "spurious": [show(x) for x in sorted(pred - gold)[:limit]],
        "missed_count": len(gold - pred),
        "spurious_count": len(pred - gold),
        "confusions": dict(sorted(confused.items(), key=lambda kv: -kv[1])),
    }
