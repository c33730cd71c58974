"""`serve` with an image classification model: native predict takes multipart uploads (parts
named `file`) and JSON base64 (data-URLs too), v2 takes BYTES (base64 in JSON, raw bytes in the
binary extension); every limit and every bad picture is a 4xx naming the problem, the server
keeps serving afterwards, and text models keep refusing images (and image models texts).
In-process: a tiny ViT head model trained once for the module, behind the app's test client."""

from __future__ import annotations

import base64
import io
import json
import struct
import threading
import zlib
from types import SimpleNamespace

import numpy as np
import pytest
from fastapi.testclient import TestClient

import tuneforge
from image_fakes import CLASSES, make_image_folder, picture, tiny_vit_dir
from tuneforge.serving import images as serving_images
from tuneforge.serving.app import build_app
from tuneforge.serving.limits import Limits
from tuneforge.serving.models import BatchSettings, ModelRepository, ServedModel
from tuneforge.tuned_model import Prediction

KEY = "i" * 32
AUTH = {"Authorization": f"Bearer {KEY}"}
LIMITS = dict(
    max_images=3,
    max_image_bytes=60_000,
    max_image_request_bytes=200_000,
    max_image_pixels=1_000_000,
    rate_per_second=0,
)
PREDICT, INFER = "/v1/models/pics/predict", "/v2/models/pics/infer"


class WordsModel:
    """A text model (no task: text classification) for the cross-checks."""

    labels = ("short", "long")
    config = SimpleNamespace(runtime="fake")

    def predict(self, texts, batch_size=64, top_k=5):
        return [Prediction("long" if len(t) > 10 else "short", 0.9, {}) for t in texts]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve-images")
    folder = make_image_folder(root / "train", 8, seed=0)
    vit = tiny_vit_dir(root / "vit")
    out = root / "model"
    tuneforge.tune(str(folder), base=str(vit), method="head", progress=False, out=str(out))
    return out


def make_app(model_dir, tmp_path_factory, settings=None, **limits):
    settings = settings or BatchSettings(max_batch=8, max_wait_ms=1)
    repo = ModelRepository(settings)
    repo.add("pics", model_dir)
    words = tmp_path_factory.mktemp("words")
    (words / "tuneforge.yaml").write_text("labels: [short, long]\n")
    repo.models["words"] = ServedModel("words", words, WordsModel(), settings)
    return build_app(repo, api_keys=[KEY], limits=Limits(**{**LIMITS, **limits}))


@pytest.fixture(scope="module")
def app(model_dir, tmp_path_factory):
    return make_app(model_dir, tmp_path_factory)


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app) as c:
        yield c


def encoded(colour: str, fmt: str = "PNG", size: int = 40, seed: int = 7) -> bytes:
    buf = io.BytesIO()
    picture(CLASSES[colour], np.random.default_rng(seed), size=size).save(buf, fmt)
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def bomb_png(width: int, height: int) -> bytes:
    """A 1x1 PNG whose header claims `width` x `height` (CRC fixed): refused unread."""
    data = bytearray(solid_png(1, 1))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def files(*items: tuple[str, bytes]) -> list:
    return [("file", (name, data, "application/octet-stream")) for name, data in items]


# ---- what works ---------------------------------------------------------------------------
def test_multipart_one_file(client):
    r = client.post(PREDICT, headers=AUTH, files=files(("red.png", encoded("red"))))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "pics" and body["version"]
    (p,) = body["predictions"]
    assert p["label"] == "red" and p["file"] == "red.png"
    assert set(p["scores"]) == set(CLASSES) and 0 < p["score"] <= 1


def test_multipart_several_files_in_order(client):
    parts = files(
        ("a.png", encoded("green")), ("b.jpg", encoded("blue", "JPEG")), ("c.png", encoded("red"))
    )
    r = client.post(PREDICT, headers=AUTH, files=parts)
    assert r.status_code == 200, r.text
    got = [(p["file"], p["label"]) for p in r.json()["predictions"]]
    assert got == [("a.png", "green"), ("b.jpg", "blue"), ("c.png", "red")]


