"""Test doubles for the monitor's unit tests: a keyword sentiment "model" (no torch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tuneforge.apps.monitor.classify import Classifier
from tuneforge.apps.monitor.entities import DEFAULT_WATCHLIST, load_watchlist


class KeywordSentiment:
    """bearish if the text says "down", bullish if "up", else neutral; counts its calls."""

    labels = ("bearish", "bullish", "neutral")

    def __init__(self) -> None:
        self.texts_seen = 0

    def predict_proba(self, texts, batch_size=64):
        self.texts_seen += len(texts)
        rows = []
        for text in texts:
            words = text.lower().split()
            rows.append(
                [0.8, 0.1, 0.1]
                if "down" in words
                else [0.1, 0.8, 0.1]
                if "up" in words
                else [0.1, 0.1, 0.8]
            )
        return np.array(rows, dtype=np.float32)


class KeywordTopics:
    labels = ("earnings", "macro")

    def predict_proba(self, texts, batch_size=64):
        return np.array([[0.9, 0.1] if "earnings" in t else [0.1, 0.9] for t in texts])


def fake_classifier() -> Classifier:
    return Classifier(KeywordSentiment(), load_watchlist(DEFAULT_WATCHLIST), KeywordTopics())


def write_settings(home: Path, database: str | None = None, **extra) -> None:
    """A monitor home without models (tests pass a classifier to open_monitor)."""
    from tuneforge.apps.monitor.settings import MonitorSettings

    home.mkdir(parents=True, exist_ok=True)
    settings = MonitorSettings(home=home, **extra)
    if database:
        settings.database = database
    (home / "watchlist.yaml").write_text(DEFAULT_WATCHLIST.read_text())
    settings.save()


def write_tiny_model_home(home: Path, model_dir: Path, **extra) -> None:
    """A monitor home on the tiny test model: label "card" plays negative, "refund" positive."""
    write_settings(
        home,
        sentiment_model=str(model_dir),
        topic_model=None,
        negative_labels=["card"],
        positive_labels=["refund"],
        **extra,
    )
