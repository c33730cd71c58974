"""The monitor on a real PostgreSQL server (Debian's, set up by .ci/setup-postgres.sh):
migrations, idempotent ingest, trends and alerts. Skipped, with the reason, without a server.

Each run works in its own schema (dropped afterwards), so runs never see each other's rows.
"""

from __future__ import annotations

import pytest

from monitor_fakes import fake_classifier, write_settings


@pytest.fixture
def pg_url(pg_schema):
    return pg_schema[0]


def test_monitor_on_postgresql(pg_url, tmp_path):
    from sqlalchemy import func, select

    from tuneforge.apps.monitor import migrations
    from tuneforge.apps.monitor.home import open_monitor
    from tuneforge.apps.monitor.ingest import RawItem
    from tuneforge.apps.monitor.store import Alert, Item
    from tuneforge.apps.monitor.trends import series

    write_settings(tmp_path / "home", database=pg_url)
    monitor = open_monitor(tmp_path / "home", classifier=fake_classifier())
    try:
        assert monitor.engine.dialect.name == "postgresql"
        assert migrations.current_revision(monitor.engine) == "0001"
        t0 = 1_700_000_100
        steady = [
            RawItem(f"s{i}", t0 + i * 10, "pg", "$AAPL down" if i % 10 == 0 else "$AAPL up")
            for i in range(14 * 30)
        ]
        surge = [RawItem(f"b{i}", t0 + 4200 + i * 10, "pg", "$AAPL down") for i in range(30)]
        after = [RawItem(f"c{i}", t0 + 4500 + i * 10, "pg", "calm") for i in range(5)]
        first = monitor.ingestor.ingest(steady + surge + after)
        again = monitor.ingestor.ingest(steady + surge + after)
        assert (first.inserted, again.inserted) == (455, 0)
        with monitor.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(Item)).scalar() == 455
            stats = series(conn, 300, t0, t0 + 4800)
            alerts = conn.execute(select(Alert.scope, Alert.window_start)).all()
        assert [s.n for s in stats] == [30] * 15 + [5]
        assert stats[0].neg_share == pytest.approx(0.1)
        assert ("all", t0 + 4200) in alerts and ("entity:$AAPL", t0 + 4200) in alerts
    finally:
        monitor.close()
