"""Live server on loopback with a tiny tuned model: every endpoint with real clients, auth,
limits, PII-free logs, reload under traffic."""

from __future__ import annotations

import base64
import io
import json
import threading

import httpx
import numpy as np
import pytest

import tuneforge
from tuneforge.serving.app import build_app
from tuneforge.serving.limits import Limits
from tuneforge.serving.logs import server_log, setup_logging
from tuneforge.serving.models import BatchSettings
from tuneforge.serving.server import load_repository
from tuneforge.serving.testing import LiveServer

KEY, ADMIN = "k" * 24 + "user", "a" * 24 + "admin"
AUTH = {"Authorization": f"Bearer {KEY}"}
PII_CORPUS = {
    "jane.doe@example.com": "[EMAIL]",
    "4111 1111 1111 1111": "[CARD]",
    "DE89 3704 0044 0532 0130 00": "[IBAN]",
    "+44 20 7946 0958": "[PHONE]",
    "123-45-6789": "[ID]",
}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_bert, tiny_data):
    out = tmp_path_factory.mktemp("serve") / "tiny"
    tuneforge.tune(
        tiny_data["train"], base=str(tiny_bert), method="full", epochs=3, lr=3e-3,
        batch_size=8, early_stopping=0, progress=False, out=out,
    )  # fmt: skip
    return out


@pytest.fixture(scope="module")
def live(model_dir):
    logs = io.StringIO()
    setup_logging(stream=logs)
    repo = load_repository([("tiny", model_dir)], BatchSettings(max_batch=16, max_wait_ms=2))
    limits = Limits(max_texts=8, max_text_chars=300, max_body_bytes=8192, rate_per_second=0)
    app = build_app(repo, api_keys=[KEY], admin_keys=[ADMIN], limits=limits)
    with LiveServer(app) as server:
        server.logs = logs
        yield server


def test_health_is_open_everything_else_needs_a_key(live):
    assert httpx.get(f"{live.url}/v2/health/live").json() == {"live": True}
    assert httpx.get(f"{live.url}/v2/health/ready").status_code == 200
    for method, path in [
        ("POST", "/v1/models/tiny/predict"),
        ("GET", "/v1/models"),
        ("POST", "/v1/embeddings"),
        ("POST", "/v2/models/tiny/infer"),
        ("GET", "/v2/models/tiny"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
    ]:
        r = httpx.request(method, live.url + path, json={"texts": ["x"]})
        assert r.status_code == 401, path
        bad = httpx.request(method, live.url + path, headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401, path


def test_native_predict_matches_the_model(live, model_dir):
    texts = ["my card has not arrived", "refund my money please"]
    r = httpx.post(f"{live.url}/v1/models/tiny/predict", json={"texts": texts}, headers=AUTH)
    assert r.status_code == 200, r.text
    body = r.json()
    local = tuneforge.TunedModel.load(model_dir).predict(texts)
    assert [p["label"] for p in body["predictions"]] == [p.label for p in local]
    assert body["predictions"][0]["score"] == pytest.approx(local[0].score, abs=1e-5)
    explained = httpx.post(
        f"{live.url}/v1/models/tiny/predict", json={"texts": texts[:1], "explain": True},
        headers=AUTH,
    ).json()  # fmt: skip
    assert len(explained["predictions"][0]["explanation"]["tokens"]) == 5


def test_openai_client_embeddings_float_and_base64(live, model_dir):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{live.url}/v1", api_key=KEY, max_retries=0)
    texts = ["send a sepa transfer", "lost my card"]
    expected = tuneforge.TunedModel.load(model_dir).embed(texts)
    # No format: the client asks for base64 and decodes it itself; explicit formats as sent.
    for fmt in (None, "float", "base64"):
        kwargs = {"encoding_format": fmt} if fmt else {}
        res = client.embeddings.create(model="tiny", input=texts, **kwargs)
        got = np.array([_vector(d.embedding) for d in res.data])
        np.testing.assert_allclose(got, expected, atol=1e-5)
        assert res.usage.prompt_tokens > 0
    assert "tiny" in [m.id for m in client.models.list()]
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{live.url}/v1", api_key="wrong", max_retries=0).models.list()


def _vector(embedding) -> np.ndarray:
    if isinstance(embedding, str):
        return np.frombuffer(base64.b64decode(embedding), dtype="<f4")
    return np.asarray(embedding)


def test_v2_raw_http(live):
    meta = httpx.get(f"{live.url}/v2/models/tiny", headers=AUTH).json()
    assert meta["inputs"][0]["datatype"] == "BYTES" and meta["versions"]
    assert httpx.get(f"{live.url}/v2/models/tiny/ready", headers=AUTH).json()["ready"]
    body = {"id": "r1", "inputs": [{"name": "text", "shape": [2], "datatype": "BYTES",
                                    "data": ["refund please", "card lost"]}]}  # fmt: skip
    out = httpx.post(f"{live.url}/v2/models/tiny/infer", json=body, headers=AUTH).json()
    assert out["id"] == "r1" and out["model_version"] == meta["versions"][0]
    labels = next(o for o in out["outputs"] if o["name"] == "label")
    assert labels["shape"] == [2]
    assert all(x in ("card", "refund", "transfer") for x in labels["data"])
    body["inputs"][0]["shape"] = [3]
    bad = httpx.post(f"{live.url}/v2/models/tiny/infer", json=body, headers=AUTH)
    assert bad.status_code == 400 and "shape" in bad.json()["error"]


def test_v2_tritonclient(live):
    http = pytest.importorskip("tritonclient.http")
    client = http.InferenceServerClient(live.url.removeprefix("http://"))
    headers = {"Authorization": f"Bearer {KEY}"}
    assert client.is_server_live() and client.is_model_ready("tiny", headers=headers)
    data = np.array([b"refund my money", b"iban transfer"], dtype=object)
    for binary in (False, True):  # JSON tensors, then the binary tensor extension
        inp = http.InferInput("text", [2], "BYTES")
        inp.set_data_from_numpy(data, binary_data=binary)
        outs = [http.InferRequestedOutput(n, binary_data=False) for n in ("label", "score")]
        result = client.infer("tiny", [inp], outputs=outs, headers=headers)
        assert result.as_numpy("label").shape == (2,)
        assert np.all((result.as_numpy("score") > 0) & (result.as_numpy("score") <= 1))


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"texts": ["a"] * 9}, 413, "Too many texts"),
        ({"texts": ["a" * 301]}, 422, "characters"),
        ({"texts": ["word " * 3000]}, 413, "larger than"),
        ({"texts": []}, 422, ""),
        ({"texts": "not a list"}, 422, ""),
    ],
)
def test_limits(live, body, status, words):
    r = httpx.post(f"{live.url}/v1/models/tiny/predict", json=body, headers=AUTH)
    assert r.status_code == status
    assert words in r.text


