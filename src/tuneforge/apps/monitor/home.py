"""A monitor home directory: `init_home` creates it, `open_monitor` assembles its parts.

monitor/
  monitor.yaml        settings (settings.py)
  watchlist.yaml      companies to track (entities.py), edit freely
  monitor.db          SQLite database (unless `database` is a PostgreSQL URL)
  models/sentiment    the sentiment artifact (trained on first init unless --model)
  models/topics       the zero-shot topic artifact
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from tuneforge.apps.monitor.settings import MonitorSettings, load_settings


def init_home(
    home: Path,
    model: Path | None = None,
    database: str | None = None,
    topics: bool = True,
    base: str = "minilm",
) -> MonitorSettings:
    """Create (or complete) a monitor home; existing models and watch list are kept."""
    from tuneforge.apps.chassis.migrations import open_database
    from tuneforge.apps.monitor import APP
    from tuneforge.apps.monitor.entities import DEFAULT_WATCHLIST
    from tuneforge.apps.monitor.sentiment import train_demo_model
    from tuneforge.apps.monitor.topics import build_topic_model

    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    settings = (
        load_settings(home) if MonitorSettings.file(home).exists() else MonitorSettings(home=home)
    )
    if database:
        settings.database = database
    if model is not None:
        settings.sentiment_model = str(Path(model).resolve())
    elif not settings.path(settings.sentiment_model).exists():
        train_demo_model(settings.path(settings.sentiment_model), base)
    if not topics:
        settings.topic_model = None
    elif settings.topic_model and not settings.path(settings.topic_model).exists():
        build_topic_model(settings.path(settings.topic_model), base)
    if not settings.path(settings.watchlist).exists():
        shutil.copyfile(DEFAULT_WATCHLIST, settings.path(settings.watchlist))
    open_database(APP, settings.database_url()).dispose()
    settings.save()
    return settings


@dataclass
class Monitor:
    settings: MonitorSettings
    engine: object
    ingestor: object
    webhook: object | None = None

    def close(self) -> None:
        if self.webhook is not None:
            self.webhook.close()
        self.engine.dispose()


def open_monitor(home: Path, classifier=None) -> Monitor:
    """Settings, migrated database, classifier, detector and sinks of the monitor at `home`."""
    from tuneforge.apps.chassis.migrations import open_database
    from tuneforge.apps.monitor import APP
    from tuneforge.apps.monitor.alerts import SurgeDetector
    from tuneforge.apps.monitor.classify import load_classifier
    from tuneforge.apps.monitor.ingest import Ingestor
    from tuneforge.apps.monitor.webhook import WebhookSink
    from tuneforge.serving.pii import mask_pii

    settings = load_settings(home)
    engine = open_database(APP, settings.database_url())
    webhook = WebhookSink(settings.webhook) if settings.webhook.url else None
    detector = SurgeDetector(engine, settings.window_seconds, settings.detector, webhook)
    ingestor = Ingestor(
        engine,
        classifier or load_classifier(settings),
        detector,
        settings.batch_size,
        mask_pii if settings.mask_pii else None,
    )
    return Monitor(settings, engine, ingestor, webhook)
