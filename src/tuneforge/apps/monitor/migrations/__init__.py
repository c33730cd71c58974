"""Alembic migrations of the monitor's schema, run programmatically (no alembic.ini needed).

`upgrade(engine)` brings any database to the newest revision; `monitor init` and every
start-up call it, so an upgraded tuneforge migrates an existing monitor database in place.
A new revision is a file in versions/ shaped like 0001_initial.py (down_revision = the last).
"""

from __future__ import annotations

from pathlib import Path

from tuneforge.apps.migrations import alembic_config
from tuneforge.apps.migrations import current_revision as revision_of

HERE = Path(__file__).resolve().parent


def upgrade(engine, revision: str = "head") -> None:
    """Migrate the database behind `engine` to `revision` (default: the newest)."""
    from alembic import command

    with engine.begin() as connection:
        command.upgrade(alembic_config(HERE, connection), revision)


def current_revision(engine) -> str | None:
    with engine.connect() as connection:
        return revision_of(connection)
