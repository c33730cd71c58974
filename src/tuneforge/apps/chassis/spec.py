"""What an app declares once (`AppSpec`), and the one list of apps the chassis knows.

An app is a package `tuneforge.apps.<name>` whose `__init__.py` defines `APP = AppSpec(...)`;
adding it to `APPS` below mounts its CLI and gives it migrations, an engine and settings.
Models and the CLI are named by import path ("module:attribute") and loaded only when needed,
so listing the apps (e.g. for `tuneforge --help`) imports neither SQLAlchemy nor torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

# One line per app: tuneforge.apps.<name> defines APP.
APPS = ("assist", "monitor")


@dataclass(frozen=True)
class AppSpec:
    name: str  # CLI verb; `<name>_alembic_version`; $TUNEFORGE_<NAME>_DB
    models: str  # "module:Base", the declarative base the migrations keep the schema equal to
    versions: Path  # the app's Alembic revisions (files shaped like versions/0001_initial.py)
    cli: str  # "module:typer_app", mounted as `tuneforge <name>`
    settings_file: str  # e.g. "assist.yaml", in the app's directory
    init_command: str  # how a user creates that directory, "{directory}" filled in
    # Tables whose name starts with this belong to the app even when no model names them any
    # more (autogenerate then proposes to drop them). None: the app owns its models' tables.
    table_prefix: str | None = None
    # The revision a database made before the app had migrations (by `create_all`) is at.
    baseline: str | None = None
    # Where an older release kept the app's revision (monitor: Alembic's `alembic_version`).
    legacy_version_table: str | None = None

    @property
    def version_table(self) -> str:
        """One version table per app, so apps sharing a database never mix their revisions."""
        return f"{self.name}_alembic_version"

    @property
    def database_env(self) -> str:
        return f"TUNEFORGE_{self.name.upper()}_DB"

    def metadata(self):
        return load_object(self.models).metadata

    def owns_table(self, name: str) -> bool:
        if self.table_prefix and name.startswith(self.table_prefix):
            return True
        return name in self.metadata().tables


def load_object(path: str):
    """The object at "package.module:attribute"."""
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)


def registered_apps() -> list[AppSpec]:
    return [app_spec(name) for name in APPS]


def app_spec(name: str) -> AppSpec:
    if name not in APPS:
        raise KeyError(f"Unknown app {name!r}: the apps are {', '.join(APPS)}.")
    return importlib.import_module(f"tuneforge.apps.{name}").APP
