"""Scores of generated text against reference text: exact match, token F1, ROUGE-L, and, when the
references are JSON objects, JSON validity and field-level F1.

- `exact_match`, `token_f1`: on normalized text (trimmed, case-folded, whitespace runs as one
  space); token F1 is SQuAD's without its English-only article and punctuation stripping.
- `rouge_l`: the `rouge-score` package's ROUGE-L F-measure (sentence-level LCS). Its default
  tokenizer keeps only `[a-z0-9]`, so "Café" would score as "caf" and Cyrillic or CJK text as
  nothing; ours splits on the same boundaries but keeps every Unicode letter and digit (on ASCII
  text the two give the same tokens).
- `json_scores`: the share of generations that parse as a JSON object, and F1 over (field, value)
  pairs, micro over the whole set and per field; a list value is a multiset of its normalized
  items, so `{"skills": ["SQL", "sql"]}` holds the pair ("skills", "sql") twice.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from functools import cache


def normalize(text: str) -> str:
    """Trimmed, case-folded, whitespace runs as one space."""
    return " ".join(text.casefold().split())


def exact_match(generated: str, expected: str) -> bool:
    return normalize(generated) == normalize(expected)


def _f1(common: int, predicted: int, gold: int) -> float:
    """F1 from counts; nothing predicted for nothing expected is a perfect score."""
    if not predicted or not gold:
        return float(predicted == gold)
    if not common:
        return 0.0
    precision, recall = common / predicted, common / gold
    return 2 * precision * recall / (precision + recall)


def token_f1(generated: str, expected: str) -> float:
    """F1 of the shared whitespace tokens of the normalized texts."""
    pred, gold = Counter(normalize(generated).split()), Counter(normalize(expected).split())
    return _f1(sum((pred & gold).values()), pred.total(), gold.total())


class UnicodeWords:
    """rouge-score's tokenization (lower case, runs of letters and digits) for any script."""

    WORD = re.compile(r"[^\W_]+")

    def tokenize(self, text: str) -> list[str]:
        return self.WORD.findall(text.casefold())


@cache
def _rouge_scorer():
    from rouge_score.rouge_scorer import RougeScorer

    return RougeScorer(["rougeL"], tokenizer=UnicodeWords())


def rouge_l(generated: str, expected: str) -> float:
    """ROUGE-L F-measure; two texts without a word are a match (rouge-score would say 0)."""
    words = UnicodeWords()
    if not words.tokenize(generated) and not words.tokenize(expected):
        return 1.0
    return float(_rouge_scorer().score(expected, generated)["rougeL"].fmeasure)


# ---- JSON extraction ---------------------------------------------------------------------------
def parse_object(text: str) -> dict | None:
    """The JSON object `text` holds (surrounding whitespace allowed), else None."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _item(value) -> str:
    if isinstance(value, str):
        return normalize(value)
    return json.dumps(value, sort_keys=True, ensure_ascii=False)  # numbers, objects, null


def field_items(obj: dict) -> dict[str, Counter]:
    """Each field's values as a multiset of normalized items (a scalar is one item)."""
    return {
        key: Counter(_item(v) for v in (value if isinstance(value, list) else [value]))
        for key, value in obj.items()
    }


@dataclass
class JsonScores:
    valid: float  # share of generations that parse as a JSON object
    f1: float  # micro F1 over (field, value) pairs
    precision: float
    recall: float
    per_field: dict[str, dict[str, float]]  # precision, recall, f1, support (reference items)


def json_scores(generated: list[str], references: list[dict]) -> JsonScores:
    """Generations scored against reference objects; a generation that is not a JSON object
    predicts no pairs (all of its reference's pairs are missed)."""
    parsed = [parse_object(g) for g in generated]
    counts: dict[str, list[int]] = {}  # field -> [common, predicted, gold]
    for found, reference in zip(parsed, references, strict=True):
        pred, gold = field_items(found or {}), field_items(reference)
        for key in gold.keys() | pred.keys():
            p, g = pred.get(key, Counter()), gold.get(key, Counter())
            row = counts.setdefault(key, [0, 0, 0])
            row[0] += (p & g).total()
            row[1] += p.total()
            row[2] += g.total()
    common, predicted, gold = (sum(r[i] for r in counts.values()) for i in range(3))
    reference_fields = {key for r in references for key in r}
    return JsonScores(
        valid=sum(p is not None for p in parsed) / max(len(parsed), 1),
        f1=_f1(common, predicted, gold),
        precision=common / predicted if predicted else float(not gold),
        recall=common / gold if gold else 1.0,
        per_field={
            key: {
                "precision": c / p if p else float(not g),
                "recall": c / g if g else 1.0,
                "f1": _f1(c, p, g),
                "support": g,
            }
            for key, (c, p, g) in sorted(counts.items())
            if key in reference_fields  # fields only generations had count in the micro F1
        },
    )


def json_references(references: list[str]) -> list[dict] | None:
    """The references as objects when every one is a JSON object, else None."""
    parsed = [parse_object(r) for r in references]
    return parsed if parsed and all(p is not None for p in parsed) else None


# ---- a whole set -------------------------------------------------------------------------------
@dataclass
class GenerativeScores:
    exact_match: float  # means over the examples
    token_f1: float
    rouge_l: float
    rows: list[dict]  # per example: exact_match, token_f1, rouge_l
    json: JsonScores | None  # only when every reference is a JSON object


def score_generations(generated: list[str], expected: list[str]) -> GenerativeScores:
    if len(generated) != len(expected) or not expected:
        raise ValueError(f"{len(generated)} generations for {len(expected)} references")
    rows = [
        {"exact_match": exact_match(g, e), "token_f1": token_f1(g, e), "rouge_l": rouge_l(g, e)}
        for g, e in zip(generated, expected, strict=True)
    ]
    objects = json_references(expected)
    return GenerativeScores(
        **{k: sum(r[k] for r in rows) / len(rows) for k in ("exact_match", "token_f1", "rouge_l")},
        rows=rows,
        json=json_scores(generated, objects) if objects is not None else None,
    )
