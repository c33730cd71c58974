"""Token-tagged data: CoNLL columns, word-per-row CSV, JSONL tokens + tags, JSONL text + spans.

Every format becomes a `TokenDataset`: per sentence its words, their character offsets in the
sentence text, and BIO tags (whatever scheme the file used). Errors name the file, the line and
the column (or word) at fault and say how to fix it.
"""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tuneforge.errors import DataError
from tuneforge.tasks.tags import TagError, bio_tags, detect_scheme, read_spans

CONLL_SUFFIXES = (".conll", ".conllu", ".iob", ".bio", ".bioes")
JSON_SUFFIXES = (".jsonl", ".json", ".ndjson")
SENTENCE_COLUMNS = ("sentence_id", "sentence #", "sentence", "sent_id", "sentence_idx")
WORD_COLUMNS = ("word", "token", "words", "tokens")
# words of raw text: runs of letters/digits (joined by - or '), or one other visible character
WORD = re.compile(r"\w+(?:[-'’]\w+)*|[^\w\s]")


@dataclass
class TokenDataset:
    """Sentences as words with character offsets in `texts`, and BIO tags (None: unlabelled)."""

    words: list[list[str]]
    tags: list[list[str]] | None
    texts: list[str]
    offsets: list[list[tuple[int, int]]]
    source: str = "<memory>"
    lines: list[int] = field(default_factory=list)  # 1-based line where each sentence starts
    layer: str | None = None  # the tag column or layer read
    scheme: str = "bio"  # the scheme the file used (tags here are BIO)
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.lines:
            self.lines = list(range(1, len(self.words) + 1))

    def __len__(self) -> int:
        return len(self.words)

    @property
    def labels(self) -> list[list[str]] | None:  # what the shared code checks for "labelled"
        return self.tags

    @property
    def entity_types(self) -> list[str]:
        found = {t[2:] for row in self.tags or [] for t in row if t != "O"}
        return sorted(found)

    def span_counts(self) -> Counter:
        return Counter(t[2:] for row in self.tags or [] for t in row if t.startswith("B-"))

    def subset(self, indices: list[int]) -> TokenDataset:
        pick = lambda xs: [xs[i] for i in indices]  # noqa: E731
        return TokenDataset(
            words=pick(self.words),
            tags=None if self.tags is None else pick(self.tags),
            texts=pick(self.texts),
            offsets=pick(self.offsets),
            source=self.source,
            lines=pick(self.lines),
            layer=self.layer,
            scheme=self.scheme,
        )

    @classmethod
    def from_words(cls, words: list[list[str]], tags: list[list[str]] | None = None, **kw):
        texts, offsets = zip(*(join_words(w) for w in words), strict=True) if words else ((), ())
        return cls([list(w) for w in words], tags, list(texts), list(offsets), **kw)

    @classmethod
    def from_texts(cls, texts: list[str]) -> TokenDataset:
        """Raw texts split into words (the user's own text: offsets point into it)."""
        words, offsets = [], []
        for text in texts:
            found = list(WORD.finditer(text))
            words.append([m.group() for m in found])
            offsets.append([m.span() for m in found])
        return cls(words, None, list(texts), offsets)


