"""`tuneforge serve`: an authenticated HTTP API (native, Open Inference v2, OpenAI embeddings and,
for chat models, chat completions)."""

from __future__ import annotations

from pathlib import Path

import typer

from tuneforge.cli.app import app


@app.command(
    epilog="Examples:\n\n"
    "TUNEFORGE_API_KEYS=$(python -c 'import secrets;print(secrets.token_urlsafe(32))') "
    "tuneforge serve runs/bank77-onnx\n\n"
    "tuneforge serve bank=runs/bank77-onnx hwu=runs/hwu --api-key-file keys.txt --port 8080"
)
def serve(
    models: list[str] = typer.Argument(..., help="Model dirs; NAME=PATH sets the name."),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000),
    api_key_file: Path | None = typer.Option(None, help="API keys, one per line."),
    admin_key_file: Path | None = typer.Option(None, help="Admin keys (model reload)."),
    insecure_no_auth: bool = typer.Option(
        False, "--insecure-no-auth", help="Serve without API keys (local experiments only)."
    ),
    mask_pii: bool = typer.Option(False, "--mask-pii", help="Mask personal data before inference."),
    max_batch: int = typer.Option(32, help="Texts per forward pass."),
    max_wait_ms: float = typer.Option(5.0, help="How long a request waits for batch-mates."),
    max_queue: int = typer.Option(512, help="Queued texts beyond which requests get 503."),
    max_delay_ms: float = typer.Option(
        500.0, help="Refuse (503) when the expected queueing delay is longer."
    ),
    max_inflight: int = typer.Option(256, help="Concurrent requests beyond which 503."),
    max_streams: int = typer.Option(
        4, help="Chat models: streams decoding at once (more wait, up to --max-queue)."
    ),
    max_loop_lag_ms: float = typer.Option(
        100.0, help="503 while the event loop runs this late (0: off); a flood's first sign."
    ),
    target_latency_ms: float = typer.Option(
        500.0, help="Lower the in-flight bound under load to answer in about this (0: fixed)."
    ),
    max_texts: int = typer.Option(256, help="Texts per request."),
    max_text_chars: int = typer.Option(10_000, help="Characters per text."),
    max_body_bytes: int = typer.Option(1 << 20, help="Request body size."),
    max_images: int = typer.Option(16, help="Images per request (image models)."),
    max_image_bytes: int = typer.Option(10 << 20, help="Bytes per encoded image."),
    max_image_pixels: int = typer.Option(
        40_000_000, help="Pixels per image, read before decoding (decompression bombs)."
    ),
    max_image_request_bytes: int = typer.Option(
        32 << 20, help="Request body size for image models (instead of --max-body-bytes)."
    ),
    rate: float = typer.Option(50.0, help="Requests per second per key (0: unlimited)."),
    burst: int = typer.Option(100, help="Requests a key may send at once."),
    ray: bool = typer.Option(
        False, "--ray", help="Run as a Ray Serve deployment (pip install 'tuneforge[ray]')."
    ),
    replicas: int = typer.Option(2, help="With --ray: replicas, each with its own models."),
    cpus_per_replica: float = typer.Option(1.0, help="With --ray: CPUs reserved per replica."),
    ray_address: str | None = typer.Option(
        None, help="With --ray: join this Ray cluster (default: start a local one)."
    ),
) -> None:
    """Serve one or more models over HTTP, with API keys, limits, batching and metrics."""
    import os

    # Before torch loads OpenMP: its idle threads spinning for work took the cores from the
    # thread that decodes a batch. Measured on 2 cores (SmolLM2-135M, 12 tokens, non-streaming
    # chat completion): 6.7-15.4 s spinning, 1.3-2.1 s passive; streams 1.0-1.3 s either way.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from tuneforge.serving.auth import read_keys, server_keys
    from tuneforge.serving.limits import Limits
    from tuneforge.serving.models import BatchSettings
    from tuneforge.serving.server import ServeOptions, parse_model_specs
    from tuneforge.serving.server import serve as run_server

    api_keys = server_keys(api_key_file, insecure_no_auth)
    options = ServeOptions(
        host=host,
        port=port,
        api_keys=api_keys,
        admin_keys=read_keys(admin_key_file, "TUNEFORGE_ADMIN_KEYS"),
        limits=Limits(
            max_body_bytes=max_body_bytes,
            max_texts=max_texts,
            max_text_chars=max_text_chars,
            max_images=max_images,
            max_image_bytes=max_image_bytes,
            max_image_pixels=max_image_pixels,
            max_image_request_bytes=max_image_request_bytes,
            rate_per_second=rate,
            burst=burst,
            max_inflight=max_inflight,
            max_loop_lag_ms=max_loop_lag_ms,
            target_latency_ms=target_latency_ms,
        ),
        batch=BatchSettings(
            max_batch, max_wait_ms, max_queue, mask_pii, max_delay_ms, max_streams=max_streams
        ),
    )
    specs = parse_model_specs(models)
    typer.echo(f"Serving {', '.join(n for n, _ in specs)} on http://{host}:{port}", err=True)
    if ray:
        _serve_on_ray(specs, options, replicas, cpus_per_replica, ray_address)
    else:
        run_server(specs, options)


def _serve_on_ray(specs, options, replicas: int, cpus: float, address: str | None) -> None:
    import signal
    import time

    from tuneforge.errors import ConfigError

    try:
        from tuneforge.serving import ray_deploy
    except ImportError as exc:
        raise ConfigError(f"--ray needs Ray Serve ({exc}): pip install 'tuneforge[ray]'") from exc

    ray_deploy.start(specs, options, ray_deploy.RayOptions(replicas, cpus, address))
    typer.echo(f"Ray Serve: {replicas} replicas ready; Ctrl-C stops.", err=True)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop Ray on SIGTERM too
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        ray_deploy.stop()
