"""The assistant's store and pipeline on a real PostgreSQL server.

The server: $TUNEFORGE_TEST_PG_URL, else the local one .ci/setup-postgres.sh starts (the
`pg_schema` fixture in tests/conftest.py; skipped with the reason without one).
Each test works in a schema of its own, created here and dropped afterwards, so test runs
sharing one server (or one database with other apps' tables) never see each other's rows.
"""

from __future__ import annotations

import pytest

from assist_db import CHECKS
from assist_fakes import make_assistant, write_assistant
from tuneforge.apps.assist.store import Store

pytestmark = pytest.mark.integration

CARD = "4111 1111 1111 1111"
EMAIL = "jane.doe@example.com"
PHONE = "+44 20 7946 0958"


def _rows_as_text(store: Store, schema: str) -> dict[str, list[str]]:
    """Every row of every table in `schema`, each rendered by PostgreSQL as one string."""
    from sqlalchemy import text

    with store.engine.connect() as db:
        tables = db.scalars(
            text("SELECT table_name FROM information_schema.tables WHERE table_schema = :s"),
            {"s": schema},
        ).all()
        return {t: db.scalars(text(f'SELECT CAST(r AS text) FROM "{t}" r')).all() for t in tables}


def test_conversations_messages_and_tickets_round_trip(tmp_path, pg_schema):
    url, schema = pg_schema
    store = Store(url)
    bot = make_assistant(write_assistant(tmp_path / "bot"), store=store)
    answer = bot.respond("alice", f"my card {CARD} has not arrived, mail me at {EMAIL}")
    handoff = bot.respond("alice", f"joke please, call {PHONE}")
    other = bot.respond("bob", "tell me a joke")
    assert (answer.path, handoff.path, other.path) == ("answer", "handoff", "handoff")
    assert handoff.ticket_id != other.ticket_id
    assert bot.respond("alice", "something else").ticket_id == handoff.ticket_id

    messages = store.messages("alice")
    assert [m["role"] for m in messages] == ["customer", "assistant"] * 3
    assert messages[0]["text"] == "my card [CARD] has not arrived, mail me at [EMAIL]"
    assert messages[1]["text"] == answer.reply and messages[1]["path"] == "answer"
    assert messages[1]["confidence"] == pytest.approx(answer.confidence)
    assert messages[3]["text"] == handoff.reply and messages[3]["path"] == "handoff"

    tickets = store.tickets()
    assert [(t.id, t.session_id) for t in tickets] == [
        (handoff.ticket_id, "alice"),
        (other.ticket_id, "bob"),
    ]
    assert tickets[0].transcript == [{"role": m["role"], "text": m["text"]} for m in messages]
    assert "no confident intent" in tickets[0].reason

    rows = _rows_as_text(store, schema)
    assert {"assist_conversations", "assist_messages", "assist_tickets"} <= set(rows)
    stored = " ".join(r for table in rows.values() for r in table)
    assert "[CARD]" in stored and "[EMAIL]" in stored and "[PHONE]" in stored
    for raw in (CARD, CARD.replace(" ", ""), EMAIL, "7946"):
        assert raw not in stored
    store.close()


def test_store_masks_even_when_the_caller_does_not(pg_schema):
    url, schema = pg_schema
    store = Store(url)
    store.log_exchange("s", f"raw {EMAIL}", f"reply to {EMAIL}", "answer", 0.9, "x")
    store.open_ticket("s", f"reason {EMAIL}")
    assert store.messages("s")[0]["text"] == "raw [EMAIL]"
    assert store.tickets()[0].reason == "reason [EMAIL]"
    assert EMAIL not in str(_rows_as_text(store, schema))
    store.close()


def test_concurrent_first_messages_share_one_conversation_and_ticket(pg_schema):
    """The API answers from a thread pool: the same new session may arrive twice at once."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    url, _ = pg_schema
    store = Store(url)
    workers = 6
    for round_ in range(5):
        session, start = f"s{round_}", threading.Barrier(workers)

        def hand_off(i: int, session=session, start=start) -> int:
            start.wait()
            ticket = store.open_ticket(session, "no confident intent")
            store.log_exchange(session, f"question {i}", "hand-off", "handoff", 0.1, None)
            return ticket

        with ThreadPoolExecutor(workers) as pool:
            assert len(set(pool.map(hand_off, range(workers)))) == 1
        assert len(store.messages(session)) == 2 * workers
    assert len(store.tickets()) == 5
    store.close()


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_migrations_on_postgres(pg_schema, check):
    check(pg_schema[0])
