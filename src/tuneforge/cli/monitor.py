"""`tuneforge monitor`: the financial sentiment monitor (init, ingest, serve, replay)."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

monitor_app = typer.Typer(
    no_args_is_help=True,
    help="Financial sentiment monitor: ingest posts, trend sentiment, alert on negative surges.",
)

HOME = typer.Option(Path("monitor"), "--home", help="The monitor's directory (monitor.yaml).")


def _logging() -> None:
    """Alerts and webhook failures on stderr, personal data masked."""
    from tuneforge.serving.pii import PiiLogFilter

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    handler.addFilter(PiiLogFilter())
    logger = logging.getLogger("tuneforge.monitor")
    logger.handlers, logger.propagate = [handler], False
    logger.setLevel(logging.INFO)


@monitor_app.command(
    epilog="Example: tuneforge monitor init --home monitor  (trains the demo model, ~1 min)"
)
def init(
    home: Path = HOME,
    model: Path | None = typer.Option(None, help="A sentiment artifact (default: train one)."),
    database: str | None = typer.Option(
        None, help="Database URL, e.g. postgresql://user@host/db (default: SQLite in --home)."
    ),
    topics: bool = typer.Option(True, help="Build the zero-shot topic model."),
) -> None:
    """Create a monitor: settings, watch list, models and the database schema."""
    from tuneforge.apps.monitor.home import init_home

    settings = init_home(home, model, database, topics)
    typer.echo(
        f"Monitor ready in {home}/ (settings: {home}/monitor.yaml, window {settings.window})"
    )


@monitor_app.command(
    epilog="Examples:\n\ntuneforge monitor ingest posts.jsonl\n\n"
    "tuneforge monitor ingest inbox/ --watch"
)
def ingest(
    paths: list[Path] = typer.Argument(..., help=".csv/.jsonl files, or one directory."),
    home: Path = HOME,
    watch: bool = typer.Option(False, "--watch", help="Keep polling the directory."),
    interval: float = typer.Option(2.0, help="Seconds between polls of a watched directory."),
) -> None:
    """Classify and store items (id?, timestamp?, source?, text, url?); safe to re-run."""
    from rich.progress import Progress

    from tuneforge.apps.monitor.home import open_monitor
    from tuneforge.apps.monitor.ingest import watch_directory
    from tuneforge.errors import ConfigError

    _logging()
    monitor = open_monitor(home)
    try:
        if len(paths) == 1 and paths[0].is_dir():
            watch_directory(
                paths[0],
                monitor.ingestor,
                interval,
                rounds=None if watch else 1,
                on_file=lambda p, r: typer.echo(f"{p}: {r.to_dict()}", err=True),
            )
            return
        if watch:
            raise ConfigError("--watch needs one directory, e.g. `monitor ingest inbox/ --watch`.")
        with Progress(transient=True) as bar:
            for path in paths:
                task = bar.add_task(f"ingest {path.name}", total=None)
                result = monitor.ingestor.ingest_file(
                    path, lambda r, t=task: bar.advance(t, r.received)
                )
                typer.echo(f"{path}: {result.to_dict()}", err=True)
    finally:
        monitor.close()


@monitor_app.command(
    epilog="Example: TUNEFORGE_API_KEYS=$(python -c 'import secrets;"
    "print(secrets.token_urlsafe(32))') tuneforge monitor serve"
)
def serve(
    home: Path = HOME,
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8765),
    api_key_file: Path | None = typer.Option(None, help="API keys, one per line."),
    insecure_no_auth: bool = typer.Option(
        False, "--insecure-no-auth", help="No API keys (local experiments only)."
    ),
) -> None:
    """Serve the dashboard, the JSON API and POST /ingest (API keys required)."""
    from tuneforge.apps.monitor.app import serve as run
    from tuneforge.apps.monitor.home import open_monitor
    from tuneforge.serving.auth import server_keys

    keys = server_keys(api_key_file, insecure_no_auth)
    _logging()
    monitor = open_monitor(home)
    typer.echo(f"Dashboard on http://{host}:{port}/", err=True)
    try:
        run(monitor, keys, host, port)
    finally:
        monitor.close()


@monitor_app.command(epilog="Example: tuneforge monitor replay --speed 600x")
def replay(
    file: Path | None = typer.Argument(
        None, help="A labelled CSV (text,label); default: the shipped sample."
    ),
    home: Path = HOME,
    speed: str = typer.Option("600x", help="Data time per real time, e.g. 600x."),
    rate: float = typer.Option(6.0, help="Items per data-minute."),
    burst_at: float = typer.Option(90.0, help="Data-minutes until the negative burst."),
    burst_minutes: float = typer.Option(30.0, help="Length of the burst in data-minutes."),
    burst_share: float = typer.Option(0.8, help="Share of burst items made negative."),
    seed: int = typer.Option(0),
) -> None:
    """Stream a labelled file with synthetic timestamps and an injected negative burst."""
    import time

    from tuneforge.apps.monitor.home import open_monitor
    from tuneforge.apps.monitor.replay import (
        detection_delay,
        parse_speed,
        plan_replay,
        read_labelled,
        run_replay,
    )
    from tuneforge.apps.monitor.sentiment import DEMO_REPLAY

    factor = parse_speed(speed)
    _logging()
    monitor = open_monitor(home)
    texts, negatives = read_labelled(file or DEMO_REPLAY, monitor.settings.negative_labels)
    plan = plan_replay(
        texts, negatives, int(time.time()), rate, burst_at, burst_minutes, burst_share, seed
    )
    burst_in = (plan.burst_start - plan.start) / factor
    typer.echo(
        f"Replaying {len(plan.items)} items at {factor:g}x; negative burst in {burst_in:.0f} s "
        f"(for {burst_minutes * 60 / factor:.0f} s).",
        err=True,
    )
    try:
        result = run_replay(monitor.ingestor, plan, factor)
    finally:
        monitor.close()
    delay = detection_delay(plan, result.alerts)
    found = "not detected" if delay is None else f"alert {delay['windows']:.1f} windows after"
    typer.echo(
        f"Done: {result.inserted} items in {result.seconds:.0f} s, {len(result.alerts)} alert(s); "
        f"burst {found} its start.",
        err=True,
    )
