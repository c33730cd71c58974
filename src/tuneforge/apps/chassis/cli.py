"""`tuneforge <app>`: every app's Typer sub-command, mounted on the main CLI in one place."""

from __future__ import annotations

import typer

from tuneforge.apps.chassis.spec import load_object, registered_apps


def mount_apps(root: typer.Typer) -> None:
    """Add each app's sub-app (`AppSpec.cli`) under its name; mounting twice is a no-op
    (the CLI's tests register the commands once per test module)."""
    mounted = {group.name for group in root.registered_groups}
    for app in registered_apps():
        if app.name not in mounted:
            root.add_typer(load_object(app.cli), name=app.name)
