"""JSON access logs with personal data masked, plus request metrics, in one ASGI middleware.

One line per request: time, method, path, status, latency, key id (a digest prefix, never the
key), model, client. Every handler of the `tuneforge.access` and `tuneforge.serving` loggers
gets `PiiLogFilter`, so an e-mail in a path or an error message never reaches the log file.
"""

from __future__ import annotations

import json
import logging
import time

from tuneforge.serving.pii import PiiLogFilter

access_log = logging.getLogger("tuneforge.access")
server_log = logging.getLogger("tuneforge.serving")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "json_fields", {}) or {})
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(level: int = logging.INFO, stream=None) -> logging.Handler:
    """A JSON handler with PII masking on the serving loggers (and uvicorn's error log)."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(PiiLogFilter())
    for name in ("tuneforge.access", "tuneforge.serving", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.setLevel(level)
        logger.propagate = False
    return handler


KNOWN_ROUTES = {
    "/v1/embeddings",
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/models",
    "/metrics",
    "/v2/health/live",
    "/v2/health/ready",
    "/v2",
}
MODEL_ROUTES = {"", "/predict", "/ready", "/infer", "/reload"}  # after /{protocol}/models/{name}


def _route_and_model(path: str, served) -> tuple[str, str]:
    """A bounded route label and the model's name, or "unknown" when `served(name)` says no:
    the access log runs before auth, so a label taken from any path would let anyone grow
    the metrics without bound (a new series per invented name)."""
    parts = path.strip("/").split("/")
    if len(parts) >= 3 and parts[1] == "models":
        rest = parts[3:]
        if rest[:1] == ["versions"] and len(rest) >= 2:
            rest = ["versions", "{version}", *rest[2:]]
        suffix = "/" + "/".join(rest) if rest else ""
        tail = suffix.removeprefix("/versions/{version}")
        route = f"/{parts[0]}/models/{{name}}{suffix}" if tail in MODEL_ROUTES else "other"
        return route, parts[2] if served(parts[2]) else "unknown"
    route = "/" + "/".join(parts)
    return (route if route in KNOWN_ROUTES else "other"), ""


def _served_names(scope):
    """`name -> is it served?` for the app of this request (none served without one)."""
    repository = getattr(getattr(scope.get("app"), "state", None), "repository", None)
    return (lambda name: repository.get(name) is not None) if repository else (lambda _: False)


class AccessLogMiddleware:
    def __init__(self, app, metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), 500

        async def capture(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            seconds = time.perf_counter() - start
            route, model = _route_and_model(scope["path"], _served_names(scope))
            self.metrics.observe_request(route, model, status, seconds)
            access_log.info(
                "%s %s %s",
                scope["method"],
                scope["path"],
                status,
                extra={
                    "json_fields": {
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status,
                        "ms": round(seconds * 1000, 2),
                        "key": (scope.get("state") or {}).get("key_id"),
                        "model": model or None,
                        "client": (scope.get("client") or ("?",))[0],
                    }
                },
            )
