"""Alembic, run programmatically (no alembic.ini): every app's schema, migrated on open.

Each app keeps only its revisions (`AppSpec.versions`); the environment is the chassis' one
`alembic/env.py`. Apps may share a database, so each keeps its revision in its own table,
`<app>_alembic_version`, and autogenerate compares only the app's own tables (`include_name`),
never proposing to drop another app's.

A database an older release wrote is adopted in place before upgrading:
- no version table at all, but the app's tables (written by `create_all` before the app had
  migrations): stamped at `AppSpec.baseline`;
- the revision in a `legacy_version_table` (the monitor's first release used Alembic's default
  `alembic_version`): moved to the app's own table, and the old table dropped once no other
  row is left in it (another tool may keep its revision there too).
"""

from __future__ import annotations

import zlib
from pathlib import Path

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

from tuneforge.apps.chassis.engine import make_engine
from tuneforge.apps.chassis.spec import AppSpec

ENVIRONMENT = Path(__file__).resolve().parent / "alembic"


def open_database(app: AppSpec, url: str) -> Engine:
    """An engine for `url` whose schema is at the app's newest revision: a new database, or
    one an older tuneforge wrote, migrated in place."""
    engine = make_engine(url)
    upgrade(app, engine)
    return engine


def upgrade(app: AppSpec, engine: Engine, revision: str = "head") -> None:
    """Migrate the app's tables in the database behind `engine` to `revision`, in one
    transaction (on PostgreSQL a failed migration leaves the database as it was). Processes
    may call it at once; threads of one process may not (Alembic's context is global)."""
    from alembic import command

    with engine.begin() as connection:
        _one_migrator_at_a_time(app, connection)
        config = alembic_config(app, connection)
        if current_revision(app, connection) is None:
            _adopt(app, connection, config)
        command.upgrade(config, revision)


def current_revision(app: AppSpec, bind: Engine | Connection) -> str | None:
    if isinstance(bind, Engine):
        with bind.connect() as connection:
            return current_revision(app, connection)
    return _revision_in(bind, app.version_table)


def alembic_config(app: AppSpec, connection: Connection):
    """An Alembic config whose environment runs `app`'s revisions on `connection`."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", _option(ENVIRONMENT))
    config.set_main_option("version_locations", _option(app.versions))
    config.set_main_option("path_separator", "os")  # one location: never split on spaces
    config.attributes.update(app=app, connection=connection)
    return config


def include_name(app: AppSpec):
    """Alembic's `include_name` for `app`: tables of other apps are invisible to it."""

    def include(name, type_, parent_names) -> bool:
        return type_ != "table" or app.owns_table(name)

    return include


def _one_migrator_at_a_time(app: AppSpec, connection: Connection) -> None:
    """Processes opening the same database at once (a server and an ingest) take turns:
    otherwise each sees no version table and all but one fail creating it. The lock ends
    with the transaction."""
    if connection.dialect.name == "postgresql":
        key = zlib.crc32(app.version_table.encode()) - 2**31  # a bigint, stable across runs
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
    elif connection.dialect.name == "sqlite":
        # The write lock now, not at the first write: a reader's view could be stale by then.
        # (pysqlite begins transactions only before DML, so this is the transaction's start.)
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _option(path: Path) -> str:
    return str(path).replace("%", "%%")  # the config is a ConfigParser: % interpolates


def _revision_in(connection: Connection, version_table: str) -> str | None:
    from alembic.runtime.migration import MigrationContext

    context = MigrationContext.configure(connection, opts={"version_table": version_table})
    return context.get_current_revision()


def _adopt(app: AppSpec, connection: Connection, config) -> None:
    from alembic import command

    legacy = _legacy_revision(app, connection, config)
    if legacy is not None:
        command.stamp(config, legacy)
        _release_legacy_row(app, connection, legacy)
    elif app.baseline and _has_own_tables(app, connection):
        command.stamp(config, app.baseline)


def _legacy_revision(app: AppSpec, connection: Connection, config) -> str | None:
    """The app's revision in its legacy version table: one of its own revisions, and only
    when its tables exist (a bare "0001" there may be another tool's)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    if not app.legacy_version_table or not _has_own_tables(app, connection):
        return None
    opts = {"version_table": app.legacy_version_table}
    heads = MigrationContext.configure(connection, opts=opts).get_current_heads()
    script = ScriptDirectory.from_config(config)
    known = {s.revision for s in script.walk_revisions()}
    ours = [head for head in heads if head in known]
    return ours[0] if len(ours) == 1 else None


def _release_legacy_row(app: AppSpec, connection: Connection, revision: str) -> None:
    quoted = connection.dialect.identifier_preparer.quote(app.legacy_version_table)
    connection.execute(text(f"DELETE FROM {quoted} WHERE version_num = :v"), {"v": revision})
    left = connection.execute(text(f"SELECT COUNT(*) FROM {quoted}")).scalar()
    if not left:
        connection.execute(text(f"DROP TABLE {quoted}"))


def _has_own_tables(app: AppSpec, connection: Connection) -> bool:
    names = set(inspect(connection).get_table_names()) - {app.version_table}
    return any(app.owns_table(name) for name in names)
