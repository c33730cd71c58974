"""Entities (cashtags, watch list), settings and the `tuneforge monitor` CLI wiring."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from tuneforge.apps.monitor.entities import DEFAULT_WATCHLIST, load_watchlist
from tuneforge.apps.monitor.replay import parse_speed, plan_replay
from tuneforge.apps.monitor.settings import load_settings
from tuneforge.errors import ConfigError


def test_cashtags_and_watch_list_names_merge_into_one_entity():
    matcher = load_watchlist(DEFAULT_WATCHLIST)
    assert matcher.find("$AAPL slips; Apple Inc and apple inc said... $brk.b, $TSLA") == [
        "$AAPL",
        "$BRK.B",
        "$TSLA",
    ]
    assert matcher.find("Google and the Fed") == ["$GOOGL", "Federal Reserve"]
    assert matcher.find("pineapple prices, US$5 and $100") == []  # whole words, no amounts


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("companies: {a: 1}", "a list of entries"),
        ("companies:\n  - ticker: X", "needs `name:`"),
        ("companies:\n  - name: A\n    tiker: A", "unknown key"),
        ("companies:\n  - name: A\n    ticker: '12'", "should be letters"),
        ("companies: [", "not valid YAML"),
    ],
)
def test_watch_list_errors_say_what_to_fix(tmp_path, yaml_text, message):
    file = tmp_path / "w.yaml"
    file.write_text(yaml_text)
    with pytest.raises(ConfigError, match=message):
        load_watchlist(file)


def test_settings_errors_and_relative_paths(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="monitor init"):
        load_settings(tmp_path)
    (tmp_path / "monitor.yaml").write_text("window: fortnight\n")
    with pytest.raises(ConfigError, match="Unknown window"):
        load_settings(tmp_path)
    (tmp_path / "monitor.yaml").write_text("databse: x\n")
    with pytest.raises(ConfigError, match="databse"):
        load_settings(tmp_path)
    (tmp_path / "monitor.yaml").write_text("window: hour\n")
    settings = load_settings(tmp_path)
    assert settings.database_url() == f"sqlite:///{tmp_path.resolve()}/monitor.db"
    monkeypatch.setenv("TUNEFORGE_MONITOR_DB", "postgresql://u@h/db")
    assert settings.database_url() == "postgresql://u@h/db"


def test_replay_plan_injects_the_burst_only_in_its_span():
    texts = [f"calm {i}" for i in range(3000)]
    plan = plan_replay(texts, ["crash"], 0, rate=6, burst_at=90, burst_minutes=30, burst_share=0.8)
    inside = [i for i in plan.items if plan.burst_start <= i.ts < plan.burst_end]
    outside = [i for i in plan.items if not plan.burst_start <= i.ts < plan.burst_end]
    assert all(i.text != "crash" for i in outside)
    assert 0.7 < sum(i.text == "crash" for i in inside) / len(inside) < 0.9
    assert [i.ts for i in plan.items] == sorted(i.ts for i in plan.items)
    assert parse_speed("600x") == 600
    with pytest.raises(ConfigError, match="600x"):
        parse_speed("fast")


def test_monitor_verbs_are_registered():
    from tuneforge.cli.app import _register, app

    _register()
    result = CliRunner().invoke(app, ["monitor", "--help"])
    assert result.exit_code == 0
    for verb in ("init", "ingest", "serve", "replay"):
        assert verb in result.output
