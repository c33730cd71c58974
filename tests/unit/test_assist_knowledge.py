"""Knowledge files and slots: loading, clear errors naming file and line, slot filling."""

from __future__ import annotations

import pytest

from assist_fakes import bag_of_words
from tuneforge.apps.assist.build import demo_dir, init_assistant
from tuneforge.apps.assist.evaluate import load_retrieval_test
from tuneforge.apps.assist.knowledge import (
    AssistConfig,
    check_answers_cover,
    load_answers,
    load_articles,
    load_intents,
    load_retrieval_queries,
)
from tuneforge.apps.assist.retrieval import Retriever
from tuneforge.apps.assist.slots import extract_slots, fill
from tuneforge.errors import ConfigError, DataError


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("Top up €50 with my Visa?", {"amount": "€50", "currency": "EUR", "card_type": "Visa"}),
        ("got 200 pounds yesterday", {"amount": "£200", "currency": "GBP", "date": "yesterday"}),
        (
            "swap 1,000.50 USD 12 March",
            {"amount": "$1,000.50", "currency": "USD", "date": "12 March"},
        ),
        ("send 30 CHF", {"amount": "30 CHF", "currency": "CHF"}),
        ("how do I get dollars", {"currency": "USD"}),
        ("mastercard charged 2024-05-01", {"card_type": "Mastercard", "date": "2024-05-01"}),
        ("where is my card", {}),
    ],
)
def test_extract_slots(message, expected):
    assert extract_slots(message) == expected


def test_fill_uses_template_or_fallback(tmp_path):
    file = tmp_path / "a.yaml"
    file.write_text("x:\n  answer: It costs {amount}, {{braces}}.\n  fallback: A fee {{ok}}.\n")
    answer = load_answers(file)["x"]
    assert fill(answer, {"amount": "€5"}) == ("It costs €5, {braces}.", {"amount": "€5"})
    assert fill(answer, {"date": "today"}) == ("A fee {ok}.", {})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: ok\nb:\n  answer: Costs {fee}\n  fallback: x\n", "line 2 ('b'): unknown slot(s)"),
        ("a: fine\n\nb:\n  answer: Costs {amount}\n", "line 3 ('b'): the answer uses {amount}"),
        ("a:\n  answer: x\n  text: y\n", "line 1 ('a'): unknown key(s) ['text']"),
        ("a: [1, 2]\n", "line 1 ('a'): give the answer as text"),
        ("a: b: c\n", "line 1: not valid YAML"),
    ],
)
def test_answer_errors_name_file_and_line(tmp_path, text, message):
    file = tmp_path / "answers.yaml"
    file.write_text(text)
    with pytest.raises(DataError) as err:
        load_answers(file)
    assert str(file) in str(err.value) and message in str(err.value)


def test_answers_must_cover_intents(tmp_path):
    file = tmp_path / "answers.yaml"
    file.write_text("a: x\nc: y\n")
    with pytest.raises(DataError, match="no answer for 1 intent"):
        check_answers_cover(["a", "b", "c"], load_answers(file), file)
    with pytest.raises(DataError, match="no example questions: c"):
        check_answers_cover(["a"], load_answers(file), file)


def test_yaml_intents_and_errors(tmp_path):
    file = tmp_path / "intents.yaml"
    file.write_text("greet:\n  - hi\n  - hello\nbye:\n  - see you\n")
    ds = load_intents(file)
    assert ds.labels == ["greet", "greet", "bye"] and ds.texts[2] == "see you"
    file.write_text("greet:\n  - hi\nbye: see you\n")
    with pytest.raises(DataError, match=r"line 3: intent 'bye' needs a list"):
        load_intents(file)


def test_articles_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_articles(tmp_path / "nope")
    (tmp_path / "a").mkdir()
    with pytest.raises(DataError, match="has no articles"):
        load_articles(tmp_path / "a")
    (tmp_path / "a" / "x.md").write_bytes(b"\xff\xfe bad")
    with pytest.raises(DataError, match=r"x\.md: not UTF-8"):
        load_articles(tmp_path / "a")


def test_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="assist init"):
        AssistConfig.load(tmp_path)
    (tmp_path / "assist.yaml").write_text("target_accuracy: 2\n")
    with pytest.raises(ConfigError, match="'target_accuracy'"):
        AssistConfig.load(tmp_path)
    (tmp_path / "assist.yaml").write_text("model_dir: m\n")
    with pytest.raises(ConfigError, match="'model_dir'"):
        AssistConfig.load(tmp_path)


def test_demo_knowledge_is_complete_and_valid(tmp_path):
    directory = init_assistant(tmp_path / "demo")
    cfg = AssistConfig.load(directory)
    intents = load_intents(directory / cfg.intents)
    answers = load_answers(directory / cfg.answers)
    assert len(intents.label_names) == 77
    check_answers_cover(intents.label_names, answers, directory / cfg.answers)
    assert sum(bool(a.slots) for a in answers.values()) >= 8
    articles = load_articles(directory / cfg.articles)
    assert 5 <= len(articles) <= 8
    queries = load_retrieval_queries(directory / cfg.retrieval_queries, articles)
    assert {a for _, a in queries} == {a.name for a in articles}
    held_out = load_retrieval_test(
        directory / "retrieval_test.csv", Retriever(articles, bag_of_words)
    )
    assert len(held_out) == 30 and {c.article for c in held_out} == {a.name for a in articles}
    assert not {c.query.lower() for c in held_out} & {q.lower() for q, _ in queries}
    assert (demo_dir() / "NOTICE").read_text().count("CC BY 4.0") >= 1
    with pytest.raises(ConfigError, match="--force"):
        init_assistant(directory)


def test_yaml_intent_and_answer_names_stay_text(tmp_path):
    intents = tmp_path / "intents.yaml"
    intents.write_text("yes:\n  - sure\n  - yes please\nno:\n  - nope\n  - no thanks\n")
    assert load_intents(intents).label_names == ["no", "yes"]
    answers = tmp_path / "answers.yaml"
    answers.write_text("yes: Great, done.\nno: 'OK, cancelled.'\n")
    assert sorted(load_answers(answers)) == ["no", "yes"]


def test_init_writes_its_config_atomically(tmp_path, monkeypatch):
    """A write that dies halfway (disk full, a kill) leaves the previous assist.yaml whole."""
    from pathlib import Path

    from tuneforge.apps.assist.knowledge import CONFIG_FILE

    directory = init_assistant(tmp_path / "bot")
    before = (directory / CONFIG_FILE).read_text()
    real_write = Path.write_text

    def dies_halfway(self, text, *args, **kwargs):
        real_write(self, text[: len(text) // 2], *args, **kwargs)
        raise OSError("No space left on device")

    monkeypatch.setattr(Path, "write_text", dies_halfway)
    with pytest.raises(OSError, match="No space"):
        init_assistant(directory, force=True)
    monkeypatch.undo()
    assert (directory / CONFIG_FILE).read_text() == before
    assert sorted(p.name for p in directory.iterdir() if p.name.startswith(".")) == []
