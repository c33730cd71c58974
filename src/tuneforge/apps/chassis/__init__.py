"""The apps' chassis: what every app built on tuneforge shares, so an app is its own logic only.

    spec.py        AppSpec (an app declares itself once) and APPS, the list of apps
    engine.py      make_engine: SQLite (WAL, busy timeout, foreign keys) or PostgreSQL by URL
    migrations.py  Alembic per app: own version table, adoption of older databases, upgrade
                   on open (open_database); alembic/env.py is the one environment
    settings.py    AppSettings: the app's YAML file, typed, $TUNEFORGE_<APP>_DB override
    web.py         guard: API keys, rate, body and in-flight limits from serving/
    cli.py         mount_apps: `tuneforge <app>` for every app

A new app: a package `tuneforge/apps/<name>/` with `APP = AppSpec(...)` in its `__init__.py`,
`migrations/versions/`, a settings subclass and a Typer app, plus its name in `spec.APPS`.
Kept free of heavy imports: listing the apps must not slow down `tuneforge --help`.
"""

from tuneforge.apps.chassis.spec import AppSpec, app_spec, registered_apps

__all__ = ["AppSpec", "app_spec", "registered_apps"]
