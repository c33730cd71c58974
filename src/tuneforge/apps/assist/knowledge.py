"""What an assistant knows: example questions per intent, approved answers, help articles.

An assistant is a directory with `assist.yaml` naming its files (see `AssistConfig`; the
apps' chassis loads and checks it). Every loader checks its file and raises `DataError`
naming the file, the line and the fix, because these files are written by hand by support
teams, not generated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationInfo, field_validator

from tuneforge.apps.assist import APP
from tuneforge.apps.assist.slots import SLOT_NAMES, template_fields
from tuneforge.apps.chassis.settings import AppSettings
from tuneforge.data.dataset import TextDataset, load_data
from tuneforge.data.yaml_text import load_text_yaml
from tuneforge.errors import DataError

CONFIG_FILE = APP.settings_file
ARTICLE_SUFFIXES = (".md", ".markdown", ".txt")


class AssistConfig(AppSettings):
    """`assist.yaml`: paths are relative to the assistant directory."""

    app = APP

    intents: str = "intents.csv"
    answers: str = "answers.yaml"
    articles: str = "articles"
    retrieval_queries: str | None = "retrieval_queries.csv"
    model: str = "model"
    database: str = "sqlite:///assist.db"
    base: str = "minilm"
    # Answer from an intent only when, on validation data, answers given at that confidence
    # were right at least this often; lower-scoring questions go to retrieval or a person.
    target_accuracy: float = Field(0.95, gt=0, le=1)
    # ...and answer at most this share of in-scope validation questions: the lowest-scoring
    # rest is handed off, because unknown questions score there even when the model is right.
    target_in_scope_recall: float = Field(0.95, gt=0, le=1)
    # Out-of-scope questions, if you have some: this file (CSV/JSONL with a text column, or a
    # YAML list) and the intents file's rows labelled `oos`. The answer threshold is raised
    # until target_oos_handoff of them go to an article or a person, but never so far that
    # fewer than min_in_scope_recall of in-scope validation questions are answered.
    oos_examples: str | None = None
    target_oos_handoff: float = Field(0.8, ge=0, le=1)
    min_in_scope_recall: float = Field(0.9, gt=0, le=1)
    # Share of the retrieval queries whose right article must clear the retrieval threshold.
    retrieval_recall: float = Field(0.9, gt=0, le=1)
    # msp_knn measured best (benchmarks/results/assist.json); see oos.py.
    oos_score: Literal["msp", "energy", "centroid", "knn", "msp_knn"] = "msp_knn"
    top_k: int = Field(3, ge=1, le=20)
    # A chat model (`tuneforge assist train-writer`) that phrases the retrieved passage as the
    # answer on the retrieval path; null: the passage itself is the reply (writer.py).
    writer: str | None = None
    writer_max_new_tokens: int = Field(96, ge=8, le=512)
    # ...and quotes the passage instead when less of what it wrote is in the passage than this
    # (share of content words): a check of "answer only from the passage", not a hope.
    writer_min_grounding: float = Field(0.8, ge=0, le=1)
    # ...or when it drops more of the question's words that the passage has than this allows
    # (1: it keeps them all): a shortened answer must keep what matched the question.
    writer_min_coverage: float = Field(1.0, ge=0, le=1)

    @field_validator("min_in_scope_recall")
    @classmethod
    def _floor_below_target(cls, value: float, info: ValidationInfo) -> float:
        target = info.data.get("target_in_scope_recall", value)
        if value > target:
            raise ValueError(f"must not exceed target_in_scope_recall ({target})")
        return value


@dataclass(frozen=True)
class Answer:
    intent: str
    template: str
    fallback: str  # said when a slot the template needs is missing (== template without slots)
    slots: tuple[str, ...]


@dataclass(frozen=True)
class Article:
    name: str  # file name, the article's id in replies and retrieval queries
    title: str
    text: str


def _read_yaml(file: Path, as_text: bool = False):
    """The file's YAML; `as_text` keeps every value text (intent names such as `yes`, `no`)."""
    try:
        text = file.read_text(encoding="utf-8")
        return load_text_yaml(text) if as_text else yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise DataError(f"{file}{where}: not valid YAML ({getattr(exc, 'problem', exc)}).") from exc


