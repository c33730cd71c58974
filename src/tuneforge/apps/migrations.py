"""Alembic, run programmatically (no alembic.ini): what every app's migrations package shares.

Each app keeps its own script directory (env.py + versions/) beside its store and, when apps
may share one database, its own version table.
"""

from __future__ import annotations

from pathlib import Path


def alembic_config(script_location: Path, connection):
    """An Alembic config whose env.py runs on `connection` (see the apps' env.py)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.attributes["connection"] = connection
    return config


def current_revision(connection, version_table: str = "alembic_version") -> str | None:
    from alembic.runtime.migration import MigrationContext

    context = MigrationContext.configure(connection, opts={"version_table": version_table})
    return context.get_current_revision()
