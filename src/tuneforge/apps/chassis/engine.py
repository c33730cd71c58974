"""The one engine factory of the apps: SQLite by default, PostgreSQL by URL (SQLAlchemy 2).

Apps are served from a thread pool while another process (an ingest, a replay) may write the
same SQLite file, so SQLite connections are shareable across threads, wait for a lock instead
of failing at once, and use WAL so readers never block the writer. Foreign keys are on, as
PostgreSQL always has them.
"""

from __future__ import annotations

import random
import sqlite3
import time
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine, make_url

SQLITE_BUSY_SECONDS = 30
# Bare names that SQLAlchemy would map to a driver tuneforge does not install (psycopg2),
# or not accept at all (Heroku-style postgres://): both mean psycopg 3.
_POSTGRES_DRIVER = {"postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg"}


def normalise_url(url: str | URL) -> URL:
    """`url` with PostgreSQL on psycopg 3 unless it names a driver itself."""
    url = make_url(url)
    if url.drivername in _POSTGRES_DRIVER:
        url = url.set(drivername=_POSTGRES_DRIVER[url.drivername])
    return url


def is_sqlite_file(url: URL) -> bool:
    """A SQLite file given by path (not in memory, not a `file:` URI)."""
    database = url.database or ""
    in_memory = database in ("", ":memory:")
    return url.get_backend_name() == "sqlite" and not in_memory and not database.startswith("file:")


def sqlite_url_in(url: str, directory: Path) -> str:
    """`url`, with a relative SQLite path made absolute inside `directory` (an app's files
    live together, wherever the command is run from); every other URL unchanged."""
    parsed = make_url(url)
    if not is_sqlite_file(parsed) or Path(parsed.database).is_absolute():
        return url
    path = (Path(directory) / Path(parsed.database).expanduser()).resolve()
    return parsed.set(database=str(path)).render_as_string(hide_password=False)


def make_engine(url: str | URL) -> Engine:
    """An engine for `url`: psycopg 3 for PostgreSQL (connections checked before use, as a
    server may drop idle ones); for SQLite see the module docstring."""
    url = normalise_url(url)
    if url.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if is_sqlite_file(url):
        # A new database in a directory that does not exist yet, instead of "unable to open".
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url, connect_args={"timeout": SQLITE_BUSY_SECONDS, "check_same_thread": False}
    )
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    _switch_to_wal(cursor)
    # With WAL, NORMAL never corrupts the file; only a power cut can lose the last commits.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _switch_to_wal(cursor, deadline_seconds: float = SQLITE_BUSY_SECONDS) -> None:
    """`PRAGMA journal_mode=WAL`, retried while another connection holds the lock. The switch
    promotes a read lock to an exclusive one, so when processes open a new file together SQLite
    answers "database is locked" at once rather than call the busy handler (which could
    deadlock): wait here instead, with jitter so the processes stop colliding."""
    deadline = time.monotonic() + deadline_seconds
    pause = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL").fetchall()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause * random.uniform(0.5, 1.5))
        pause = min(pause * 2, 0.25)
