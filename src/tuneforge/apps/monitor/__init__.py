"""Financial sentiment monitor: ingest posts, classify sentiment/topic/entities, trend, alert.

`tuneforge monitor init|ingest|serve|replay` (cli/monitor.py). Modules, one concept each:
settings (monitor.yaml), store (SQLAlchemy models), migrations (Alembic revisions), entities,
topics, sentiment, classify, ingest, trends, alerts, webhook, app (FastAPI + dashboard), replay.
Engine, migrations runner, settings base, auth wiring and CLI mounting are the apps' chassis.
"""

from pathlib import Path

from tuneforge.apps.chassis.spec import AppSpec

APP = AppSpec(
    name="monitor",
    models="tuneforge.apps.monitor.store:Base",
    versions=Path(__file__).resolve().parent / "migrations" / "versions",
    cli="tuneforge.cli.monitor:monitor_app",
    settings_file="monitor.yaml",
    init_command="tuneforge monitor init --home {directory}",
    # Its tables (items, alerts, ...) predate prefixes: it owns exactly its models' tables.
    table_prefix=None,
    # The first release kept its revision in Alembic's default table.
    legacy_version_table="alembic_version",
)
