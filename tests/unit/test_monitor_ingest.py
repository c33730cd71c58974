"""Monitor storage and ingest on SQLite: migrations, idempotence, entities, trends, alerts."""

from __future__ import annotations

import json
import random

import pytest
from sqlalchemy import func, select

from monitor_fakes import fake_classifier, write_settings
from tuneforge.apps.monitor import migrations
from tuneforge.apps.monitor.home import open_monitor
from tuneforge.apps.monitor.ingest import RawItem, read_items, watch_directory
from tuneforge.apps.monitor.store import Alert, Item, ItemEntity
from tuneforge.apps.monitor.trends import scope_table, series
from tuneforge.errors import DataError

T0 = 1_700_000_100  # a multiple of 300: windows line up with the timestamps below


@pytest.fixture
def monitor(tmp_path):
    write_settings(tmp_path / "home")
    opened = open_monitor(tmp_path / "home", classifier=fake_classifier())
    yield opened
    opened.close()


def count(engine, table=Item) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar()


def test_migrations_create_the_schema_at_the_newest_revision(monitor):
    assert migrations.current_revision(monitor.engine) == "0001"
    migrations.upgrade(monitor.engine)  # idempotent
    assert count(monitor.engine) == 0


def test_reingesting_the_same_items_changes_nothing(monitor, tmp_path):
    file = tmp_path / "posts.csv"
    file.write_text(
        "id,timestamp,source,text\n"
        "a1,2024-05-01T13:45:00Z,wire,$AAPL shares down after Apple Inc results\n"
        "a2,1714571100,wire,Tesla up on deliveries\n"
        ",,blog,Oil flat in quiet trading\n"
        "a1,2024-05-01T13:45:00Z,wire,$AAPL shares down after Apple Inc results\n"
    )
    first = monitor.ingestor.ingest_file(file).to_dict()
    seen = monitor.ingestor.classifier.sentiment.texts_seen
    second = monitor.ingestor.ingest_file(file).to_dict()
    assert first == {"received": 4, "inserted": 3, "duplicates": 1}
    assert second == {"received": 4, "inserted": 0, "duplicates": 4}
    assert monitor.ingestor.classifier.sentiment.texts_seen == seen  # stored items not re-run
    assert count(monitor.engine) == 3
    with monitor.engine.connect() as conn:
        rows = {r.id: r for r in conn.execute(select(Item.__table__))}
        entities = set(conn.execute(select(ItemEntity.item_id, ItemEntity.entity)).all())
    assert rows["a1"].ts == 1714571100 and rows["a1"].label == "bearish"
    assert rows["a1"].polarity == -1 and rows["a2"].polarity == 1
    assert rows["a1"].score == pytest.approx(-0.7)
    assert ("a1", "$AAPL") in entities and ("a2", "$TSLA") in entities  # cashtag = watch list
    assert len([e for e in entities if e[0] == "a1"]) == 1
    hashed = next(i for i in rows if i.startswith("h:"))
    assert (hashed, "Oil") in entities and rows[hashed].source == "blog"


def test_jsonl_and_errors_name_the_file_row_and_column(tmp_path):
    good = tmp_path / "a.jsonl"
    good.write_text(json.dumps({"text": "x up", "timestamp": 5}) + "\n\n")
    assert [i.ts for i in read_items(good)] == [5]
    bad = tmp_path / "b.csv"
    bad.write_text("text,timestamp\nfine,1\n,2\n")
    with pytest.raises(DataError, match=r"b.csv, row 3: column 'text'"):
        list(read_items(bad))
    bad.write_text("text,timestamp\nfine,yesterday\n")
    with pytest.raises(DataError, match=r"row 2: timestamp 'yesterday'"):
        list(read_items(bad))
    bad.write_text("body\nhello\n")
    with pytest.raises(DataError, match="no 'text' column"):
        list(read_items(bad))
    broken = tmp_path / "c.jsonl"
    broken.write_text('{"text": "a"}\n{oops\n')
    with pytest.raises(DataError, match=r"c\.jsonl, line 2: invalid JSON"):
        list(read_items(broken))


def test_watched_directory_reads_each_file_once(monitor, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "one.jsonl").write_text(json.dumps({"id": "w1", "text": "Nvidia up"}) + "\n")
    (inbox / "two.csv").write_text("id,text\nw2,Boeing down\n")
    (inbox / "notes.txt").write_text("ignored")
    done = []
    watch_directory(
        inbox,
        monitor.ingestor,
        settle=0,
        rounds=2,
        interval=0.01,
        on_file=lambda p, r: done.append(p.name),
    )
    assert done == ["one.jsonl", "two.csv"] and count(monitor.engine) == 2
    (inbox / "two.csv").write_text("id,text\nw2,Boeing down\nw3,Netflix up\n")
    watch_directory(
        inbox, monitor.ingestor, settle=0, rounds=1, on_file=lambda p, r: done.append(p.name)
    )
    assert done[2:] == ["two.csv"] and count(monitor.engine) == 3


def items(n: int, start: int, neg_share: float, rng: random.Random, prefix: str) -> list[RawItem]:
    gap = 300 / n
    return [
        RawItem(
            f"{prefix}{i}",
            start + int(i * gap),
            "test",
            ("Apple earnings down" if rng.random() < neg_share else "Apple earnings up")
            if i % 2
            else ("rates down" if rng.random() < neg_share else "rates flat"),
        )
        for i in range(n)
    ]


def test_trends_and_a_stored_alert_for_an_injected_surge(monitor):
    rng = random.Random(0)
    steady = [x for w in range(14) for x in items(40, T0 + 300 * w, 0.1, rng, f"s{w}-")]
    monitor.ingestor.ingest(steady)
    with monitor.engine.connect() as conn:
        stats = series(conn, 300, T0, T0 + 14 * 300)
        table = scope_table(conn, T0, T0 + 14 * 300)
    assert [s.n for s in stats] == [40] * 14
    assert sum(s.negatives for s in stats) == count_negative(monitor)
    assert {r["scope"] for r in table} >= {"topic:earnings", "topic:macro", "entity:$AAPL"}
    assert count(monitor.engine, Alert) == 0
    surge = items(40, T0 + 14 * 300, 0.9, rng, "b-") + items(40, T0 + 15 * 300, 0.1, rng, "c-")
    monitor.ingestor.ingest(surge)
    with monitor.engine.connect() as conn:
        alerts = conn.execute(select(Alert.scope, Alert.window_start)).all()
    assert ("all", T0 + 14 * 300) in alerts
    assert ("entity:$AAPL", T0 + 14 * 300) in alerts
    monitor.ingestor.detector.checked_until = None
    monitor.ingestor.detector.check(T0 + 15 * 300 + 10)  # the same windows again
    assert count(monitor.engine, Alert) == len(alerts)


def count_negative(monitor) -> int:
    with monitor.engine.connect() as conn:
        return conn.execute(select(func.count()).where(Item.polarity < 0)).scalar()
