"""Alembic migrations of the assistant's schema, run programmatically (no alembic.ini needed).

`Store` calls `upgrade(engine)` whenever it opens a database, so a newer tuneforge migrates an
existing conversation log in place. The revision is kept in its own table,
`assist_alembic_version`, because other apps (the monitor) use Alembic too and may share the
database. A new revision is a file in versions/ shaped like 0002_one_open_ticket.py
(down_revision = the last one); `tests/unit/test_assist_migrations.py` checks that the
migrated schema matches the models in store.py.
"""

from __future__ import annotations

from pathlib import Path

from tuneforge.apps.migrations import alembic_config
from tuneforge.apps.migrations import current_revision as revision_of

HERE = Path(__file__).resolve().parent
VERSION_TABLE = "assist_alembic_version"
TABLES = ("assist_conversations", "assist_messages", "assist_tickets")
# The schema as `create_all` made it before these migrations existed (tuneforge ≤ this change).
BASELINE = "0001"


def is_assist_table(name, type_, parent_names) -> bool:
    """Alembic's `include_name`: autogenerate compares only the assistant's own tables, so a
    new revision never proposes to drop the tables of another app sharing the database."""
    return type_ != "table" or name.startswith("assist_")


def upgrade(engine, revision: str = "head") -> None:
    """Migrate the database behind `engine` to `revision` (default: the newest)."""
    from alembic import command
    from sqlalchemy import inspect

    with engine.begin() as connection:
        config = alembic_config(HERE, connection)
        if current_revision(connection) is None and inspect(connection).has_table(TABLES[0]):
            # A log written before the migrations: its tables are the baseline revision's.
            command.stamp(config, BASELINE)
        command.upgrade(config, revision)


def current_revision(connection) -> str | None:
    return revision_of(connection, VERSION_TABLE)