def _key_lines(file: Path) -> dict[str, int]:
    """Top-level key → 1-based line, so errors point at the entry to fix."""
    node = yaml.compose(file.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {k.value: k.start_mark.line + 1 for k, _ in node.value}


def load_intents(file: Path) -> TextDataset:
    """A CSV/JSONL/... with text and label columns, or YAML `intent: [example, ...]`."""
    file = Path(file)
    if file.suffix.lower() not in (".yaml", ".yml"):
        return load_data(file)
    raw, lines = _read_yaml(file, as_text=True), _key_lines(file)
    if not isinstance(raw, dict) or not raw:
        raise DataError(f"{file}: expected a mapping `intent: [example question, ...]`.")
    texts, labels, rows = [], [], []
    for intent, examples in raw.items():
        line = lines.get(str(intent), 0)
        if not isinstance(examples, list) or not all(isinstance(e, str) for e in examples):
            raise DataError(
                f"{file} line {line}: intent '{intent}' needs a list of example questions "
                "(one '- text' per line)."
            )
        for example in examples:
            texts.append(example.strip())
            labels.append(str(intent))
            rows.append(line)
    return TextDataset(texts, labels, source=str(file), lines=rows, label_col="intent")


def load_answers(file: Path) -> dict[str, Answer]:
    file = Path(file)
    if not file.exists():
        raise DataError(f"Answers file {file} not found; write one `intent: answer` per intent.")
    raw, lines = _read_yaml(file, as_text=True), _key_lines(file)
    if not isinstance(raw, dict) or not raw:
        raise DataError(f"{file}: expected a mapping `intent: answer text`.")
    return {
        str(intent): _answer(file, lines.get(str(intent), 0), str(intent), value)
        for intent, value in raw.items()
    }


def _answer(file: Path, line: int, intent: str, value) -> Answer:
    where = f"{file} line {line} ('{intent}')"
    if isinstance(value, str):
        value = {"answer": value}
    if not isinstance(value, dict) or not isinstance(value.get("answer"), str):
        raise DataError(f"{where}: give the answer as text, or as a mapping with 'answer:'.")
    unknown = set(value) - {"answer", "fallback"}
    if unknown:
        raise DataError(f"{where}: unknown key(s) {sorted(unknown)}; use 'answer' and 'fallback'.")
    template = " ".join(value["answer"].split())
    try:
        slots = template_fields(template)
    except ValueError as exc:
        raise DataError(f"{where}: bad template ({exc}); write slots as {{amount}}.") from exc
    bad = [s for s in slots if s not in SLOT_NAMES]
    if bad:
        raise DataError(
            f"{where}: unknown slot(s) {bad}; available: {', '.join(SLOT_NAMES)} "
            "(write a literal brace as {{ or }})."
        )
    fallback = " ".join(str(value.get("fallback") or "").split())
    if slots and not fallback:
        raise DataError(
            f"{where}: the answer uses {{{slots[0]}}}, so add 'fallback:' with the text to "
            "say when the message does not mention it."
        )
    if fallback and template_fields(fallback):
        raise DataError(
            f"{where}: the fallback must not use slots (it is said when they are missing)."
        )
    return Answer(intent, template, fallback or template, slots)


def check_answers_cover(intents: list[str], answers: dict[str, Answer], file: Path) -> None:
    """Every intent the classifier can predict needs an approved answer, and vice versa."""
    missing = sorted(set(intents) - set(answers))
    if missing:
        raise DataError(
            f"{file}: no answer for {len(missing)} intent(s): {', '.join(missing[:10])}"
            f"{' ...' if len(missing) > 10 else ''}. Add one `intent: answer` entry each."
        )
    extra = sorted(set(answers) - set(intents))
    if extra:
        raise DataError(
            f"{file}: answers for intent(s) with no example questions: {', '.join(extra[:10])}. "
            "Fix the spelling, or add examples to the intents file."
        )


def load_articles(folder: Path) -> list[Article]:
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"Articles folder {folder} not found; put help articles (.md/.txt) there.")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in ARTICLE_SUFFIXES)
    if not files:
        raise DataError(f"{folder} has no articles: add Markdown (.md) or text (.txt) files.")
    articles = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: not UTF-8 text ({exc.reason}); re-save it as UTF-8.") from exc
        if not text.strip():
            raise DataError(f"{path}: the article is empty; write it or delete the file.")
        name = path.relative_to(folder).as_posix()
        articles.append(Article(name, _title(text, path), text))
    return articles


def _title(text: str, path: Path) -> str:
    heading = re.search(r"^#\s+(.+)$", text, re.MULTILINE)
    return heading.group(1).strip() if heading else path.stem.replace("-", " ").capitalize()


def load_retrieval_queries(file: Path, articles: list[Article]) -> list[tuple[str, str]]:
    """(query, article name) pairs for calibrating and measuring retrieval."""
    ds = load_data(file, "query", "article")
    names = {a.name for a in articles}
    for name, line in zip(ds.labels, ds.lines, strict=True):
        if name not in names:
            raise DataError(
                f"{file} line {line}: article '{name}' is not in the articles folder "
                f"(have: {', '.join(sorted(names))})."
            )
    return list(zip(ds.texts, ds.labels, strict=True))
