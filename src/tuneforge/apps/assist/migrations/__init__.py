"""The assistant's schema migrations: its revisions are in versions/, run by the chassis.

`Store` migrates the database whenever it opens one (`chassis.migrations.open_database`), so
a newer tuneforge upgrades an existing conversation log in place; a log written before the
migrations is stamped at BASELINE first. The revision is kept in `assist_alembic_version`.
A new revision is a file in versions/ shaped like 0002_one_open_ticket.py (down_revision =
the last one); `tests/unit/test_assist_migrations.py` checks that the migrated schema
matches the models in store.py.
"""

from __future__ import annotations

from tuneforge.apps.assist import APP
from tuneforge.apps.chassis import migrations

VERSION_TABLE = APP.version_table
TABLES = ("assist_conversations", "assist_messages", "assist_tickets")
BASELINE = APP.baseline
# Alembic's `include_name`: autogenerate compares only the assistant's own tables.
is_assist_table = migrations.include_name(APP)


def upgrade(engine, revision: str = "head") -> None:
    """Migrate the database behind `engine` to `revision` (default: the newest)."""
    migrations.upgrade(APP, engine, revision)


def current_revision(bind) -> str | None:
    """The revision of the database behind `bind` (an engine or a connection)."""
    return migrations.current_revision(APP, bind)
