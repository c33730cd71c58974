"""The assistant's optional writer: a chat model (tiny, random) phrasing retrieved passages."""

from __future__ import annotations

import json
import logging

import pytest
import yaml
from typer.testing import CliRunner

from assist_fakes import make_assistant, write_assistant
from chat_fakes import CORPUS, chatml_tokenizer, tiny_llama
from tuneforge.apps.assist.build import init_assistant, load_knowledge
from tuneforge.apps.assist.knowledge import AssistConfig, load_answers
from tuneforge.apps.assist.slots import extract_slots, fill
from tuneforge.apps.assist.writer import (
    INSTRUCTION,
    TRAINING_FILE,
    Writer,
    grounded_conversations,
    grounded_share,
    question_coverage,
    train_writer,
    whole_sentences,
)
from tuneforge.errors import ConfigError

EMAIL = "jane.doe@example.com"
CARD = "4111 1111 1111 1111"
CITED = "(from the help article “Fees › ATM fees”)"


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    """A random Llama whose tokenizer knows the demo's answers (short prompts: fast training)."""
    import torch

    from tuneforge.apps.assist.build import demo_dir

    answers = [a.template for a in load_answers(demo_dir() / "answers.yaml").values()]
    tok = chatml_tokenizer([*CORPUS, INSTRUCTION, *answers], vocab_size=1500)
    lm = tiny_llama(tok)
    with torch.no_grad():
        lm.lm_head.weight.mul_(25)
    root = tmp_path_factory.mktemp("writer_base")
    lm.save_pretrained(root)
    tok.save_pretrained(root)
    return root


@pytest.fixture(scope="module")
def trained(tiny_base, tmp_path_factory):
    """The demo assistant with a writer trained on 1 question per intent + 2 conversations."""
    directory = init_assistant(tmp_path_factory.mktemp("bot") / "bot")
    history = directory / "past.jsonl"
    chats = [
        [{"role": "user", "content": f"I am {EMAIL}, my card {CARD} is lost"},
         {"role": "assistant", "content": "I have frozen your card; order a new one in Cards."}],
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
    ]  # fmt: skip
    history.write_text("".join(json.dumps({"messages": c}) + "\n" for c in chats))
    run = train_writer(directory, history, base=str(tiny_base), method="full", per_intent=1,
                       progress=False, batch_size=8, early_stopping=0, max_length=512)  # fmt: skip
    return directory, run


def test_writer_trains_on_the_approved_answers_and_is_recorded(trained):
    directory, run = trained
    cfg = AssistConfig.load(directory)
    assert cfg.writer == "writer" and (directory / "writer").is_dir()
    assert run.pairs == 77 and run.conversations == 2 and run.model.config.task == "chat"
    rows = [json.loads(line) for line in (directory / TRAINING_FILE).read_text().splitlines()]
    assert len(rows) == 79
    _, answers, _, _ = load_knowledge(directory, cfg)
    for row in rows[:77]:
        system, user, assistant = row["messages"]
        reply, slots = assistant["content"], extract_slots(user["content"])
        # the target is an approved answer as the assistant gives it, and is in the passage
        assert any(fill(answer, slots)[0] == reply for answer in answers.values())
        assert system["content"].startswith(INSTRUCTION) and reply in system["content"]
    text = (directory / TRAINING_FILE).read_text()
    assert EMAIL not in text and "4111" not in text and "[EMAIL]" in text and "[CARD]" in text
    assert Writer.load(directory, cfg).model.config.task == "chat"


def test_grounded_passages_mix_in_another_intents_answer(tmp_path):
    answers = load_answers(write_assistant(tmp_path / "bot") / "answers.yaml")
    pairs = [("where is my card", "card_arrival", "Cards arrive within 5 working days.")] * 20
    chats = grounded_conversations(pairs, answers, seed=1)
    passages = [chat[0]["content"].split("\n")[-1] for chat in chats]
    other = "Exchanging money costs 0.5% above your allowance."
    assert all(other in p and pairs[0][2] in p for p in passages)
    assert {p.startswith(other) for p in passages} == {True, False}  # both orders occur
    assert all(chat[-1] == {"role": "assistant", "content": pairs[0][2]} for chat in chats)
    half = grounded_conversations(pairs * 10, answers, seed=1, distractor_share=0.5)
    alone = sum(chat[0]["content"].endswith("\n" + pairs[0][2]) for chat in half)
    assert 60 <= alone <= 140  # about half of 200 have the reply alone as the passage


