"""The assistant's pipeline with a fake classifier: path choice, tickets, PII, scores."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from assist_fakes import FakeModel, bag_of_words, make_assistant, write_assistant
from tuneforge.apps.assist.build import calibrate, load_knowledge
from tuneforge.apps.assist.knowledge import AssistConfig, load_articles
from tuneforge.apps.assist.oos import auroc, fpr_at_tpr, in_scope_score
from tuneforge.apps.assist.pipeline import open_store
from tuneforge.apps.assist.retrieval import Retriever, chunk_article, recall_at_k
from tuneforge.apps.assist.store import Store

CARD = "4111 1111 1111 1111"
EMAIL = "jane.doe@example.com"


@pytest.fixture
def assistant_dir(tmp_path):
    return write_assistant(tmp_path / "bot")


@pytest.mark.parametrize(
    "message", ["my card has not arrived", "what is the ATM fee", "tell me a joke", "exchange"]
)
def test_path_at_each_threshold(assistant_dir, message):
    """At its own scores, a message is answered; just above them it falls through."""
    probe = make_assistant(assistant_dir, answer=2.0, retrieval=-2.0).respond("s", message)
    intent, similarity = probe.intent_score, probe.retrieval_score
    assert probe.path == "retrieval" and similarity is not None
    above = 1e-3
    cases = [
        (intent, similarity, "answer"),  # a score equal to the threshold passes
        (intent + above, similarity, "retrieval"),
        (intent + above, similarity + above, "handoff"),
    ]
    for answer, retrieval, path in cases:
        reply = make_assistant(assistant_dir, answer, retrieval).respond("s", message)
        assert reply.path == path, (answer, retrieval)
        if path == "answer":
            assert reply.confidence == reply.intent_score and reply.reply.startswith(
                ("Cards", "Exchanging")
            )
        elif path == "retrieval":
            assert reply.confidence == reply.retrieval_score == similarity
            assert reply.sources[0]["article"] == "fees.md" and "help article" in reply.reply
        else:
            assert reply.confidence == reply.intent_score and reply.ticket_id is None  # no store


def test_unsure_messages_are_not_answered_by_intent(assistant_dir):
    bot = make_assistant(assistant_dir, answer=0.9, retrieval=0.99)
    assert bot.respond("s", "my card has not arrived").path == "answer"  # msp 0.95
    assert bot.respond("s", "what is the ATM fee").path == "handoff"  # msp 0.5: no keyword


def test_answer_fills_slots_or_falls_back(assistant_dir):
    bot = make_assistant(assistant_dir)
    reply = bot.respond("s", "what does it cost to exchange 250 euros")
    assert reply.reply.startswith("Exchanging €250 costs") and reply.slots == {"amount": "€250"}
    reply = bot.respond("s", "what does it cost to exchange money")
    assert reply.reply.startswith("Exchanging money costs") and reply.slots == {}


def test_handoff_opens_one_ticket_per_conversation(assistant_dir, tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'a.db'}")
    bot = make_assistant(assistant_dir, store=store)
    first = bot.respond("alice", "tell me a joke")
    assert first.path == "handoff" and f"ticket #{first.ticket_id}" in first.reply
    assert bot.respond("alice", "my card has not arrived").path == "answer"
    assert bot.respond("alice", "something else entirely").ticket_id == first.ticket_id
    assert bot.respond("bob", "and now for something different").ticket_id != first.ticket_id
    [ticket, _] = store.tickets()
    assert ticket.session_id == "alice" and "no confident intent" in ticket.reason
    assert [m["role"] for m in ticket.transcript] == ["customer", "assistant"] * 3
    assert ticket.transcript[1]["text"] == first.reply


def test_pii_is_never_stored_raw(assistant_dir, tmp_path):
    db = tmp_path / "a.db"
    bot = make_assistant(assistant_dir, store=Store(f"sqlite:///{db}"))
    for message in [
        f"my card {CARD} has not arrived, mail me at {EMAIL}",
        f"joke please, call +44 20 7946 0958 or {EMAIL}",  # hand-off: goes into a ticket too
    ]:
        reply = bot.respond("s", message)
    assert reply.path == "handoff"
    rows = _all_cells(db)
    text = " ".join(rows)
    assert "[CARD]" in text and "[EMAIL]" in text and "[PHONE]" in text
    for raw in (CARD, CARD.replace(" ", ""), EMAIL, "7946"):
        assert raw not in text


def test_store_masks_even_when_the_caller_does_not(tmp_path):
    db = tmp_path / "s.db"
    store = Store(f"sqlite:///{db}")
    store.log_exchange("s", f"raw {EMAIL}", f"reply to {EMAIL}", "answer", 0.9, "x")
    store.open_ticket("s", f"reason {EMAIL}")
    assert EMAIL not in " ".join(_all_cells(db))
    assert store.messages("s")[0]["text"] == "raw [EMAIL]"


def _all_cells(db) -> list[str]:
    con = sqlite3.connect(db)
    tables = [r[0] for r in con.execute("select name from sqlite_master where type='table'")]
    cells = [str(c) for t in tables for row in con.execute(f"select * from {t}") for c in row]
    con.close()
    return cells


def test_open_store_puts_relative_sqlite_in_the_assistant_dir(assistant_dir):
    store = open_store(assistant_dir, AssistConfig(database="sqlite:///chat.db"))
    assert (assistant_dir / "chat.db").exists()
    store.close()


def test_calibrate_meets_the_target_on_validation(assistant_dir):
    cfg = AssistConfig.load(assistant_dir)
    intents, *_ = load_knowledge(assistant_dir, cfg)
    val = intents.subset(list(range(len(intents))))
    val.texts = [*val.texts[:-2], "nothing here", "no keyword"]  # two unsure, wrong-ish rows
    calibration = calibrate(
        FakeModel(), intents, val, cfg.model_copy(update={"target_accuracy": 1.0})
    )
    assert calibration.answer["msp"] > 0.5  # the flat 0.5 rows are below the answer threshold
    assert calibration.measured["msp"]["accuracy_of_answered"] == 1.0
    assert calibration.reference.centroids.shape == (2, 64)
    assert calibration.reference.examples.shape == (len(intents), 64)
    assert calibration.measured["knn"]["answered"] > 0


def test_chunks_follow_sections(assistant_dir):
    [article] = load_articles(assistant_dir / "articles")
    chunks = chunk_article(article)
    assert [c.section for c in chunks] == ["ATM fees", "Refund of a merchant"]
    assert all(c.title == "Fees" for c in chunks)
    long = chunk_article(article, max_words=5)
    assert len(long) == len(chunks)  # one paragraph per section: cut only between paragraphs
    retriever = Retriever([article], bag_of_words)
    assert recall_at_k(retriever, [("merchant refund", "fees.md")], 1) == 1.0


def test_oos_scores_and_metrics():
    logits = np.array([[5.0, 0.0], [0.1, 0.0], [9.0, 9.0]])
    msp = in_scope_score("msp", logits)
    assert msp[0] > msp[1] and msp[2] == pytest.approx(0.5)
    energy = in_scope_score("energy", logits)
    assert energy[2] > energy[0] > energy[1]  # large logits: in scope by energy, not by msp
    inside, outside = np.array([0.9, 0.8, 0.7, 0.6]), np.array([0.65, 0.1])
    assert auroc(inside, outside) == pytest.approx(7 / 8)
    assert fpr_at_tpr(inside, outside, tpr=0.75) == pytest.approx(0.0)
    assert fpr_at_tpr(inside, outside, tpr=1.0) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="centroid"):
        in_scope_score("centroid", logits)


def test_recall_threshold_keeps_the_share():
    from tuneforge.apps.assist.oos import recall_threshold

    scores = np.arange(1, 21) / 20  # 0.05 .. 1.0
    assert recall_threshold(scores, 0.9) == pytest.approx(0.15)  # 18 of 20 reach it
    assert recall_threshold(scores, 1.0) == pytest.approx(0.05)
    assert np.mean(scores >= recall_threshold(scores, 0.95)) >= 0.95


def test_path_mix_counts_each_path(assistant_dir):
    from tuneforge.apps.assist.evaluate import path_mix

    messages = ["my card has not arrived", "what is the ATM fee", "tell me a joke"]
    probe = make_assistant(assistant_dir)
    fee, joke = (probe.retriever.search(m, 1)[0].similarity for m in messages[1:])
    bot = make_assistant(assistant_dir, answer=0.9, retrieval=(fee + joke) / 2)
    mix = path_mix(bot, messages)
    assert mix == {"messages": 3, "answer": 0.3333, "retrieval": 0.3333, "handoff": 0.3333}
    assert [bot.respond("s", m).path for m in messages] == ["answer", "retrieval", "handoff"]


def test_held_out_retrieval_figures(assistant_dir, tmp_path):
    from tuneforge.apps.assist.evaluate import held_out_retrieval, load_retrieval_test
    from tuneforge.errors import DataError

    file = tmp_path / "retrieval_test.csv"
    file.write_text(
        "query,article,section\n"
        "merchant refund,fees.md,Refund of a merchant\n"
        "ATM withdrawal fee,fees.md,Refund of a merchant\n"  # the ATM section comes first
        "card arrived ATM fees,fees.md,ATM fees\n"  # answered by the card_arrival intent
    )
    bot = make_assistant(assistant_dir, answer=0.9, retrieval=-1.0)
    cases = load_retrieval_test(file, bot.retriever)
    figures = held_out_retrieval(bot, cases)
    assert figures["recall@1"] == figures["recall@3"] == 1.0  # one article
    assert figures["section@1"] == pytest.approx(2 / 3, abs=1e-4)
    assert figures["right_article_above_threshold"] == 1.0
    assert figures["paths"] == {"answer": 0.3333, "retrieval": 0.6667, "handoff": 0.0}
    assert figures["retrieval_path_right_article"] == 1.0
    strict = held_out_retrieval(make_assistant(assistant_dir, answer=0.9, retrieval=2.0), cases)
    assert strict["right_article_above_threshold"] == 0.0
    assert strict["paths"]["handoff"] == 0.6667 and strict["retrieval_path_right_article"] is None

    file.write_text("query,article,section\nmerchant refund,fees.md,Refunds\n")
    with pytest.raises(DataError, match=r"line 2: fees.md has no section 'Refunds'"):
        load_retrieval_test(file, bot.retriever)


def test_knn_scores_use_the_nearest_training_example():
    from tuneforge.apps.assist.oos import Reference

    train = np.array([[2.0, 0.0], [0.0, 3.0], [0.0, 1.0]])
    reference = Reference.build(train, ["a", "b", "b"], ["a", "b"])
    np.testing.assert_allclose(reference.examples, [[1, 0], [0, 1], [0, 1]])
    messages, logits = np.array([[1.0, 0.1], [1.0, 1.0]]), np.array([[4.0, 0.0], [4.0, 0.0]])
    knn = in_scope_score("knn", logits, messages, reference)
    np.testing.assert_allclose(knn, [1 / np.sqrt(1.01), 1 / np.sqrt(2)], rtol=1e-6)
    assert knn[0] > knn[1]  # same head confidence, but the second lies between the examples
    both = in_scope_score("msp_knn", logits, messages, reference)
    np.testing.assert_allclose(both, in_scope_score("msp", logits) + knn, rtol=1e-6)
    with pytest.raises(ValueError, match="retrain"):
        in_scope_score("knn", logits, messages, Reference(reference.centroids))


def test_a_message_costs_one_encoder_pass(assistant_dir, tiny_model_dir):
    """The intent and its in-scope score come from one forward pass (logits and embedding)."""
    import torch

    import tuneforge

    bot = make_assistant(assistant_dir)
    bot.decide("my card has not arrived")
    assert bot.model.passes == 1
    model = tuneforge.TunedModel.load(tiny_model_dir)
    calls = []
    hook = model.runtime.classifier.encoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        found = model.forward(["card arrived", "refund money"])
    finally:
        hook.remove()
    assert len(calls) == 1 and set(found) == {"logits", "embedding"}
    with torch.no_grad():
        np.testing.assert_allclose(found["logits"], model.logits(["card arrived", "refund money"]))