def test_json_base64_data_urls_and_wrapped_base64(client):
    images = [
        b64(encoded("blue")),
        "data:image/png;base64," + b64(encoded("green")),
        base64.encodebytes(encoded("red", "JPEG")).decode(),  # line-wrapped, as `base64` prints
    ]
    r = client.post(PREDICT, headers=AUTH, json={"images": images})
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert [p["label"] for p in preds] == ["blue", "green", "red"]
    assert all(p["file"] is None for p in preds)


def test_url_safe_unpadded_base64(client):
    data = base64.urlsafe_b64encode(encoded("green", "WEBP")).decode().rstrip("=")
    r = client.post(PREDICT, headers=AUTH, json={"images": [data]})
    assert r.status_code == 200, r.text
    assert r.json()["predictions"][0]["label"] == "green"


def test_v2_metadata_declares_a_bytes_image_input(client):
    r = client.get("/v2/models/pics", headers=AUTH)
    assert r.status_code == 200
    assert r.json()["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]}]
    assert {o["name"] for o in r.json()["outputs"]} == {"label", "score"}
    text = client.get("/v2/models/words", headers=AUTH).json()
    assert text["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]


def test_v2_infer_bytes_base64(client):
    tensor = {"name": "image", "shape": [2], "datatype": "BYTES"}
    tensor["data"] = [b64(encoded("red")), b64(encoded("blue", "JPEG"))]
    r = client.post(INFER, headers=AUTH, json={"id": "q1", "inputs": [tensor]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == "q1" and body["model_name"] == "pics"
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["label"]["data"] == ["red", "blue"] and outputs["label"]["shape"] == [2]
    assert outputs["score"]["datatype"] == "FP32" and len(outputs["score"]["data"]) == 2


def test_v2_infer_binary_extension_takes_raw_bytes(client):
    data = encoded("green")
    element = struct.pack("<I", len(data)) + data
    header = {
        "inputs": [
            {
                "name": "image",
                "shape": [1],
                "datatype": "BYTES",
                "parameters": {"binary_data_size": len(element)},
            }
        ],
        "outputs": [{"name": "label"}],
    }
    head = json.dumps(header).encode()
    r = client.post(
        INFER,
        headers={**AUTH, "Inference-Header-Content-Length": str(len(head))},
        content=head + element,
    )
    assert r.status_code == 200, r.text
    assert r.json()["outputs"] == [
        {"name": "label", "datatype": "BYTES", "shape": [1], "data": ["green"]}
    ]


def test_auth_is_required(client):
    for r in (
        client.post(PREDICT, files=files(("red.png", encoded("red")))),
        client.post(PREDICT, json={"images": [b64(encoded("red"))]}),
        client.post(INFER, json={"inputs": []}),
        client.post(PREDICT, headers={"Authorization": "Bearer wrong"}, json={"images": []}),
    ):
        assert r.status_code == 401 and "API key" in r.json()["detail"]


def test_default_limits():
    limits = Limits()
    assert limits.max_image_bytes == 10 << 20 and limits.max_image_request_bytes == 32 << 20
    assert limits.max_image_pixels == 40_000_000 and limits.max_images == 16
    assert limits.max_body_bytes == 1 << 20  # the text models' body limit is unchanged


def test_a_decompression_bomb_under_the_default_limits(model_dir, tmp_path_factory):
    app = make_app(model_dir, tmp_path_factory, rate_per_second=0)  # the test limits
    app.state.limits = Limits(rate_per_second=0)  # the defaults, 40 MP
    with TestClient(app) as c:
        r = c.post(PREDICT, headers=AUTH, files=files(("bomb.png", bomb_png(50_000, 50_000))))
    assert r.status_code == 413
    assert "2,500,000,000 pixels" in r.json()["detail"]
    assert "40,000,000 pixels" in r.json()["detail"]


# ---- limits and errors: (what, request, status, words in the message) ----------------------
def truncated_jpeg() -> bytes:
    data = encoded("red", "JPEG", size=64)
    return data[: len(data) // 2]


def gif() -> bytes:
    buf = io.BytesIO()
    picture(CLASSES["red"], np.random.default_rng(0), size=16).save(buf, "GIF")
    return buf.getvalue()


def solid_png(width: int, height: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 40, 40)).save(buf, "PNG")
    return buf.getvalue()


def chunked(body: bytes, size: int = 16_384):
    """A generator body: sent without Content-Length (Transfer-Encoding: chunked)."""
    for i in range(0, len(body), size):
        yield body[i : i + size]


def multipart_body(n_bytes: int) -> tuple[bytes, str]:
    boundary = "b0undary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n'
            f"Content-Type: image/png\r\n\r\n"
        ).encode()
        + b"x" * n_bytes
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


RED = encoded("red")
BIG_BODY, BIG_TYPE = multipart_body(250_000)
BAD = [
    ("too many files", {"files": files(*[(f"{i}.png", RED) for i in range(4)])}, 413,
     ["Too many images", "limit is 3"]),
    ("too many base64 images", {"json": {"images": [b64(RED)] * 4}}, 413,
     ["Too many images: 4", "limit is 3"]),
    ("image over the bytes limit", {"files": files(("big.png", b"\x89PNG" + b"x" * 70_000))},
     413, ["image 0 ('big.png')", "70,004 bytes", "60,000 bytes per image"]),
    ("base64 image over the bytes limit", {"json": {"images": [b64(b"x" * 70_000)]}}, 413,
     ["image 0", "60,000 bytes per image"]),
    ("request over the body limit", {"content": BIG_BODY, "headers": {"Content-Type": BIG_TYPE}},
     413, ["larger than 200000 bytes", "images"]),
    ("request over the body limit, chunked",
     {"content": chunked(BIG_BODY), "headers": {"Content-Type": BIG_TYPE}}, 413,
     ["larger than 200000 bytes"]),
    ("too many pixels (header)", {"files": files(("bomb.png", bomb_png(10_000, 10_000)))}, 413,
     ["image 0 ('bomb.png')", "100,000,000 pixels", "1,000,000 pixels per image",
      "decompression"]),
    ("too many pixels (real picture)", {"json": {"images": [b64(solid_png(1200, 1000))]}}, 413,
     ["1200x1000", "1,000,000 pixels"]),
    ("truncated JPEG", {"files": files(("ok.png", RED), ("broken.jpg", truncated_jpeg()))}, 422,
     ["image 1 ('broken.jpg')", "truncated"]),
    ("not an image", {"files": files(("notes.png", b"hello, this is text" * 10))}, 422,
     ["image 0 ('notes.png')", "not an image"]),
    ("empty file", {"files": files(("empty.png", b""))}, 422, ["image 0", "empty"]),
    ("unsupported format", {"files": files(("anim.gif", gif()))}, 415,
     ["image 0 ('anim.gif')", "GIF images are not supported", "BMP, JPEG, PNG, WEBP"]),
    ("wrong content type", {"content": RED, "headers": {"Content-Type": "image/png"}}, 415,
     ["Unsupported content type 'image/png'", "multipart/form-data", "images"]),
    ("urlencoded form", {"data": {"file": "abc"}}, 415, ["application/x-www-form-urlencoded"]),
    ("invalid base64", {"json": {"images": [b64(RED), "not base64 at all!"]}}, 422,
     ["image 1 is not valid base64"]),
    ("data URL not base64", {"json": {"images": ["data:image/png,%89PNG"]}}, 422,
     ["image 0", "data URL must be base64"]),
    ("texts to an image model", {"json": {"texts": ["a red picture"]}}, 422,
     ["classifies images", "expects images"]),
    ("no images", {"json": {"images": []}}, 422, ["images"]),
    ("explain on images", {"json": {"images": [b64(RED)], "explain": True}}, 422, ["explain"]),
    ("not JSON", {"content": b"{", "headers": {"Content-Type": "application/json"}}, 422,
     ["JSON decode error"]),
    ("another form field", {"files": files(("a.png", RED)), "data": {"top_k": "3"}}, 422,
     ["Unexpected form field 'top_k'", "'file'"]),
    ("multipart without parts", {"content": b"--x--\r\n",
     "headers": {"Content-Type": "multipart/form-data; boundary=x"}}, 422, ["No images given"]),
    ("multipart without boundary", {"content": b"abc",
     "headers": {"Content-Type": "multipart/form-data"}}, 400, ["boundary"]),
]  # fmt: skip
V2_BAD = [
    ("v2 corrupt image", [b64(RED), b64(b"GIF89a-broken")], 422, ["image 1"]),
    ("v2 too many images", [b64(RED)] * 4, 413, ["Too many images: 4"]),
    ("v2 invalid base64", ["%%%"], 422, ["image 0 is not valid base64"]),
    ("v2 no images", [], 422, ["No images given"]),
]


def _message(r) -> str:
    body = r.json()
    return json.dumps(body.get("detail", body.get("error")))


@pytest.mark.parametrize(("what", "kwargs", "status", "words"), BAD, ids=[b[0] for b in BAD])
def test_each_bad_request_is_a_4xx_naming_the_problem(client, what, kwargs, status, words):
    kwargs = dict(kwargs)
    r = client.post(PREDICT, headers={**AUTH, **kwargs.pop("headers", {})}, **kwargs)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    for word in words:
        assert word in _message(r), (word, r.text)


@pytest.mark.parametrize(("what", "data", "status", "words"), V2_BAD, ids=[b[0] for b in V2_BAD])
def test_each_bad_v2_request_is_a_4xx_naming_the_problem(client, what, data, status, words):
    tensor = {"name": "image", "shape": [len(data)], "datatype": "BYTES", "data": data}
    r = client.post(INFER, headers=AUTH, json={"inputs": [tensor]})
    assert r.status_code == status, r.text
    for word in words:
        assert word in _message(r), (word, r.text)


def test_the_server_keeps_serving_after_every_bad_request(client):
    for _, kwargs, status, _ in BAD:  # again, back to back
        kwargs = dict(kwargs)
        if "content" in kwargs and not isinstance(kwargs["content"], bytes):
            kwargs["content"] = chunked(BIG_BODY)  # a fresh generator
        r = client.post(PREDICT, headers={**AUTH, **kwargs.pop("headers", {})}, **kwargs)
        assert r.status_code == status
    r = client.post(PREDICT, headers=AUTH, files=files(("red.png", RED)))
    assert r.status_code == 200 and r.json()["predictions"][0]["label"] == "red"
    metrics = client.get("/metrics", headers=AUTH).text
    assert 'status="500"' not in metrics and 'status="413"' in metrics
    # logged and counted under the public path, not the internal route it was sent to
    assert 'model="pics",route="/v1/models/{name}/predict",status="200"' in metrics
    assert "_images" not in metrics


# ---- text models and image models keep to their inputs --------------------------------------
def test_a_text_model_refuses_images(client):
    r = client.post("/v1/models/words/predict", headers=AUTH, files=files(("a.png", RED)))
    assert r.status_code == 415 and "classifies texts" in r.json()["detail"]
    r = client.post("/v1/models/words/predict", headers=AUTH, json={"images": [b64(RED)]})
    assert r.status_code == 422 and "classifies texts, not images" in r.text
    r = client.post("/v1/models/words/predict", headers=AUTH, json={"texts": ["hello"]})
    assert r.status_code == 200 and r.json()["predictions"][0]["label"] == "short"
    r = client.post("/v1/models/nope/predict", headers=AUTH, files=files(("a.png", RED)))
    assert r.status_code == 404 and "pics" in r.json()["detail"]


def test_an_image_model_refuses_texts_on_every_protocol(client):
    # a text would be opened as a path on the server: refused before the model sees it
    r = client.post("/v1/embeddings", headers=AUTH, json={"model": "pics", "input": "/etc/hosts"})
    assert r.status_code == 422 and "classifies images" in r.json()["detail"]
    tensor = {"name": "image", "shape": [1], "datatype": "FP32", "data": [1.0]}
    r = client.post(INFER, headers=AUTH, json={"inputs": [tensor]})
    assert r.status_code == 400 and "BYTES" in r.json()["error"]


def test_decoding_runs_off_the_event_loop(client, monkeypatch):
    threads = []
    decode_one = serving_images._decode_one

    def recording(*args):
        threads.append(threading.current_thread().name)
        return decode_one(*args)

    monkeypatch.setattr(serving_images, "_decode_one", recording)
    r = client.post(PREDICT, headers=AUTH, files=files(("a.png", RED), ("b.png", RED)))
    assert r.status_code == 200
    assert len(threads) == 2 and all(t.startswith("decode-images") for t in threads)


def test_mask_pii_leaves_pictures_alone(model_dir, tmp_path_factory):
    settings = BatchSettings(max_batch=8, max_wait_ms=1, mask_pii=True)
    app = make_app(model_dir, tmp_path_factory, settings=settings)
    with TestClient(app) as c:
        r = c.post(PREDICT, headers=AUTH, json={"images": [b64(RED)]})
    assert r.status_code == 200 and r.json()["predictions"][0]["label"] == "red"


def test_the_page_is_served_for_image_models_without_a_key(client, model_dir, tmp_path_factory):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert 'type="file"' in r.text and "sessionStorage" in r.text
    assert "const AUTH_REQUIRED = true;" in r.text
    assert "connect-src 'self'" in r.headers["content-security-policy"]
    assert client.post("/", json={}).status_code == 401  # only GET is open
    repo = ModelRepository(BatchSettings())
    words = tmp_path_factory.mktemp("words-only")
    (words / "tuneforge.yaml").write_text("labels: [short, long]\n")
    repo.models["words"] = ServedModel("words", words, WordsModel(), repo.settings)
    with TestClient(build_app(repo, api_keys=[KEY])) as c:
        assert c.get("/").status_code == 404  # a text-only server has no page


# ---- the OpenAPI schema declares the image bodies and the answers ---------------------------
def test_openapi_declares_multipart_and_json_images(app):
    operation = app.openapi()["paths"]["/v1/models/{name}/predict"]["post"]
    content = operation["requestBody"]["content"]
    assert set(content) == {"application/json", "multipart/form-data"}
    refs = [s.get("$ref", "") for s in content["application/json"]["schema"]["anyOf"]]
    assert any(r.endswith("/PredictRequest") for r in refs)
    assert any(r.endswith("/ImagesRequest") for r in refs)
    assert content["multipart/form-data"]["schema"]["properties"]["file"]["type"] == "array"
    assert {"200", "400", "401", "413", "415", "422"} <= set(operation["responses"])
    infer = app.openapi()["paths"]["/v2/models/{name}/infer"]["post"]
    assert "415" in infer["responses"]


def test_image_answers_conform_to_the_schema(client, app):
    schemathesis = pytest.importorskip("schemathesis")
    from schemathesis.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    schema = schemathesis.openapi.from_dict(app.openapi())
    checks = [status_code_conformance, content_type_conformance, response_schema_conformance]
    requests = [
        (PREDICT, "/v1/models/{name}/predict", {"files": files(("red.png", RED))}),
        (PREDICT, "/v1/models/{name}/predict", {"json": {"images": [b64(RED)] * 4}}),
        (PREDICT, "/v1/models/{name}/predict", {"files": files(("anim.gif", gif()))}),
        (PREDICT, "/v1/models/{name}/predict", {"json": {"images": ["!"]}}),
        (PREDICT, "/v1/models/{name}/predict", {"json": {"images": "x"}}),
        (PREDICT, "/v1/models/{name}/predict",
         {"content": b"x", "headers": {"Content-Type": "a/b"}}),
        (INFER, "/v2/models/{name}/infer", {"json": {"inputs": [
            {"name": "image", "shape": [1], "datatype": "BYTES", "data": [b64(gif())]}]}}),
    ]  # fmt: skip
    statuses = []
    for url, template, kwargs in requests:
        r = client.post(url, headers={**AUTH, **kwargs.pop("headers", {})}, **kwargs)
        statuses.append(r.status_code)
        case = schema[template]["POST"].Case(path_parameters={"name": "pics"})
        case.validate_response(r, checks=checks)
    assert statuses == [200, 413, 415, 422, 422, 415, 415]
