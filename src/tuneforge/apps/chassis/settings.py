"""An app's settings: one YAML file in the app's directory, typed and checked by pydantic.

Settings files are written by hand, so every error names the file, the setting and the fix.
The database URL alone may come from the environment ($TUNEFORGE_<APP>_DB), read each time
it is asked for and never written back, so a PostgreSQL password need not be in the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar, Self

import yaml
from pydantic import BaseModel, ConfigDict, PrivateAttr, ValidationError

from tuneforge.apps.chassis.engine import sqlite_url_in
from tuneforge.apps.chassis.spec import AppSpec
from tuneforge.errors import ConfigError
from tuneforge.paths import write_text_atomically


class AppSettings(BaseModel):
    """Base of an app's settings: a subclass sets `app` and declares its fields, among them
    `database: str` (a URL; declared there, so it keeps its place in the app's file)."""

    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error, not a no-op

    app: ClassVar[AppSpec]
    # Fields filled in at run time (e.g. the directory), never written to the file.
    runtime_fields: ClassVar[frozenset[str]] = frozenset()
    _directory: Path = PrivateAttr(default=Path("."))

    @property
    def directory(self) -> Path:
        """Where the settings file is: relative paths in it are relative to this."""
        return self._directory

    def path(self, value: str) -> Path:
        """A path from the file: `~` expanded, relative to the app's directory."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.directory / path

    @classmethod
    def file(cls, directory: Path) -> Path:
        return Path(directory) / cls.app.settings_file

    @classmethod
    def load(cls, directory: Path) -> Self:
        file = cls.file(directory)
        if not file.exists():
            create = cls.app.init_command.format(directory=directory)
            raise ConfigError(
                f"{file} not found: {directory} is not a {cls.app.name} directory yet. "
                f"Create it with `{create}`."
            )
        raw = _read_mapping(file)
        try:
            settings = cls(**raw)
        except ValidationError as exc:
            raise ConfigError(f"{file}: {_first_problem(exc)}") from exc
        settings._directory = Path(directory)
        return settings

    def database_url(self) -> str:
        """$TUNEFORGE_<APP>_DB, else the file's `database`; a relative SQLite path is inside
        the app's directory."""
        url = os.environ.get(self.app.database_env) or self.database
        return sqlite_url_in(url, self.directory)

    def save(self, header: str = "") -> Path:
        """Write the settings file atomically (a crash never leaves half a file)."""
        data = self.model_dump(mode="json", exclude=set(self.runtime_fields))
        text = yaml.safe_dump(data, sort_keys=False)
        return write_text_atomically(self.file(self.directory), header + text)


def _read_mapping(file: Path) -> dict:
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or exc
        raise ConfigError(f"{file}{where}: not valid YAML ({problem}).") from exc
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}: expected a mapping of settings (key: value).")
    return raw


def _first_problem(exc: ValidationError) -> str:
    """The first error, as "setting 'detector.alpha': Input should be less than 1." """
    error = exc.errors()[0]
    key = ".".join(str(part) for part in error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"setting '{key}': {message}.{more}"
