"""Prometheus metrics (own registry per app, so several servers can live in one process)."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
FIRST_TOKEN_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServerMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "tuneforge_requests", "HTTP requests", ["route", "model", "status"], registry=r
        )
        self.latency = Histogram(
            "tuneforge_request_seconds",
            "Request latency",
            ["route", "model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.errors = Counter(
            "tuneforge_errors", "Responses with status >= 500", ["route", "model"], registry=r
        )
        self.batch_size = Histogram(
            "tuneforge_batch_size",
            "Texts per forward pass",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.batch_seconds = Histogram(
            "tuneforge_batch_seconds",
            "Forward pass time",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "tuneforge_queue_depth", "Texts waiting for a forward pass", ["model"], registry=r
        )
        self.shed = Counter(
            "tuneforge_shed",
            "Requests refused by admission control (503)",
            ["model"],
            registry=r,
        )

        # generation (chat models): kind is "chat" or "completion"
        self.generation_requests = Counter(
            "tuneforge_generation_requests",
            "Generation requests answered",
            ["model", "kind", "stream"],
            registry=r,
        )
        self.generated_tokens = Counter(
            "tuneforge_generated_tokens", "Tokens generated", ["model"], registry=r
        )
        self.prompt_tokens = Counter(
            "tuneforge_prompt_tokens", "Prompt tokens read", ["model"], registry=r
        )
        self.generate_calls = Counter(
            "tuneforge_generate_calls",
            "Batched generate() calls (one per group of requests with the same options)",
            ["model"],
            registry=r,
        )
        self.time_to_first_token = Histogram(
            "tuneforge_time_to_first_token_seconds",
            "Request arrival to the first streamed text",
            ["model"],
            buckets=FIRST_TOKEN_BUCKETS,
            registry=r,
        )

    def observe_request(self, route: str, model: str, status: int, seconds: float) -> None:
        self.requests.labels(route, model, str(status)).inc()
        self.latency.labels(route, model).observe(seconds)
        if status >= 500:
            self.errors.labels(route, model).inc()

    def observe_batch(self, model: str, n: int, seconds: float) -> None:
        self.batch_size.labels(model).observe(n)
        self.batch_seconds.labels(model).observe(seconds)

    def render(self, repository) -> bytes:
        for name, served in repository.models.items():
            self.queue_depth.labels(name).set(served.queued_texts)
        return generate_latest(self.registry)
