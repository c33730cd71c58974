"""`tuneforge serve --ray`: the same app, as a Ray Serve deployment with N replicas.

Each replica builds the whole tuneforge ASGI app (models, micro-batchers, auth, limits, metrics)
inside its own Ray actor; Ray's HTTP proxy spreads requests over the replicas. Nothing of the
server is re-implemented here: Ray supplies process placement, routing and restarts.

Differences from the single-process server, on purpose: rate limits and admission bounds hold per
replica, `/metrics` reports the replica that answered, and a reload (admin endpoint) reaches one
replica — roll out a new version with `serve.run` of the new deployment instead (Ray replaces
replicas one by one).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ray import serve

from tuneforge.serving.server import ServeOptions


@dataclass
class RayOptions:
    replicas: int = 2
    cpus_per_replica: float = 1.0
    address: str | None = None  # None: start a local Ray instance
    app_name: str = "tuneforge"


@serve.ingress()
class TuneforgeReplica:
    """One Ray Serve replica: holds its own copy of every model."""

    def __init__(self, specs: list[tuple[str, str]], options: ServeOptions) -> None:
        self.specs = [(name, Path(path)) for name, path in specs]
        self.options = options

    def __serve_build_asgi_app__(self):
        from tuneforge.serving.app import build_app, quiet_logs
        from tuneforge.serving.logs import setup_logging
        from tuneforge.serving.server import load_repository

        setup_logging()
        quiet_logs()
        repo = load_repository(self.specs, self.options.batch)
        o = self.options
        return build_app(repo, api_keys=o.api_keys, admin_keys=o.admin_keys, limits=o.limits)


def deployment(specs: list[tuple[str, Path]], options: ServeOptions, ray_options: RayOptions):
    """The bound Ray Serve application (not yet running)."""
    threads = max(1, int(ray_options.cpus_per_replica))
    replica = serve.deployment(
        TuneforgeReplica,
        name="tuneforge",
        num_replicas=ray_options.replicas,
        ray_actor_options={
            "num_cpus": ray_options.cpus_per_replica,
            # one BLAS/torch thread pool per replica, sized to its CPU share
            "runtime_env": {"env_vars": {"OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}},
        },
        max_ongoing_requests=max(options.limits.max_inflight, 1),
    )
    return replica.bind([(name, str(path.resolve())) for name, path in specs], options)


def start(
    specs: list[tuple[str, Path]], options: ServeOptions, ray_options: RayOptions
) -> serve.handle.DeploymentHandle:
    """Start (or join) Ray, then run the deployment behind Ray's HTTP proxy on host:port."""
    import ray

    if not ray.is_initialized():
        ray.init(
            address=ray_options.address,
            include_dashboard=False,
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
    serve.start(http_options={"host": options.host, "port": options.port})
    return serve.run(
        deployment(specs, options, ray_options), name=ray_options.app_name, route_prefix="/"
    )


def stop() -> None:
    import ray

    serve.shutdown()
    ray.shutdown()
