"""Alembic migrations of the monitor's schema, run programmatically (no alembic.ini needed).

`upgrade(engine)` brings any database to the newest revision; `monitor init` and every
start-up call it, so an upgraded tuneforge migrates an existing monitor database in place.
A new revision is a file in versions/ shaped like 0001_initial.py (down_revision = the last).
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent


def _config(connection):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.attributes["connection"] = connection
    return config


def upgrade(engine, revision: str = "head") -> None:
    """Migrate the database behind `engine` to `revision` (default: the newest)."""
    from alembic import command

    with engine.begin() as connection:
        command.upgrade(_config(connection), revision)


def current_revision(engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
