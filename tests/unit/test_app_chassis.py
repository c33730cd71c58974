"""The apps' chassis: engine factory, per-app migrations (and upgrading the databases older
releases left), settings, auth/limits wiring and CLI mounting.

Migration tests run on SQLite and on PostgreSQL (the `pg_schema` fixture: skipped, with the
reason, without a server; .ci/setup-postgres.sh starts one).
"""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, func, insert, inspect, select, text

from monitor_fakes import fake_classifier, write_settings
from tuneforge.apps.assist import APP as ASSIST
from tuneforge.apps.chassis import migrations
from tuneforge.apps.chassis.engine import make_engine, normalise_url, sqlite_url_in
from tuneforge.apps.chassis.spec import APPS, load_object, registered_apps
from tuneforge.apps.monitor import APP as MONITOR
from tuneforge.errors import ConfigError

HEADS = {"assist": "0002", "monitor": "0001"}


# ---- engine -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("given", "driver"),
    [
        ("postgresql://u:secret@db.example/app", "postgresql+psycopg"),
        ("postgres://u:secret@db.example/app", "postgresql+psycopg"),
        ("postgresql+psycopg2://u:secret@db.example/app", "postgresql+psycopg2"),
        ("sqlite:///a.db", "sqlite"),
    ],
)
def test_urls_get_the_driver_tuneforge_installs(given, driver):
    url = normalise_url(given)
    assert url.drivername == driver
    assert url.password in (None, "secret") and url.database in ("app", "a.db")


def test_sqlite_engine_uses_wal_and_creates_its_directory(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'new' / 'dir' / 'app.db'}")
    with engine.connect() as db:
        pragmas = {p: db.exec_driver_sql(f"PRAGMA {p}").scalar() for p in PRAGMAS}
    engine.dispose()
    assert pragmas == {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 30_000}
    assert (tmp_path / "new" / "dir" / "app.db").exists()


PRAGMAS = ("journal_mode", "foreign_keys", "busy_timeout")


def test_a_relative_sqlite_path_lives_in_the_app_directory(tmp_path):
    assert sqlite_url_in("sqlite:///chat.db", tmp_path) == f"sqlite:///{tmp_path.resolve()}/chat.db"
    for kept in ("sqlite:////abs/chat.db", "sqlite:///:memory:", "postgresql://u@h/db"):
        assert sqlite_url_in(kept, tmp_path) == kept


# ---- settings -----------------------------------------------------------------------------
def test_settings_errors_name_the_file_and_the_setting(tmp_path):
    from tuneforge.apps.monitor.settings import MonitorSettings

    file = tmp_path / "monitor.yaml"
    file.write_text("window: hour\ndetector:\n  alpha: 2\n")
    with pytest.raises(ConfigError, match=r"monitor\.yaml: setting 'detector\.alpha': .*less"):
        MonitorSettings.load(tmp_path)
    file.write_text("window: hour\nbatch_size: [\n")
    with pytest.raises(ConfigError, match=r"monitor\.yaml line 3: not valid YAML"):
        MonitorSettings.load(tmp_path)
    file.write_text("- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        MonitorSettings.load(tmp_path)


def test_the_database_url_from_the_environment_is_never_written_back(tmp_path, monkeypatch):
    from tuneforge.apps.assist.knowledge import AssistConfig

    (tmp_path / "assist.yaml").write_text("database: sqlite:///chat.db\n")
    monkeypatch.setenv("TUNEFORGE_ASSIST_DB", "postgresql://u:secret@h/db")
    config = AssistConfig.load(tmp_path)
    assert config.database_url() == "postgresql://u:secret@h/db"
    config.save()
    assert "secret" not in (tmp_path / "assist.yaml").read_text()
    monkeypatch.delenv("TUNEFORGE_ASSIST_DB")
    assert config.database_url() == f"sqlite:///{tmp_path.resolve()}/chat.db"


# ---- migrations: databases older releases left, upgraded in place --------------------------
@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'apps.db'}"
    return request.getfixturevalue("pg_schema")[0]


def run_revisions(app, url: str, version_table: str, revision: str = "head") -> None:
    """The app's revisions run as an older release's own env.py ran them: Alembic on the
    connection, the revision kept in `version_table` (the monitor's was the default)."""
    from alembic.runtime.environment import EnvironmentContext
    from alembic.script import ScriptDirectory

    engine = create_engine(url)
    with engine.begin() as connection:
        config = migrations.alembic_config(app, connection)
        script = ScriptDirectory.from_config(config)

        def steps(current, _context):  # what `alembic.command.upgrade` hands to env.py
            return script._upgrade_revs(revision, current)

        with EnvironmentContext(config, script, fn=steps) as env:
            env.configure(connection=connection, version_table=version_table)
            with env.begin_transaction():
                env.run_migrations()
    engine.dispose()