class SpyWriter:
    """Records each prompt; answers with `text` (None: the passage's first sentence), or raises
    it when it is an exception."""

    def __init__(self, text="ATM operators may add their own fee (Travel)."):
        self.text, self.calls = text, []

    def write(self, question, source, passage):
        self.calls.append((question, source, passage))
        if isinstance(self.text, Exception):
            raise self.text
        return passage.split(". ")[0] + "." if self.text is None else self.text


def test_retrieval_reply_is_written_but_cited_from_the_chunk(tmp_path):
    bot = make_assistant(write_assistant(tmp_path / "bot"), answer=2.0, retrieval=-2.0)
    quoted = bot.decide("what is the ATM fee")
    bot.writer = SpyWriter()
    reply = bot.decide("what is the ATM fee")
    assert reply.path == "retrieval" and reply.written and not quoted.written
    assert reply.reply == f"{bot.writer.text} {CITED}" and quoted.reply.endswith(CITED)
    assert reply.sources == quoted.sources and reply.sources[0]["article"] == "fees.md"
    [(question, source, passage)] = bot.writer.calls
    assert question == "what is the ATM fee" and source == "Fees › ATM fees"
    assert passage in quoted.reply
    assert reply.to_dict()["written"] is True


def test_an_answer_not_from_the_passage_is_not_said(tmp_path, caplog):
    bot = make_assistant(write_assistant(tmp_path / "bot"), answer=2.0, retrieval=-2.0)
    quoted = bot.decide("what is the ATM fee")
    bot.writer = SpyWriter("Premium customers never pay ATM fees abroad.")  # 2 of 7 words
    with caplog.at_level(logging.INFO):
        reply = bot.decide("what is the ATM fee")
    assert reply.path == "retrieval" and not reply.written and reply.reply == quoted.reply
    assert "writer's answer 29% from the passage" in caplog.text
    bot.writer_min_grounding = 0.25
    assert bot.decide("what is the ATM fee").written


def test_an_answer_that_drops_what_matched_the_question_is_not_said(tmp_path, caplog):
    bot = make_assistant(write_assistant(tmp_path / "bot"), answer=2.0, retrieval=-2.0)
    quoted = bot.decide("do ATM operators take a fee on withdrawals")
    bot.writer = SpyWriter("Operators may add their own ATM fee.")  # grounded, no "withdrawals"
    with caplog.at_level(logging.INFO):
        reply = bot.decide("do ATM operators take a fee on withdrawals")
    assert not reply.written and reply.reply == quoted.reply
    assert "keeps 75% of the question's words" in caplog.text
    bot.writer_min_coverage = 0.75
    assert bot.decide("do ATM operators take a fee on withdrawals").written


def test_question_coverage():
    passage = "Withdrawals above your allowance cost 2% at the ATM."
    question = "what do ATM withdrawals cost on holiday"  # atm, withdrawal, cost in the passage
    assert question_coverage(question, "ATM withdrawals cost 2%.", passage) == 1.0
    assert question_coverage(question, "It costs 2% at the ATM.", passage) == pytest.approx(2 / 3)
    assert question_coverage("hello there", "Anything.", passage) == 1.0


def test_grounded_share():
    passage = "Withdrawals above your allowance cost 2% at the ATM."
    assert grounded_share("The ATM costs 2% above the allowance.", passage) == 1.0
    assert grounded_share("ATM withdrawals are free", passage) == pytest.approx(2 / 3)
    assert grounded_share("", passage) == 1.0


def test_low_retrieval_confidence_still_hands_off(tmp_path):
    bot = make_assistant(write_assistant(tmp_path / "bot"), answer=2.0, retrieval=2.0)
    bot.writer = SpyWriter()
    reply = bot.decide("what is the ATM fee")
    assert reply.path == "handoff" and not reply.written and bot.writer.calls == []


