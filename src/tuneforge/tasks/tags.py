"""Tag schemes: BIO (IOB2), IOB1 and BIOES (and BILOU) read into spans; spans written as BIO.

A span is (first word, end word exclusive, type). Every scheme is read into spans with errors
that say where the tags break the scheme, and written back as BIO, the one scheme the model
learns, so IOB1 and BIOES files train the same model as their BIO equivalents.
"""

from __future__ import annotations

import re
from collections.abc import Callable

SCHEMES = ("bio", "iob1", "bioes")
_TAG = re.compile(r"^(?:(?P<prefix>[BIOESUL])(?:[-_](?P<type>.+))?)$")
Span = tuple[int, int, str]


class TagError(ValueError):
    """A tag sequence that breaks its scheme; `word` is the 0-based position at fault;
    `orphan` when it is a BIO I- tag that begins a span (what conlleval reads as a start)."""

    def __init__(self, message: str, word: int, orphan: bool = False) -> None:
        super().__init__(message)
        self.word, self.orphan = word, orphan


def parse_tag(tag: str, default_type: str | None) -> tuple[str, str | None]:
    """('B'|'I'|'O'|'E'|'S', type) of one tag; bare 'B'/'I' take `default_type`."""
    match = _TAG.match(tag.strip())
    if match is None:
        raise TagError(
            f"unknown tag '{tag}': tags are O, or B-/I- (BIO, IOB1) or B-/I-/E-/S- (BIOES) "
            "followed by a type, e.g. B-SKILL",
            0,
        )
    prefix, kind = match["prefix"], match["type"]
    prefix = {"U": "S", "L": "E"}.get(prefix, prefix)  # BILOU is BIOES by other letters
    if prefix == "O":
        return "O", None
    if kind is None:
        if default_type is None:
            raise TagError(f"tag '{tag}' has no type, and no layer name gives one", 0)
        kind = default_type
    return prefix, kind


def detect_scheme(tag_rows: list[list[str]]) -> str:
    """'bioes' if E-/S- (or L-/U-) tags occur; 'iob1' if no span starts with B- except right
    after a span of the same type (IOB1's only use of B-); else 'bio'."""
    prefixes = {t.strip()[:1] for row in tag_rows for t in row}
    if prefixes & {"E", "S", "L", "U"}:
        return "bioes"
    starts_with_i = b_only_between = False
    for row in tag_rows:
        previous = "O"
        for tag in row:
            tag = tag.strip()
            if tag.startswith("I") and (previous == "O" or _type(previous) != _type(tag)):
                starts_with_i = True
            if tag.startswith("B") and not (previous[:1] in "BI" and _type(previous) == _type(tag)):
                b_only_between = True  # a B- that starts a span from nothing: BIO's use
            previous = tag
    return "iob1" if starts_with_i and not b_only_between else "bio"


def _type(tag: str) -> str:
    return tag[2:] if len(tag) > 2 else ""


def read_spans(tags: list[str], scheme: str, default_type: str | None = None) -> list[Span]:
    """The spans of one sentence's tags under `scheme`; TagError where they break it."""
    reader = _READERS.get(scheme)
    if reader is None:
        raise TagError(f"unknown tag scheme '{scheme}': use one of {', '.join(SCHEMES)}", 0)
    parsed = []
    for i, tag in enumerate(tags):
        try:
            parsed.append(parse_tag(tag, default_type))
        except TagError as exc:
            raise TagError(str(exc), i) from None
    return reader(parsed)


def _read_bio(parsed: list[tuple[str, str | None]]) -> list[Span]:
    spans, start, kind = [], None, None
    for i, (prefix, t) in enumerate(parsed):
        if prefix in ("E", "S"):
            raise TagError(f"{prefix}-{t} is a BIOES tag in a BIO sentence", i)
        if prefix == "I" and (start is None or t != kind):
            began = f"follows a span of type {kind}" if start is not None else "follows O"
            raise TagError(
                f"I-{t} {began}: its type never began (a span starts with B-{t}). Fix the "
                "tag; or, if the file is IOB1, pass -T scheme=iob1; or pass -T "
                "repair_tags=true to read such a tag as a span's start, as conlleval does",
                i,
                orphan=True,
            )
        if prefix in ("B", "O") and start is not None:
            spans.append((start, i, kind))
            start = kind = None
        if prefix == "B":
            start, kind = i, t
    if start is not None:
        spans.append((start, len(parsed), kind))
    return spans


def _read_iob1(parsed: list[tuple[str, str | None]]) -> list[Span]:
    spans, start, kind = [], None, None
    for i, (prefix, t) in enumerate(parsed):
        if prefix in ("E", "S"):
            raise TagError(f"{prefix}-{t} is a BIOES tag in an IOB1 sentence", i)
        continues = prefix == "I" and start is not None and t == kind
        if not continues and start is not None:
            spans.append((start, i, kind))
            start = kind = None
        if prefix in ("B", "I") and not continues:
            start, kind = i, t
    if start is not None:
        spans.append((start, len(parsed), kind))
    return spans


def _read_bioes(parsed: list[tuple[str, str | None]]) -> list[Span]:
    spans, start, kind = [], None, None
    for i, (prefix, t) in enumerate(parsed):
        inside = start is not None
        if prefix in ("I", "E") and (not inside or t != kind):
            raise TagError(f"{prefix}-{t} does not continue a span begun by B-{t}", i)
        if prefix in ("B", "S", "O") and inside:
            raise TagError(f"the span of type {kind} begun at word {start + 1} has no E- tag", i)
        if prefix == "S":
            spans.append((i, i + 1, t))
        elif prefix == "B":
            start, kind = i, t
        elif prefix == "E":
            spans.append((start, i + 1, kind))
            start = kind = None
    if start is not None:
        raise TagError(f"the span of type {kind} begun at word {start + 1} has no E- tag", start)
    return spans


_READERS: dict[str, Callable] = {"bio": _read_bio, "iob1": _read_iob1, "bioes": _read_bioes}


def bio_tags(spans: list[Span], length: int) -> list[str]:
    """BIO tags of `length` words with these (non-overlapping) spans."""
    tags = ["O"] * length
    for start, end, kind in spans:
        tags[start] = f"B-{kind}"
        for i in range(start + 1, end):
            tags[i] = f"I-{kind}"
    return tags


def decode_bio(tags: list[str]) -> list[Span]:
    """Spans of predicted BIO tags, leniently: an I- that starts a span begins one (a model's
    output may break the scheme; the gold data never does, it was checked on reading)."""
    spans, start, kind = [], None, None
    for i, tag in enumerate(tags):
        prefix, t = (tag[0], tag[2:]) if tag != "O" else ("O", None)
        if start is not None and (prefix != "I" or t != kind):
            spans.append((start, i, kind))
            start = kind = None
        if prefix in ("B", "I") and start is None:
            start, kind = i, t
    if start is not None:
        spans.append((start, len(tags), kind))
    return spans


def tag_names(types: list[str]) -> list[str]:
    """The model's outputs: O, then B- and I- of every type."""
    return ["O"] + [f"{p}-{t}" for t in sorted(types) for p in ("B", "I")]


def repair_bio(tags: list[str]) -> list[str]:
    """Predicted tags made valid BIO: an I- that starts a span becomes B- (what conlleval does
    with it), so strict span scores and `decode_bio` count the same spans."""
    out, previous = [], "O"
    for tag in tags:
        if tag.startswith("I-") and (previous == "O" or previous[2:] != tag[2:]):
            tag = "B-" + tag[2:]
        out.append(tag)
        previous = tag
    return out
