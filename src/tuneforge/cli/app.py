"""The `tuneforge` command: one small module per verb, each a thin wrapper over the Python API.

A verb module defines functions decorated with `@app.command()`; list it in VERBS to add it.
An app's sub-commands (`tuneforge assist ...`) are mounted by the apps' chassis from its
`AppSpec` (apps/chassis/spec.py).
"""

from __future__ import annotations

import importlib
import os
import sys

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode="markdown",
    help="Adapt a pre-trained language model to your own text task, fast, on a CPU.",
)

VERBS = [
    "train",
    "evaluate",
    "predict",
    "generate",
    "chat",
    "info",
    "demo",
    "report",
    "explain",
    "calibrate",
    "export",
    "serve",
    "sample",
]

state = {"debug": False}


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks.")) -> None:
    state["debug"] = debug


def _register() -> None:
    from tuneforge.apps.chassis.cli import mount_apps

    for verb in VERBS:
        importlib.import_module(f"tuneforge.cli.{verb}")
    mount_apps(app)  # `tuneforge assist`, `tuneforge monitor`, ...: the apps' chassis


def main() -> None:
    """Entry point: tuneforge errors are printed as one clear message, without a traceback."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _register()
    from tuneforge.errors import TuneforgeError

    try:
        app(standalone_mode=False)
    except TuneforgeError as exc:
        if state["debug"]:
            raise
        typer.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("Interrupted.", err=True)
        sys.exit(130)
    except Exception as exc:  # click usage errors and friends carry their own exit codes
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Exit):
            sys.exit(exc.exit_code)
        raise
