"""The monitor's settings: `monitor.yaml` in the monitor's home directory (`monitor init`).

Loading, checking and saving are the apps' chassis (`AppSettings`): relative paths in the file
are relative to the home directory, and the database URL may instead come from
$TUNEFORGE_MONITOR_DB, so a PostgreSQL password need not be written to the file.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, field_validator

from tuneforge.apps.chassis.settings import AppSettings
from tuneforge.apps.monitor import APP
from tuneforge.errors import ConfigError

SETTINGS_FILE = APP.settings_file
DB_ENV = APP.database_env
WINDOWS = {"minute": 60, "5min": 300, "15min": 900, "hour": 3600, "day": 86400}


def window_seconds(name: str) -> int:
    if name not in WINDOWS:
        raise ConfigError(_unknown_window(name))
    return WINDOWS[name]


def _unknown_window(name: str) -> str:
    return f"Unknown window {name!r}: use one of {', '.join(WINDOWS)}."


class DetectorSettings(BaseModel):
    alpha: float = Field(3e-5, gt=0, lt=1, description="p-value below which a window alerts")
    min_volume: int = Field(20, ge=1, description="items a window needs to be tested")
    min_lift: float = Field(0.10, ge=0, le=1, description="smallest share rise worth an alert")
    baseline_windows: int = Field(12, ge=2, description="past windows pooled as the baseline")
    min_baseline: int = Field(100, ge=1, description="items the baseline needs")
    cooldown_windows: int = Field(6, ge=0, description="windows without a repeat per scope")


class WebhookSettings(BaseModel):
    url: str | None = None
    retries: int = Field(4, ge=0)
    backoff_seconds: float = Field(0.5, gt=0)
    timeout_seconds: float = Field(5.0, gt=0)


class MonitorSettings(AppSettings):
    app = APP
    # The home directory is where the file is, not something the file says.
    runtime_fields = frozenset({"home"})

    database: str = "sqlite:///monitor.db"
    sentiment_model: str = "models/sentiment"
    topic_model: str | None = "models/topics"
    watchlist: str = "watchlist.yaml"
    window: str = "5min"
    batch_size: int = Field(64, ge=1)
    negative_labels: list[str] = Field(default_factory=lambda: ["bearish", "negative"])
    positive_labels: list[str] = Field(default_factory=lambda: ["bullish", "positive"])
    mask_pii: bool = False
    detector: DetectorSettings = DetectorSettings()
    webhook: WebhookSettings = WebhookSettings()
    home: Path = Path(".")

    @field_validator("window")
    @classmethod
    def _known_window(cls, name: str) -> str:
        if name not in WINDOWS:
            raise ValueError(_unknown_window(name))
        return name

    @property
    def window_seconds(self) -> int:
        return window_seconds(self.window)

    @property
    def directory(self) -> Path:
        return self.home

    @classmethod
    def load(cls, directory: Path) -> MonitorSettings:
        settings = super().load(directory)
        settings.home = Path(directory)
        return settings


def load_settings(home: Path) -> MonitorSettings:
    return MonitorSettings.load(home)
