"""`tuneforge serve --ray`: the same app as a Ray Serve deployment on a local Ray instance."""

from __future__ import annotations

import httpx
import pytest

from tuneforge.serving.limits import Limits
from tuneforge.serving.server import ServeOptions
from tuneforge.serving.testing import free_port

pytest.importorskip("ray.serve", reason="Ray Serve not installed (pip install 'tuneforge[ray]')")
pytestmark = pytest.mark.slow

KEY = "r" * 24 + "key"


@pytest.fixture(scope="module")
def ray_server(tiny_model_dir):
    from tuneforge.serving import ray_deploy

    options = ServeOptions(port=free_port(), api_keys=[KEY], limits=Limits(rate_per_second=0))
    ray_deploy.start(
        [("tiny", tiny_model_dir)],
        options,
        ray_deploy.RayOptions(replicas=2, cpus_per_replica=0.5),
    )
    yield f"http://127.0.0.1:{options.port}"
    ray_deploy.stop()


def test_ray_deployment_serves_every_protocol_with_auth(ray_server, tiny_model_dir):
    import tuneforge

    texts = ["card arrived post", "refund money back", "transfer iban pending"]
    auth = {"Authorization": f"Bearer {KEY}"}
    assert httpx.get(f"{ray_server}/v2/health/ready").status_code == 200
    denied = httpx.post(f"{ray_server}/v1/models/tiny/predict", json={"texts": texts})
    assert denied.status_code == 401

    expected = [p.label for p in tuneforge.TunedModel.load(tiny_model_dir).predict(texts)]
    # several requests, so both replicas answer some of them
    for _ in range(6):
        r = httpx.post(
            f"{ray_server}/v1/models/tiny/predict", json={"texts": texts}, headers=auth, timeout=60
        )
        assert r.status_code == 200, r.text
        assert [p["label"] for p in r.json()["predictions"]] == expected

    emb = httpx.post(
        f"{ray_server}/v1/embeddings", json={"model": "tiny", "input": texts}, headers=auth
    )
    assert emb.status_code == 200 and len(emb.json()["data"]) == 3
    too_many = httpx.post(
        f"{ray_server}/v1/models/tiny/predict", json={"texts": ["x"] * 10_000}, headers=auth
    )
    assert too_many.status_code in (413, 422)
