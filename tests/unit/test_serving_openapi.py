"""The OpenAPI schema tells the truth: every status the server answers is declared with its body
schema (the middlewares' too, which FastAPI's generator cannot see), and /metrics is declared as
Prometheus text. Each error is triggered for real and its response checked against the schema
with schemathesis' own conformance checks. Fast: a fake model behind the ASGI transport."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from fastapi.testclient import TestClient

from tuneforge.serving.app import build_app
from tuneforge.serving.auth import OPEN_PATHS
from tuneforge.serving.limits import Limits
from tuneforge.serving.models import BatchSettings, ModelRepository, ServedModel
from tuneforge.tuned_model import Prediction

schemathesis = pytest.importorskip("schemathesis")  # the serve-test extra

from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
KEY, ADMIN = "u" * 32, "m" * 32
AUTH, ADMIN_AUTH = {"Authorization": f"Bearer {KEY}"}, {"Authorization": f"Bearer {ADMIN}"}
LIMITS = dict(
    max_body_bytes=2048, max_texts=4, max_text_chars=50, max_explain_texts=1, rate_per_second=0
)


class FakeModel:
    labels = ("short", "long")
    config = SimpleNamespace(runtime="fake")

    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.delay, self.fail = delay, fail

    def predict(self, texts, batch_size=64, top_k=5):
        time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("a bug in the model")
        return [Prediction("short", 0.9, {"short": 0.9, "long": 0.1}) for _ in texts]


def fake_app(tmp_path: Path, model: FakeModel | None = None, **limits):
    repo = ModelRepository(BatchSettings(max_batch=4, max_wait_ms=0))
    if model is not None:
        (tmp_path / "tuneforge.yaml").write_text("labels: [short, long]\n")
        repo.models["fake"] = ServedModel("fake", tmp_path, model, repo.settings)
    limits = Limits(**{**LIMITS, **limits})
    return build_app(repo, api_keys=[KEY], admin_keys=[ADMIN], limits=limits)


def assert_conforms(app, method: str, template: str, response: httpx.Response) -> None:
    """`response` passes schemathesis' status code, content type, body and header checks for
    the operation `method template` of the app's own schema."""
    schema = schemathesis.openapi.from_dict(app.openapi())
    parameters = {name: "x" for name in re.findall(r"{(\w+)}", template)}
    case = schema[template][method].Case(path_parameters=parameters)
    case.validate_response(response, checks=CHECKS)


SCHEMA = build_app(ModelRepository(BatchSettings()), api_keys=[KEY], admin_keys=[ADMIN]).openapi()
OPERATIONS = [(m.upper(), p) for p, ops in SCHEMA["paths"].items() for m in ops]


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_every_operation_declares_the_errors_the_server_can_give(method, path):
    operation = SCHEMA["paths"][path][method.lower()]
    expected = {"200", "413", "500"}  # the body limit and the error handler see every request
    if path not in OPEN_PATHS:  # auth, rate limit, admission
        expected |= {"401", "429", "503"}
    if "{name}" in path:  # no such model, or a name holding '/' that routes elsewhere
        expected |= {"404", "405", "422"}
    if "requestBody" in operation:  # a body that is not JSON
        expected |= {"400", "422"}
    assert expected <= set(operation["responses"])
    for status, response in operation["responses"].items():
        (media_type, content), *others = response["content"].items()
        assert not others and "schema" in content, (status, response)
        if media_type == "application/json" and status != "200":
            assert content["schema"]  # not the empty schema `{}`: clients can read the error
        for ref in _refs(content["schema"]):
            assert ref.removeprefix("#/components/schemas/") in SCHEMA["components"]["schemas"]
    assert "503" in SCHEMA["paths"]["/v2/health/ready"]["get"]["responses"]  # not ready
    assert "HTTPValidationError" not in SCHEMA["components"]["schemas"]  # our 422 replaces it


def _refs(schema) -> list[str]:
    if isinstance(schema, list):
        return [r for v in schema for r in _refs(v)]
    if not isinstance(schema, dict):
        return []
    own = [schema["$ref"]] if "$ref" in schema else []
    return own + [r for v in schema.values() for r in _refs(v)]


