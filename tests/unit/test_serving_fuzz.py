"""Fuzzing the live server: schemathesis over every operation of its own OpenAPI schema, and
hypothesis for what a schema cannot express (huge and deeply nested bodies, invalid UTF-8, wrong
content types). The properties: never a 5xx, every answer as the schema declares it (status
code, content type, body, headers), and the server still answers afterwards."""

from __future__ import annotations

import json
import sys

import httpx
import pytest
import requests

import tuneforge
from tuneforge.serving.app import build_app
from tuneforge.serving.limits import Limits
from tuneforge.serving.models import BatchSettings, ModelRepository
from tuneforge.serving.server import load_repository
from tuneforge.serving.testing import LiveServer

schemathesis = pytest.importorskip("schemathesis")  # the serve-test extra

from hypothesis import HealthCheck, given, settings  # noqa: E402  (a schemathesis dependency)
from hypothesis import strategies as st  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.slow  # ~3 min: about 11,000 requests over loopback

KEY, ADMIN = "f" * 32, "g" * 32
AUTH = {"Authorization": f"Bearer {KEY}"}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
# Per operation with inputs (one without has one possible case): about 11,000 requests in all,
# a generated case going out with both keys. Generating cases, not serving them, takes most of
# the time: the file runs in about 3 minutes on 2 cores.
EXAMPLES = 550
MIN_REQUESTS = 10_000  # in all; test_fuzz_volume keeps it from silently dropping
# Input handling is under test here, not load shedding: the fuzzer's back-to-back reloads
# make the event loop lag, and the loop-lag rule would (rightly) answer 503. There is no
# per-key exemption from the rate limit, so it is off for the whole server.
LIMITS = Limits(
    max_texts=16, max_text_chars=500, max_body_bytes=16_384, rate_per_second=0, max_loop_lag_ms=0
)
TRIED = {"schemathesis": 0, "hypothesis": 0}
OPERATIONS_TRIED: set[tuple[str, str]] = set()
SESSION = requests.Session()  # keep-alive: the fuzzer, not TCP handshakes, sets the pace

# The schema does not depend on the models served: build it from an empty repository.
OPENAPI = build_app(ModelRepository(BatchSettings()), api_keys=[KEY], admin_keys=[ADMIN]).openapi()
schema = schemathesis.openapi.from_dict(OPENAPI)


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_bert, tiny_data):
    out = tmp_path_factory.mktemp("fuzz") / "tiny"
    tuneforge.tune(
        tiny_data["train"], base=str(tiny_bert), method="head", epochs=1, batch_size=16,
        early_stopping=0, progress=False, out=out,
    )  # fmt: skip
    repo = load_repository([("tiny", out)], BatchSettings(max_batch=16, max_wait_ms=1))
    app = build_app(repo, api_keys=[KEY], admin_keys=[ADMIN], limits=LIMITS)
    with LiveServer(app) as live:
        yield live
    print(f"\nfuzz inputs tried: {TRIED}", file=sys.stderr)


@pytest.fixture(scope="module")
def alive(server):
    def check():
        assert httpx.get(f"{server.url}/v2/health/live").status_code == 200

    return check


@schema.parametrize()
@settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None
)
def test_schema_fuzz_conforms(case, server):
    if "{name}" in case.path and case.path_parameters and case.method != "GET":
        case.path_parameters["name"] = "tiny"  # reach the model, not only the 404 path
    OPERATIONS_TRIED.add((case.method.upper(), case.path))
    for headers in (AUTH, {"Authorization": f"Bearer {ADMIN}"}):
        TRIED["schemathesis"] += 1
        case.call_and_validate(
            base_url=server.url, session=SESSION, headers=headers, checks=CHECKS, timeout=30
        )


PATHS = ["/v1/models/tiny/predict", "/v1/embeddings", "/v2/models/tiny/infer"]


def _post(server, path: str, content: bytes, content_type: str = "application/json"):
    TRIED["hypothesis"] += 1
    return httpx.post(
        server.url + path,
        content=content,
        headers={**AUTH, "Content-Type": content_type},
        timeout=30,
    )


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(path=st.sampled_from(PATHS), raw=st.binary(max_size=2048))
def test_invalid_bytes_never_5xx(server, path, raw):
    assert _post(server, path, raw).status_code < 500


@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(
    path=st.sampled_from(PATHS),
    depth=st.integers(1, 100_000),
    opener=st.sampled_from(["[", '{"a":', '{"texts":[']),
)
def test_deeply_nested_bodies_never_5xx(server, path, depth, opener):
    body = opener * depth
    assert _post(server, path, body.encode()[: 2 * LIMITS.max_body_bytes]).status_code < 500


@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(
    path=st.sampled_from(PATHS),
    texts=st.lists(st.text(max_size=600), max_size=40),
    content_type=st.sampled_from(
        ["application/json", "text/plain", "application/x-www-form-urlencoded", "", "image/png"]
    ),
)
def test_odd_texts_and_content_types_never_5xx(server, path, texts, content_type):
    body = {"texts": texts, "input": texts, "model": "tiny"}
    raw = json.dumps(body).encode()
    assert _post(server, path, raw, content_type).status_code < 500


def test_huge_body_is_413_and_server_survives(server, alive):
    big = b'{"texts": ["' + b"a" * (10 * LIMITS.max_body_bytes) + b'"]}'
    assert _post(server, PATHS[0], big).status_code == 413
    alive()


def test_invalid_utf8_inside_strings(server, alive):
    raw = b'{"texts": ["caf\xe9 \xff\xfe", "\\ud800 lone surrogate"]}'
    assert _post(server, PATHS[0], raw).status_code in (200, 400, 422)
    escaped = b'{"texts": ["\\ud800 lone surrogate", "ok"]}'
    assert _post(server, PATHS[0], escaped).status_code == 200
    alive()


def test_fuzz_volume():
    """The requests sent above (the whole file must run: a selection proves nothing)."""
    everything = {(m.upper(), path) for path, ops in OPENAPI["paths"].items() for m in ops}
    if not everything <= OPERATIONS_TRIED or not TRIED["hypothesis"]:
        pytest.skip("run the whole file to count its requests")
    assert sum(TRIED.values()) >= MIN_REQUESTS, TRIED
