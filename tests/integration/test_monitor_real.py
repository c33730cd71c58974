"""The monitor with its real demo model: `tuneforge monitor init` trains it on the shipped
sample (head on MiniLM, ~1-2 min), its validation accuracy holds, and a replay of the shipped
sample raises the surge alert quickly and no other."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from conftest import shared_data

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("monitor") / "home"
    proc = subprocess.run(
        [sys.executable, "-m", "tuneforge", "monitor", "init", "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (home / "models" / "sentiment").is_dir() and (home / "models" / "topics").is_dir()
    return home


def test_demo_model_accuracy_on_the_validation_split(home):
    from tuneforge.tuned_model import TunedModel

    data = pd.read_csv(
        shared_data("twitter_financial_news_sentiment", "converted", "validation.csv")
    )
    model = TunedModel.load(home / "models" / "sentiment")
    predicted = [p.label for p in model.predict(data["text"].tolist())]
    accuracy = (pd.Series(predicted) == data["label"]).mean()
    assert accuracy > 0.74  # measured 0.775 (2,388 rows); majority class (neutral) is 0.656


def test_topics_and_entities_of_real_posts(home):
    from tuneforge.apps.monitor.classify import load_classifier
    from tuneforge.apps.monitor.settings import load_settings

    classifier = load_classifier(load_settings(home))
    results = classifier.classify(
        [
            "$AAPL Apple beats Q3 earnings estimates, revenue up 8%",
            "Fed signals more rate hikes as inflation stays hot",
            "Microsoft agrees to acquire Activision in $69 billion deal",
        ]
    )
    assert [r.topic for r in results] == ["earnings", "macro", "m&a"]
    assert results[0].entities == ["$AAPL"] and results[2].entities == ["$MSFT"]
    assert results[1].entities == ["Federal Reserve"]


def test_replay_alerts_on_the_burst_only(home, tmp_path, monkeypatch):
    from tuneforge.apps.monitor.home import open_monitor
    from tuneforge.apps.monitor.replay import (
        detection_delay,
        plan_replay,
        read_labelled,
        run_replay,
    )
    from tuneforge.apps.monitor.sentiment import DEMO_REPLAY

    monkeypatch.setenv("TUNEFORGE_MONITOR_DB", f"sqlite:///{tmp_path}/replay.db")
    monitor = open_monitor(home)
    texts, negatives = read_labelled(DEMO_REPLAY, monitor.settings.negative_labels)
    plan = plan_replay(texts, negatives, 1_800_000_000)
    result = run_replay(monitor.ingestor, plan, speed=1e6)
    monitor.close()
    delay = detection_delay(plan, result.alerts)
    assert delay is not None and delay["windows"] <= 3
    before = [a for a in result.alerts if a["window_start"] + 300 <= plan.burst_start]
    assert before == []
