"""Run the app with uvicorn: model loading, SIGHUP reload, graceful shutdown."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

from tuneforge.errors import ConfigError
from tuneforge.serving.limits import Limits
from tuneforge.serving.logs import server_log, setup_logging
from tuneforge.serving.metrics import ServerMetrics
from tuneforge.serving.models import BatchSettings, ModelRepository


@dataclass
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    api_keys: list[str] | None = None  # None: no auth (explicit --insecure-no-auth only)
    admin_keys: list[str] = field(default_factory=list)
    limits: Limits = field(default_factory=Limits)
    batch: BatchSettings = field(default_factory=BatchSettings)
    graceful_seconds: float = 30.0


def parse_model_specs(specs: list[str]) -> list[tuple[str, Path]]:
    """`PATH` (name = directory name) or `NAME=PATH`; names must be unique and URL-safe."""
    out: dict[str, Path] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        path = Path(path if sep else spec)
        name = name if sep else path.resolve().name
        if not name or not all(c.isalnum() or c in "-_." for c in name):
            raise ConfigError(f"Model name {name!r} must be letters, digits, '-', '_' or '.'.")
        if name in out:
            raise ConfigError(f"Two models are named {name!r}; use NAME=PATH to rename one.")
        if not (path / "tuneforge.yaml").exists():
            raise ConfigError(f"{path} is not a tuneforge model directory (no tuneforge.yaml).")
        out[name] = path
    return list(out.items())


def load_repository(specs: list[tuple[str, Path]], batch: BatchSettings) -> ModelRepository:
    # onnxruntime threads that spin while they wait take the CPU the event loop needs under a
    # flood. Measured at 4x capacity (2 cores): goodput 128 -> 162 req/s, accepted p99
    # 1.19 -> 0.95 s; at concurrency 64, 246 -> 233 req/s. TUNEFORGE_ORT_SPIN=1 restores it.
    os.environ.setdefault("TUNEFORGE_ORT_SPIN", "0")
    repo = ModelRepository(batch, ServerMetrics())
    for name, path in specs:
        served = repo.add(name, path)
        server_log.info("loaded model %s version %s from %s", name, served.version, path)
    return repo


async def reload_all(repo: ModelRepository) -> None:
    for name in list(repo.models):
        try:
            new = await repo.reload(name)
            server_log.info("SIGHUP: reloaded %s, now version %s", name, new.version)
        except Exception as exc:  # keep serving the old version
            server_log.error("SIGHUP: reload of %s failed, old version kept: %s", name, exc)


def serve(specs: list[tuple[str, Path]], options: ServeOptions) -> None:
    import uvicorn

    from tuneforge.serving.app import build_app, quiet_logs

    setup_logging()
    quiet_logs()
    repo = load_repository(specs, options.batch)
    # The models' Python objects live as long as the server: out of the collector's sight,
    # full collections stop walking them (long pauses that show up as tail latency).
    gc.collect()
    gc.freeze()
    app = build_app(
        repo, api_keys=options.api_keys, admin_keys=options.admin_keys, limits=options.limits
    )
    config = uvicorn.Config(
        app,
        host=options.host,
        port=options.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(options.graceful_seconds),
        limit_concurrency=None,
    )
    server = uvicorn.Server(config)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(reload_all(repo)))
        await server.serve()

    run_event_loop(main())


def run_event_loop(coroutine):
    """uvloop when installed (uvicorn[standard] brings it): our own `asyncio.run` would
    otherwise bypass uvicorn's choice and parse, accept and answer on the slower default loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)
