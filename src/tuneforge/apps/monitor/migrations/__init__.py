"""The monitor's schema migrations: its revisions are in versions/, run by the chassis.

`monitor init` and every start-up migrate the database (`chassis.migrations.open_database`),
so an upgraded tuneforge migrates an existing monitor database in place. The revision is kept
in `monitor_alembic_version`; the first release kept it in Alembic's default
`alembic_version`, from which the chassis moves it on first open. A new revision is a file in
versions/ shaped like 0001_initial.py (down_revision = the last).
"""

from __future__ import annotations

from tuneforge.apps.chassis import migrations
from tuneforge.apps.monitor import APP


def upgrade(engine, revision: str = "head") -> None:
    """Migrate the database behind `engine` to `revision` (default: the newest)."""
    migrations.upgrade(APP, engine, revision)


def current_revision(bind) -> str | None:
    """The revision of the database behind `bind` (an engine or a connection)."""
    return migrations.current_revision(APP, bind)
