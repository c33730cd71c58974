"""Kill `tuneforge monitor ingest` with SIGKILL mid-file, restart it: nothing lost, nothing
stored twice (SQLite, the real CLI in a subprocess, the tiny model)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

import tuneforge
from conftest import make_texts, write_csv
from monitor_fakes import write_tiny_model_home

SRC = str(Path(tuneforge.__file__).resolve().parents[1])


def run_ingest(home: Path, file: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "tuneforge",
        "monitor",
        "ingest",
        str(file),
        "--home",
        str(home),
    ]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def stored(db: Path) -> tuple[int, int]:
    engine = create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT count(*), count(DISTINCT id) FROM items")).one()
    except OperationalError:  # the subprocess has not created the table yet
        return 0, 0
    finally:
        engine.dispose()
    return tuple(rows)


@pytest.mark.slow  # two CLI start-ups (torch import) take ~40 s on the 2-core CI machine
def test_sigkill_mid_ingest_then_restart_loses_and_duplicates_nothing(tiny_model_dir, tmp_path):
    home = tmp_path / "home"
    write_tiny_model_home(home, tiny_model_dir, batch_size=16)
    rows = make_texts(1000, seed=5)  # 3,000 rows, some texts repeated: ids are content hashes
    file = write_csv(tmp_path / "posts.csv", rows)
    expected = len({text for text, _ in rows})
    db = home / "monitor.db"

    proc = run_ingest(home, file)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if db.exists() and stored(db)[0] >= 200:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = stored(db)
    assert 200 <= partial[0] < expected and partial[0] == partial[1]

    restart = run_ingest(home, file)
    _, err = restart.communicate(timeout=300)
    assert restart.returncode == 0, err.decode()[-2000:]
    assert stored(db) == (expected, expected)
    engine = create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:  # entities belong to stored items only, once each
        orphans = conn.execute(
            text("SELECT count(*) FROM item_entities WHERE item_id NOT IN (SELECT id FROM items)")
        ).scalar()
    engine.dispose()
    assert orphans == 0
