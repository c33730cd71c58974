"""The monitor's settings: `monitor.yaml` in the monitor's home directory (`monitor init`).

Relative paths in the file are relative to the home directory. The database URL may instead
come from $TUNEFORGE_MONITOR_DB, so a PostgreSQL password need not be written to the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from pydantic import BaseModel, Field, ValidationError

from tuneforge.errors import ConfigError

SETTINGS_FILE = "monitor.yaml"
DB_ENV = "TUNEFORGE_MONITOR_DB"
WINDOWS = {"minute": 60, "5min": 300, "15min": 900, "hour": 3600, "day": 86400}


def window_seconds(name: str) -> int:
    if name not in WINDOWS:
        raise ConfigError(f"Unknown window {name!r}: use one of {', '.join(WINDOWS)}.")
    return WINDOWS[name]


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


class MonitorSettings(BaseModel):
    database: str = "sqlite:///monitor.db"
    sentiment_model: str = "models/sentiment"
    topic_model: str | None = "models/topics"
    watchlist: str = "watchlist.yaml"
    window: str = "5min"
    batch_size: int = Field(64, ge=1)
    negative_labels: list[str] = ["bearish", "negative"]
    positive_labels: list[str] = ["bullish", "positive"]
    mask_pii: bool = False
    detector: DetectorSettings = DetectorSettings()
    webhook: WebhookSettings = WebhookSettings()
    home: Path = Path(".")

    model_config = {"extra": "forbid"}

    @property
    def window_seconds(self) -> int:
        return window_seconds(self.window)

    def path(self, value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.home / p

    def database_url(self) -> str:
        url = os.environ.get(DB_ENV) or self.database
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
            return prefix + str(self.path(url.removeprefix(prefix)).resolve())
        return url

    def save(self) -> Path:
        data = self.model_dump(mode="json", exclude={"home"})
        return write_text_atomically(
            self.home / SETTINGS_FILE, yaml.safe_dump(data, sort_keys=False)
        )


def write_text_atomically(target: Path, text: str) -> Path:
    """Write via a temporary file and rename, so a crash never leaves half a file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)
    return target


def load_settings(home: Path) -> MonitorSettings:
    file = Path(home) / SETTINGS_FILE
    if not file.exists():
        raise ConfigError(f"{file} not found: run `tuneforge monitor init --home {home}` first.")
    try:
        data = yaml.safe_load(file.read_text()) or {}
        settings = MonitorSettings(**data, home=Path(home))
    except (yaml.YAMLError, ValidationError, TypeError) as exc:
        raise ConfigError(f"{file}: {exc}") from exc
    window_seconds(settings.window)
    return settings