def drift(app, engine) -> list:
    """What autogenerate would put in a new revision of `app`: empty when in step."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    opts = {"version_table": app.version_table, "include_name": migrations.include_name(app)}
    with engine.connect() as db:
        return compare_metadata(MigrationContext.configure(db, opts=opts), app.metadata())


def version_rows(engine, table: str) -> list[str] | None:
    if not inspect(engine).has_table(table):
        return None
    with engine.connect() as db:
        return db.scalars(text(f"SELECT version_num FROM {table}")).all()


T0 = 1_700_000_100


def add_monitor_rows(url: str) -> None:
    from tuneforge.apps.monitor.store import Alert, Item, ItemEntity

    engine = create_engine(url)
    item = dict(source="wire", text="$AAPL down", url="", label="bearish", polarity=-1)
    item |= dict(p_neg=0.8, p_pos=0.1, score=-0.7, topic="earnings", ingested_at=T0)
    alert = dict(scope="all", window_start=T0, window_seconds=300, n=30, negatives=25)
    alert |= dict(share=0.83, baseline_share=0.1, z=9.0, p_value=1e-9, created_at=T0)
    with engine.begin() as db:
        db.execute(insert(Item), [{"id": i, "ts": T0, **item} for i in ("old1", "old2")])
        db.execute(insert(ItemEntity), [{"item_id": "old1", "entity": "$AAPL"}])
        db.execute(insert(Alert), [alert])
    engine.dispose()


def test_monitor_database_of_the_first_release_upgrades_in_place(db_url, tmp_path):
    from tuneforge.apps.monitor.home import open_monitor
    from tuneforge.apps.monitor.ingest import RawItem
    from tuneforge.apps.monitor.store import Alert, Item, ItemEntity

    run_revisions(MONITOR, db_url, "alembic_version")  # the first release's layout
    add_monitor_rows(db_url)
    write_settings(tmp_path / "home", database=db_url)
    monitor = open_monitor(tmp_path / "home", classifier=fake_classifier())
    try:
        engine = monitor.engine
        assert version_rows(engine, "monitor_alembic_version") == [HEADS["monitor"]]
        assert version_rows(engine, "alembic_version") is None  # no other row: dropped
        assert drift(MONITOR, engine) == []
        with engine.connect() as db:
            assert db.scalars(select(Item.id).order_by(Item.id)).all() == ["old1", "old2"]
            assert db.execute(select(ItemEntity.item_id, ItemEntity.entity)).all() == [
                ("old1", "$AAPL")
            ]
            assert db.scalar(select(func.count()).select_from(Alert)) == 1
        again = [RawItem("old1", T0, "wire", "$AAPL down"), RawItem("new", T0, "wire", "up")]
        assert monitor.ingestor.ingest(again).to_dict()["inserted"] == 1
    finally:
        monitor.close()


def test_adopting_the_monitor_keeps_another_tools_alembic_version_row(db_url):
    run_revisions(MONITOR, db_url, "alembic_version")
    engine = make_engine(db_url)
    with engine.begin() as db:
        db.execute(text("INSERT INTO alembic_version (version_num) VALUES ('othertool42')"))
    migrations.upgrade(MONITOR, engine)
    assert version_rows(engine, "monitor_alembic_version") == [HEADS["monitor"]]
    assert version_rows(engine, "alembic_version") == ["othertool42"]
    engine.dispose()


def add_assist_rows(url: str) -> None:
    from sqlalchemy.orm import Session

    from tuneforge.apps.assist.store import Conversation, Message, Ticket

    engine = create_engine(url)
    with Session(engine) as db, db.begin():
        conv = Conversation(session_id="old")
        db.add(conv)
        db.flush()
        db.add(Message(conversation_id=conv.id, role="customer", text="card lost"))
        db.add(Ticket(conversation_id=conv.id, reason="from before"))
    engine.dispose()


@pytest.mark.parametrize("layout", ["pre-migration", "migrated"])
def test_assist_database_of_an_earlier_release_upgrades_in_place(db_url, layout):
    from tuneforge.apps.assist.store import Store

    if layout == "pre-migration":
        # `create_all` of the first release made exactly the baseline revision's tables,
        # and no version table.
        run_revisions(ASSIST, db_url, "scratch_version", ASSIST.baseline)
        engine = create_engine(db_url)
        with engine.begin() as db:
            db.execute(text("DROP TABLE scratch_version"))
        engine.dispose()
    else:
        run_revisions(ASSIST, db_url, ASSIST.version_table)
    add_assist_rows(db_url)
    store = Store(db_url)
    try:
        assert version_rows(store.engine, ASSIST.version_table) == [HEADS["assist"]]
        assert drift(ASSIST, store.engine) == []
        [old] = store.tickets()
        assert (old.session_id, old.reason, old.transcript[0]["text"]) == (
            "old",
            "from before",
            "card lost",
        )
        assert store.open_ticket("old", "again") == old.id  # 0002's one-open-ticket index
    finally:
        store.close()


def test_two_apps_in_one_database_keep_separate_version_tables(db_url):
    from tuneforge.apps.assist.store import Store

    store = Store(db_url)
    monitor = migrations.open_database(MONITOR, db_url)
    try:
        for engine in (store.engine, monitor):
            for app in (ASSIST, MONITOR):
                assert version_rows(engine, app.version_table) == [HEADS[app.name]]
                assert drift(app, engine) == []  # neither proposes to drop the other's tables
        assert version_rows(monitor, "alembic_version") is None
        migrations.upgrade(ASSIST, monitor)  # again: nothing to do
        assert migrations.current_revision(MONITOR, monitor) == HEADS["monitor"]
    finally:
        store.close()
        monitor.dispose()


# ---- the apps' declarations, CLI and web wiring -------------------------------------------
@pytest.mark.parametrize("app", registered_apps(), ids=lambda a: a.name)
def test_every_app_declares_a_complete_spec(app):
    import typer

    assert isinstance(load_object(app.cli), typer.Typer)
    assert sorted(p.name for p in app.versions.glob("*.py"))[0].startswith("0001")
    assert all(app.owns_table(name) for name in app.metadata().tables)
    assert not app.owns_table("some_other_apps_table")
    assert app.version_table == f"{app.name}_alembic_version"


def test_every_app_is_mounted_on_the_cli_once():
    import typer

    from tuneforge.apps.chassis.cli import mount_apps

    root = typer.Typer()
    mount_apps(root)
    mount_apps(root)
    assert [group.name for group in root.registered_groups] == list(APPS)


def test_guard_wires_keys_rate_and_body_limits():
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from tuneforge.apps.chassis.web import guard
    from tuneforge.serving.limits import Limits

    api = FastAPI()

    @api.post("/echo")
    async def echo(body: dict) -> dict:
        return body

    key = "chassis-test-key-" + "x" * 20
    limits = Limits(max_body_bytes=64, rate_per_second=0.001, burst=2, max_inflight=8)
    client = TestClient(guard(api, [key], limits))
    auth = {"Authorization": f"Bearer {key}"}
    assert client.post("/echo", json={"a": 1}).status_code == 401
    assert client.post("/echo", json={"a": "x" * 100}, headers=auth).status_code == 413
    assert client.post("/echo", json={"a": 1}, headers=auth).json() == {"a": 1}
    assert client.post("/echo", json={"a": 1}, headers=auth).status_code == 429


def _open_monitor_database(url: str, start, results) -> None:
    engine = make_engine(url)
    try:
        start.wait()
        migrations.upgrade(MONITOR, engine)
        results.put(migrations.current_revision(MONITOR, engine))
    except Exception as exc:
        results.put(repr(exc))
    finally:
        engine.dispose()


def test_processes_opening_a_new_database_at_once_all_succeed(db_url):
    """A server and an ingest started together: one migrates, the others wait, none fails.
    Processes, not threads: Alembic's `context` is one per process."""
    assert _at_once(_open_monitor_database, db_url, 3) == [HEADS["monitor"]] * 3