def test_metrics_are_declared_as_prometheus_text(tmp_path):
    declared = SCHEMA["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert declared == {"text/plain": {"schema": {"type": "string"}}}
    app = fake_app(tmp_path, FakeModel())
    with TestClient(app) as client:
        response = client.get("/metrics", headers=AUTH)
    assert response.status_code == 200 and "tuneforge_requests" in response.text
    assert_conforms(app, "GET", "/metrics", response)


# (what, method, operation, url, request keyword arguments, status): each on an app serving
# the fake model with LIMITS.
BIG = b'{"texts": ["' + b"a" * 4096 + b'"]}'
ERRORS = [
    ("no key", "POST", "/v1/models/{name}/predict", "/v1/models/fake/predict", {}, 401),
    ("bad key", "GET", "/metrics", "/metrics", {"headers": {"Authorization": "Bearer x"}}, 401),
    ("user key reloads", "POST", "/admin/models/{name}/reload", "/admin/models/fake/reload",
     {"headers": AUTH}, 403),
    ("no such model", "POST", "/v1/models/{name}/predict", "/v1/models/nope/predict",
     {"headers": AUTH, "json": {"texts": ["a"]}}, 404),
    ("no such model (embeddings)", "POST", "/v1/embeddings", "/v1/embeddings",
     {"headers": AUTH, "json": {"input": "a", "model": "nope"}}, 404),
    ("v2 no such model", "GET", "/v2/models/{name}", "/v2/models/nope", {"headers": AUTH}, 404),
    ("v2 no such version", "GET", "/v2/models/{name}/versions/{version}",
     "/v2/models/fake/versions/0", {"headers": AUTH}, 404),
    ("name with '/'", "POST", "/v1/models/{name}/predict", "/v1/models/a%2Fb/predict",
     {"headers": AUTH, "json": {"texts": ["a"]}}, 404),
    ("name with '/' routes to infer", "GET", "/v2/models/{name}", "/v2/models/fake%2Finfer",
     {"headers": AUTH}, 405),
    ("body too large", "POST", "/v1/models/{name}/predict", "/v1/models/fake/predict",
     {"headers": {**AUTH, "Content-Type": "application/json"}, "content": BIG}, 413),
    ("body too large, open path", "GET", "/v2/health/live", "/v2/health/live",
     {"content": BIG}, 413),
    ("too many texts", "POST", "/v1/models/{name}/predict", "/v1/models/fake/predict",
     {"headers": AUTH, "json": {"texts": ["a"] * 5}}, 413),
    ("too many texts to explain", "POST", "/v1/models/{name}/predict", "/v1/models/fake/predict",
     {"headers": AUTH, "json": {"texts": ["a", "b"], "explain": True}}, 413),
    ("JSON nested too deeply", "POST", "/v1/models/{name}/predict", "/v1/models/fake/predict",
     {"headers": {**AUTH, "Content-Type": "application/json"}, "content": b"[" * 2000}, 400),
    ("not JSON", "POST", "/v1/models/{name}/predict", "/v1/models/fake/predict",
     {"headers": {**AUTH, "Content-Type": "application/json"}, "content": b"{"}, 422),
    ("v2 not JSON", "POST", "/v2/models/{name}/infer", "/v2/models/fake/infer",
     {"headers": AUTH, "content": b"{"}, 400),
    ("invalid request", "POST", "/v1/models/{name}/predict", "/v1/models/fake/predict",
     {"headers": AUTH, "json": {"texts": "a"}}, 422),
    ("text too long", "POST", "/v1/models/{name}/predict", "/v1/models/fake/predict",
     {"headers": AUTH, "json": {"texts": ["a" * 51]}}, 422),
    ("v2 no texts", "POST", "/v2/models/{name}/infer", "/v2/models/fake/infer",
     {"headers": AUTH, "json": {"inputs": [
         {"name": "text", "shape": [0], "datatype": "BYTES", "data": []}]}}, 422),
]  # fmt: skip


@pytest.mark.parametrize(
    ("what", "method", "operation", "url", "kwargs", "status"),
    ERRORS,
    ids=[f"{e[5]} {e[0]}" for e in ERRORS],
)
def test_each_error_the_server_gives_is_declared_with_its_body(
    tmp_path, what, method, operation, url, kwargs, status
):
    app = fake_app(tmp_path, FakeModel())
    with TestClient(app) as client:
        response = client.request(method, url, **kwargs)
    assert response.status_code == status, response.text
    assert_conforms(app, method, operation, response)


def test_rate_limited_429_is_declared(tmp_path):
    app = fake_app(tmp_path, FakeModel(), rate_per_second=0.01, burst=1)
    with TestClient(app) as client:
        first, second = (client.get("/v1/models", headers=AUTH) for _ in range(2))
    assert (first.status_code, second.status_code) == (200, 429)
    assert int(second.headers["retry-after"]) >= 1
    assert_conforms(app, "GET", "/v1/models", second)


def test_admission_503_is_declared(tmp_path):
    app = fake_app(
        tmp_path, FakeModel(delay=0.2), max_inflight=1, max_loop_lag_ms=0, target_latency_ms=0
    )

    async def two_at_once():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await asyncio.gather(
                *(
                    client.post("/v1/models/fake/predict", json={"texts": ["a"]}, headers=AUTH)
                    for _ in range(2)
                )
            )

    responses = asyncio.run(two_at_once())
    assert sorted(r.status_code for r in responses) == [200, 503]
    for response in responses:
        assert_conforms(app, "POST", "/v1/models/{name}/predict", response)


def test_not_ready_503_is_declared(tmp_path):
    app = fake_app(tmp_path, model=None)  # no model loaded
    with TestClient(app) as client:
        response = client.get("/v2/health/ready")
    assert response.status_code == 503 and response.json() == {"ready": False}
    assert_conforms(app, "GET", "/v2/health/ready", response)


def test_unexpected_500_is_declared(tmp_path):
    app = fake_app(tmp_path, FakeModel(fail=True))
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post("/v1/models/fake/predict", json={"texts": ["a"]}, headers=AUTH)
    assert response.status_code == 500
    assert_conforms(app, "POST", "/v1/models/{name}/predict", response)