@pytest.mark.parametrize("says", [RuntimeError(f"cannot write for {EMAIL}"), "", "   "])
def test_failing_or_empty_writer_falls_back_to_the_passage(tmp_path, caplog, says):
    bot = make_assistant(write_assistant(tmp_path / "bot"), answer=2.0, retrieval=-2.0)
    quoted = bot.decide(f"what is the ATM fee, mail {EMAIL}")
    bot.writer = SpyWriter(says)
    with caplog.at_level(logging.WARNING):
        reply = bot.decide(f"what is the ATM fee, mail {EMAIL}")
    assert reply.path == "retrieval" and reply.reply == quoted.reply and not reply.written
    assert EMAIL not in caplog.text and "[EMAIL]" not in caplog.text
    if isinstance(says, Exception):
        assert "writer failed (RuntimeError)" in caplog.text


def test_the_model_sees_only_the_masked_question(tmp_path, trained):
    directory, _ = trained
    writer = Writer.load(directory, AssistConfig.load(directory))
    prompts, predict = [], writer.model.predict

    def spy(inputs, **options):
        prompts.extend(inputs)
        return predict(inputs, **options)

    writer.model.predict = spy
    bot = make_assistant(write_assistant(tmp_path / "bot"), answer=2.0, retrieval=-2.0)
    bot.writer = writer
    reply = bot.decide(f"my card {CARD} paid an ATM fee, write to {EMAIL}")
    [[system, user]] = prompts
    assert user == {"role": "user", "content": "my card [CARD] paid an ATM fee, write to [EMAIL]"}
    assert "Fees › ATM fees" in system["content"] and "Operators may add" in system["content"]
    assert EMAIL not in json.dumps(prompts) and "4111" not in json.dumps(prompts)
    assert reply.path == "retrieval" and reply.reply.endswith(CITED)
    assert reply.written == (not reply.reply.startswith("Withdrawals above"))


def test_missing_writer_names_the_verb(tmp_path):
    directory = write_assistant(tmp_path / "bot")
    (directory / "assist.yaml").write_text("writer: writer\n")
    with pytest.raises(ConfigError, match="train-writer"):
        Writer.load(directory, AssistConfig.load(directory))


def test_demo_config_has_no_writer(tmp_path):
    directory = init_assistant(tmp_path / "demo")
    assert yaml.safe_load((directory / "assist.yaml").read_text())["writer"] is None


def test_whole_sentences():
    assert whole_sentences("Cards arrive in 5 days. You can tr") == "Cards arrive in 5 days."
    assert whole_sentences("Open the app (Cards). Then") == "Open the app (Cards)."
    assert whole_sentences("a fragment with no end") == ""


def test_cli_train_writer(tiny_base, tmp_path):
    from tuneforge.cli.app import _register, app

    _register()
    directory = init_assistant(tmp_path / "bot")
    verb = ["assist", "train-writer", str(directory), "--base", str(tiny_base), "--method",
            "full", "--per-intent", "1", "--max-length", "512"]  # fmt: skip
    result = CliRunner().invoke(app, verb)
    assert result.exit_code == 0, result.output
    assert "77 question → approved-answer pairs and 0 conversations" in result.output
    assert AssistConfig.load(directory).writer == "writer"
    assert (directory / "writer").is_dir()


def test_eval_counts_right_citations_and_written_replies(tmp_path):
    from tuneforge.apps.assist.evaluate import held_out_retrieval, load_retrieval_test

    directory = write_assistant(tmp_path / "bot")
    file = tmp_path / "retrieval_test.csv"
    file.write_text(
        "query,article,section\n"
        "merchant refund,fees.md,Refund of a merchant\n"
        "ATM withdrawal fee,fees.md,Refund of a merchant\n"  # cites the ATM section: wrong
        "card arrived ATM fees,fees.md,ATM fees\n"  # answered by the card_arrival intent
    )
    bot = make_assistant(directory, answer=0.9, retrieval=-1.0)
    cases = load_retrieval_test(file, bot.retriever)
    quoted = held_out_retrieval(bot, cases)
    assert quoted["answered_with_right_citation"] == 0.3333
    assert quoted["retrieval_path_written"] == 0.0
    bot.writer = SpyWriter(None)  # says the passage's first sentence
    bot.writer_min_coverage = 0.0  # even where it drops the question's words
    written = held_out_retrieval(bot, cases)
    assert written["retrieval_path_written"] == 1.0 and len(bot.writer.calls) == 2
    assert written["answered_with_right_citation"] == 0.3333  # the citation is the chunk's