def _at_once(target, url: str, n: int) -> list:
    """What `target(url, start, results)` put, run in `n` forked processes released together."""
    import multiprocessing

    fork = multiprocessing.get_context("fork")
    start, results = fork.Barrier(n), fork.Queue()
    workers = [fork.Process(target=target, args=(url, start, results)) for _ in range(n)]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(10)
    return outcomes


def _connect_in_wal(url: str, start, results) -> None:
    engine = make_engine(url)
    try:
        start.wait()
        with engine.connect() as connection:
            results.put(connection.exec_driver_sql("PRAGMA journal_mode").scalar())
    except Exception as exc:
        results.put(repr(exc))
    finally:
        engine.dispose()


def test_processes_switching_a_new_sqlite_file_to_wal_at_once_all_succeed(tmp_path):
    """SQLite answers "database is locked" at once, without the busy timeout, to all but one of
    the connections switching a new file to WAL together (the race CI once lost)."""
    for round_ in range(10):
        url = f"sqlite:///{tmp_path / f'race{round_}.db'}"
        assert _at_once(_connect_in_wal, url, 6) == ["wal"] * 6


def test_a_sqlite_file_locked_past_the_busy_timeout_still_fails(tmp_path):
    import sqlite3

    from tuneforge.apps.chassis.engine import _switch_to_wal

    path = tmp_path / "held.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    waiter = sqlite3.connect(path, timeout=0.05)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        _switch_to_wal(waiter.cursor(), deadline_seconds=0.3)
    holder.execute("ROLLBACK")
    _switch_to_wal(waiter.cursor(), deadline_seconds=0.3)
    assert waiter.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