def join_words(words: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """The words joined by spaces, and each word's (start, end) in that text."""
    offsets, at = [], 0
    for w in words:
        offsets.append((at, at + len(w)))
        at += len(w) + 1
    return " ".join(words), offsets


# ---- format detection ---------------------------------------------------------------------------
def token_format(path: Path) -> str | None:
    """'conll', 'word-rows', 'tokens' or 'spans' when the file is token-tagged data, else None."""
    suffix = path.suffix.lower()
    if suffix in CONLL_SUFFIXES:
        return "conll"
    head = _head_lines(path)
    if suffix in JSON_SUFFIXES:
        row = _first_json(head)
        if isinstance(row, dict) and isinstance(row.get("tokens"), list):
            return "tokens"
        if isinstance(row, dict) and isinstance(row.get("spans"), list) and "text" in row:
            return "spans"
        return None
    if suffix in (".csv", ".tsv") and head:
        columns = {c.strip().lower() for c in re.split(r"[,\t]", head[0])}
        if columns & set(SENTENCE_COLUMNS) and columns & set(WORD_COLUMNS):
            return "word-rows"
    if suffix in (".txt", ".tsv") and _looks_like_conll(head):
        return "conll"
    return None


def _head_lines(path: Path, n: int = 200) -> list[str]:
    try:
        with path.open(encoding="utf-8", errors="replace") as f:
            return [line.rstrip("\n") for _, line in zip(range(n), f, strict=False)]
    except OSError:
        return []


def _first_json(lines: list[str]):
    for line in lines:
        if line.strip():
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


def _looks_like_conll(lines: list[str]) -> bool:
    """Blank lines between sentences and a last column of tags (O, B-X, I-X, ...)."""
    rows = [line.split() for line in lines if line.strip() and not line.startswith("#")]
    if len(rows) < 3 or not any(not line.strip() for line in lines):
        return False
    tag = re.compile(r"^(O|[BIESUL]([-_].+)?)$")
    return all(len(r) >= 2 for r in rows) and sum(bool(tag.match(r[-1])) for r in rows) == len(rows)


# ---- reading ------------------------------------------------------------------------------------
def load_tokens(
    path: str | Path,
    label_col: str | None = None,
    require_labels: bool = True,
    scheme: str | None = None,
    repair: bool = False,
) -> TokenDataset:
    """Read token-tagged data in any supported format; `label_col` picks the tag column (a
    CoNLL column number, 1 = the words) or layer (`tags_skill`); `scheme` overrides detection;
    `repair` reads a BIO I- tag that begins a span as its start (as conlleval does), with a
    warning, instead of stopping at it."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found. Check the path (cwd: {Path.cwd()}).")
    fmt = token_format(path)
    if fmt is None:
        raise DataError(
            f"{path}: not token-tagged data. Use CoNLL columns (one token per line, a blank "
            "line between sentences), JSONL with 'tokens' and 'tags', or JSONL with 'text' "
            "and 'spans' [{start, end, label}]."
        )
    reader = {"conll": _read_conll, "word-rows": _read_word_rows, "tokens": _read_tokens}
    if fmt == "spans":
        return _read_spans(path, label_col, require_labels)
    rows, layer, default_type = reader[fmt](path, label_col, require_labels)
    return _tagged(path, rows, layer, default_type, scheme, require_labels, repair)


def _tagged(path, rows, layer, default_type, scheme, require_labels, repair) -> TokenDataset:
    """rows: (line, words, tags or None) -> a TokenDataset with BIO tags, checked."""
    if not rows:
        raise DataError(f"{path}: no sentences. Put one token per line, sentences apart.")
    has_tags = all(r[2] is not None for r in rows)
    if require_labels and not has_tags:
        raise DataError(f"{path}: no tags to train on. Add a tag column (see --label-col).")
    for line, words, tags in rows:
        if tags is not None and len(tags) != len(words):
            raise DataError(
                f"{path}, line {line}: {len(words)} tokens but {len(tags)} tags in "
                f"'{layer}'. Give every token exactly one tag."
            )
    words = [r[1] for r in rows]
    ds = TokenDataset.from_words(words, None, source=str(path), lines=[r[0] for r in rows])
    ds.layer = layer
    if has_tags:
        tag_rows = [r[2] for r in rows]
        ds.scheme = scheme or detect_scheme(tag_rows)
        repaired: list[int] = []
        ds.tags = [
            _to_bio(path, line, ws, ts, ds.scheme, default_type, layer, repair, repaired)
            for line, ws, ts in rows
        ]
        if repaired:
            shown = ", ".join(map(str, repaired[:5])) + (" ..." if len(repaired) > 5 else "")
            ds.warnings.append(
                f"{path}: {len(repaired)} sentences have an I- tag that begins a span "
                f"(line {shown}); each was read as the span's start, as conlleval does"
            )
    return ds


def _to_bio(path, line, words, tags, scheme, default_type, layer, repair, repaired) -> list[str]:
    try:
        return bio_tags(read_spans(tags, scheme, default_type), len(tags))
    except TagError as exc:
        if repair and exc.orphan:
            repaired.append(line)  # lenient BIO is IOB1: an I- that starts a span begins one
            return bio_tags(read_spans(tags, "iob1", default_type), len(tags))
        word = words[exc.word] if exc.word < len(words) else ""
        raise DataError(
            f"{path}, line {line}, token {exc.word + 1} ('{word}') in '{layer}': {exc}."
        ) from None


def _read_conll(path: Path, label_col, require_labels):
    rows, words, tags, start, width = [], [], [], None, None
    with path.open(encoding="utf-8") as f:
        lines = f.read().splitlines()
    column = None if label_col is None else _column_number(path, label_col)
    for number, line in enumerate([*lines, ""], start=1):
        if line.startswith("-DOCSTART-") or (line.startswith("#") and not words):
            continue
        if not line.strip():
            if words:
                rows.append((start, words, tags if tags else None))
            words, tags, start = [], [], None
            continue
        cells = line.split()
        if start is None:
            start = number
        if width is None:
            width = len(cells)
        index = (column or width) - 1
        if len(cells) == 1 and not require_labels:
            words.append(cells[0])
            continue
        if index >= len(cells) or index == 0:
            raise DataError(
                f"{path}, line {number}: no tag column {index + 1} (the line has "
                f"{len(cells)} columns: '{line.strip()}'). Pass --label-col with a column "
                "number from 2, or fix the line."
            )
        words.append(cells[0])
        tags.append(cells[index])
    return rows, f"column {column or width}", None


def _column_number(path: Path, label_col: str) -> int:
    try:
        number = int(label_col)
    except ValueError:
        raise DataError(
            f"{path}: --label-col '{label_col}' must be a column number for a CoNLL file "
            "(1 is the token, 2 the first tag column)."
        ) from None
    if number < 2:
        raise DataError(f"{path}: --label-col {number}: column 1 holds the tokens; use 2 or more.")
    return number


def _read_word_rows(path: Path, label_col, require_labels):
    from tuneforge.data.readers import read_frame

    frame = read_frame(path)
    cols = {c.lower(): c for c in frame.columns}
    sentence = next(cols[c] for c in SENTENCE_COLUMNS if c in cols)
    word = next(cols[c] for c in WORD_COLUMNS if c in cols)
    tag = _pick_column(path, frame.columns, label_col, ("tag", "tags", "label", "ner", "bio"))
    rows, current, key = [], None, None
    for i, (sid, w, t) in enumerate(
        zip(frame[sentence], frame[word], frame[tag] if tag else [None] * len(frame), strict=True)
    ):
        if sid.strip() and sid != key:  # Kaggle style leaves the id blank after a sentence's first
            key, current = sid, (i + 2, [], [] if tag else None)
            rows.append(current)
        if current is None:
            raise DataError(f"{path}, line {i + 2}: no sentence id in '{sentence}' yet.")
        if not w.strip():
            raise DataError(f"{path}, line {i + 2}: empty word in column '{word}'.")
        current[1].append(w)
        if tag:
            current[2].append(t)
    return rows, tag, None


def _pick_column(path, columns, wanted, names):
    if wanted is not None:
        if wanted not in columns:
            raise DataError(
                f"Column '{wanted}' not found in {path.name} (columns: {', '.join(columns)})."
            )
        return wanted
    lowered = {c.lower(): c for c in columns}
    return next((lowered[n] for n in names if n in lowered), None)


def _json_rows(path: Path):
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise DataError(f"{path}, line {number}: not valid JSON ({exc}).") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}, line {number}: each line must be a JSON object.")
            yield number, row


def _read_tokens(path: Path, label_col, require_labels):
    rows, layer = [], None
    for number, row in _json_rows(path):
        if layer is None:
            layer = _tag_layer(path, number, row, label_col, require_labels)
        tokens = row.get("tokens")
        if not isinstance(tokens, list) or not tokens:
            raise DataError(f"{path}, line {number}: 'tokens' must be a non-empty list.")
        tags = row.get(layer) if layer else None
        if layer and not isinstance(tags, list):
            raise DataError(f"{path}, line {number}: '{layer}' is missing or not a list.")
        rows.append(
            (number, [str(t) for t in tokens], None if tags is None else [str(t) for t in tags])
        )
    default_type = layer[5:] if layer and layer.startswith("tags_") else None
    return rows, layer, default_type


def _tag_layer(path, number, row, label_col, require_labels) -> str | None:
    layers = sorted(k for k, v in row.items() if k.startswith("tags") and isinstance(v, list))
    if label_col is not None:
        if label_col not in row:
            listed = ", ".join(layers) or "none"
            raise DataError(f"{path}, line {number}: no '{label_col}' (tag lists: {listed}).")
        return label_col
    if "tags" in layers:
        return "tags"
    if len(layers) == 1:
        return layers[0]
    if len(layers) > 1:
        raise DataError(
            f"{path}: several tag layers ({', '.join(layers)}); pick one with --label-col, "
            f"e.g. --label-col {layers[0]} (each layer trains its own model)."
        )
    if require_labels:
        raise DataError(f"{path}, line {number}: no 'tags' list to train on.")
    return None


def _read_spans(path: Path, label_col, require_labels) -> TokenDataset:
    """JSONL text + character spans: words from the text, spans snapped onto them."""
    key = label_col or "spans"
    words, texts, offsets, tags, lines = [], [], [], [], []
    for number, row in _json_rows(path):
        text = row.get("text")
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{path}, line {number}: 'text' must be a non-empty string.")
        found = list(WORD.finditer(text))
        spans = row.get(key, [] if not require_labels else None)
        if spans is None:
            raise DataError(f"{path}, line {number}: no '{key}' list of spans.")
        words.append([m.group() for m in found])
        offsets.append([m.span() for m in found])
        texts.append(text)
        lines.append(number)
        tags.append(_span_tags(path, number, text, spans, offsets[-1]))
    if not words:
        raise DataError(f"{path}: no rows.")
    return TokenDataset(words, tags, texts, offsets, str(path), lines, key, "spans")


def _span_tags(path, number, text, spans, offsets) -> list[str]:
    where = f"{path}, line {number}"
    checked = []
    for i, span in enumerate(spans):
        try:
            start, end, label = int(span["start"]), int(span["end"]), str(span["label"])
        except (KeyError, TypeError, ValueError):
            raise DataError(
                f"{where}: span {i + 1} needs integer 'start', 'end' and a 'label'."
            ) from None
        if not 0 <= start < end <= len(text):
            raise DataError(
                f"{where}: span {i + 1} [{start}, {end}) is outside the text ({len(text)} chars)."
            )
        checked.append((start, end, label))
    checked.sort()
    for (s1, e1, l1), (s2, e2, l2) in itertools.pairwise(checked):
        if s2 < e1:
            raise DataError(
                f"{where}: spans overlap: [{s1}, {e1}) {l1} '{text[s1:e1]}' and [{s2}, {e2}) "
                f"{l2} '{text[s2:e2]}'. One layer holds non-overlapping spans; put the other "
                "in its own file or layer."
            )
    word_spans = []
    for start, end, label in checked:
        inside = [j for j, (ws, we) in enumerate(offsets) if ws < end and we > start]
        if not inside:
            raise DataError(f"{where}: span [{start}, {end}) {label} covers no word.")
        word_spans.append((inside[0], inside[-1] + 1, label))
    return bio_tags(word_spans, len(offsets))