def test_unknown_model_404_lists_models(live):
    r = httpx.post(f"{live.url}/v1/models/nope/predict", json={"texts": ["x"]}, headers=AUTH)
    assert r.status_code == 404 and "tiny" in r.json()["detail"]


def test_metrics_count_requests_and_batches(live):
    httpx.post(f"{live.url}/v1/models/tiny/predict", json={"texts": ["x"]}, headers=AUTH)
    text = httpx.get(f"{live.url}/metrics", headers=AUTH).text
    assert 'tuneforge_requests_total{model="tiny",route="/v1/models/{name}/predict"' in text
    assert "tuneforge_batch_size_bucket" in text and "tuneforge_queue_depth" in text


def test_logs_are_json_and_pii_free(live):
    # PII in a URL (model name), a seeded log line and an error message: none may reach the log.
    for raw in PII_CORPUS:
        httpx.post(f"{live.url}/v1/models/{raw}/predict", json={"texts": [raw]}, headers=AUTH)
        server_log.warning("customer wrote: %s", raw)
    lines = [json.loads(x) for x in live.logs.getvalue().splitlines() if x.strip()]
    assert any(r["logger"] == "tuneforge.access" and r["status"] == 404 for r in lines)
    text = live.logs.getvalue()
    for raw, mask in PII_CORPUS.items():
        assert raw not in text and raw.replace(" ", "%20") not in text
        assert mask in text


def test_reload_under_traffic_loses_no_request(live, model_dir):
    url, statuses, stop = f"{live.url}/v1/models/tiny/predict", [], threading.Event()

    def traffic():
        with httpx.Client(headers=AUTH) as c:
            while not stop.is_set():
                statuses.append(c.post(url, json={"texts": ["refund my money"]}).status_code)

    threads = [threading.Thread(target=traffic) for _ in range(4)]
    for t in threads:
        t.start()
    before = httpx.get(f"{live.url}/v2/models/tiny", headers=AUTH).json()["versions"][0]
    model = tuneforge.TunedModel.load(model_dir)
    model.config.created = "reloaded"  # a new version saved in place
    model.save(model_dir)
    admin = {"Authorization": f"Bearer {ADMIN}"}
    assert httpx.post(f"{live.url}/admin/models/tiny/reload", headers=AUTH).status_code == 403
    r = httpx.post(f"{live.url}/admin/models/tiny/reload", headers=admin, timeout=60)
    stop.set()
    for t in threads:
        t.join()
    assert r.status_code == 200 and r.json()["version"] != before
    assert statuses and set(statuses) == {200}
