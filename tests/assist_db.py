"""Checks of the assistant's schema migrations, run on SQLite (unit) and PostgreSQL (integration).

Each takes a database URL whose default schema is empty.
"""

from __future__ import annotations

from contextlib import contextmanager

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from tuneforge.apps.assist import migrations
from tuneforge.apps.assist.store import Conversation, Store, Ticket

HEAD = "0002"


def schema_snapshot(engine) -> dict:
    """Tables → columns and indexes, as the database itself reports them."""
    insp = inspect(engine)
    return {
        table: {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(table)
            ],
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                for i in insp.get_indexes(table)
            ),
        }
        for table in sorted(insp.get_table_names())
    }


def model_drift(engine) -> list:
    """What autogenerate would put in a new revision: empty when migrations match the models."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from tuneforge.apps.assist.store import Base

    opts = {"version_table": migrations.VERSION_TABLE, "include_name": migrations.is_assist_table}
    with engine.connect() as db:
        return compare_metadata(MigrationContext.configure(db, opts=opts), Base.metadata)


def revision(engine) -> str | None:
    with engine.connect() as db:
        return migrations.current_revision(db)


@contextmanager
def statements():
    """SQL statements any engine runs inside the block."""
    seen: list[str] = []

    def record(conn, cursor, statement, *args) -> None:
        seen.append(statement.strip().split(None, 1)[0].upper())

    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", record)


def check_fresh_database_is_migrated(url: str) -> None:
    store = Store(url)
    tables = set(inspect(store.engine).get_table_names())
    assert tables == {*migrations.TABLES, migrations.VERSION_TABLE}
    assert revision(store.engine) == HEAD
    assert model_drift(store.engine) == []
    store.close()


def check_database_at_head_is_left_unchanged(url: str) -> None:
    store = Store(url)
    store.log_exchange("s", "hello", "hi", "answer", 0.9, "greet")
    ticket = store.open_ticket("s", "why")
    before = schema_snapshot(store.engine)
    store.close()
    with statements() as seen:
        store = Store(url)
    assert not {"CREATE", "ALTER", "DROP", "INSERT", "UPDATE", "DELETE"} & set(seen), seen
    assert schema_snapshot(store.engine) == before and revision(store.engine) == HEAD
    assert [m["text"] for m in store.messages("s")] == ["hello", "hi"]
    assert [t.id for t in store.tickets()] == [ticket]
    store.close()


def check_pre_migration_database_is_adopted(url: str) -> None:
    """A log written by `create_all` before the migrations: stamped, upgraded, rows kept."""
    engine = create_engine(url)
    migrations.upgrade(engine, migrations.BASELINE)
    with engine.begin() as db:
        db.execute(text(f"DROP TABLE {migrations.VERSION_TABLE}"))
    with Session(engine) as db, db.begin():
        conv = Conversation(session_id="old")
        db.add(conv)
        db.flush()
        db.add(Ticket(conversation_id=conv.id, reason="from before"))
    engine.dispose()
    store = Store(url)
    assert revision(store.engine) == HEAD and model_drift(store.engine) == []
    [old] = store.tickets()
    assert (old.session_id, old.reason) == ("old", "from before")
    assert store.open_ticket("old", "again") == old.id
    store.close()


def check_other_apps_alembic_is_untouched(url: str) -> None:
    """Another app (the monitor) keeps its revision in `alembic_version` of the same database."""
    engine = create_engine(url)
    with engine.begin() as db:
        db.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)"))
        db.execute(text("INSERT INTO alembic_version VALUES ('monitor0001')"))
        db.execute(text("CREATE TABLE monitor_items (id INTEGER PRIMARY KEY)"))
    store = Store(url)
    assert revision(store.engine) == HEAD and model_drift(store.engine) == []
    with engine.connect() as db:
        assert db.scalars(text("SELECT version_num FROM alembic_version")).all() == ["monitor0001"]
    store.close()
    engine.dispose()


CHECKS = [
    check_fresh_database_is_migrated,
    check_database_at_head_is_left_unchanged,
    check_pre_migration_database_is_adopted,
    check_other_apps_alembic_is_untouched,
]
