"""The user's path end to end: `tuneforge export` → `tuneforge serve` → the openai client;
SIGHUP reloads a new version in place, SIGTERM drains and exits cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

import tuneforge
from tuneforge.serving.testing import free_port

pytestmark = pytest.mark.slow  # two CLI processes (torch imports): ~30 s

KEY = "e2e-" + "z" * 28


def _wait_ready(url: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        try:
            if httpx.get(f"{url}/v2/health/ready").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError("server not ready")


def test_export_serve_openai_reload_drain(tmp_path, tiny_bert, tiny_data):
    openai = pytest.importorskip("openai")
    src = tmp_path / "tiny"
    tuneforge.tune(
        tiny_data["train"], base=str(tiny_bert), method="full", epochs=2, lr=3e-3,
        batch_size=8, early_stopping=0, progress=False, out=src,
    )  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TUNEFORGE_API_KEYS": KEY}
    exported = tmp_path / "tiny-onnx"
    cli = [sys.executable, "-m", "tuneforge"]
    run = subprocess.run(
        [*cli, "export", str(src), "--out", str(exported), "--quantize", "int8",
         "--val", str(tiny_data["test"]), "--max-loss", "100"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "Wrote" in run.stdout
    port = free_port()
    proc = subprocess.Popen(
        [*cli, "serve", str(exported), "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc)
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)
        res = client.embeddings.create(model="tiny-onnx", input=["refund my money"])
        assert len(res.data[0].embedding) == 32
        before = httpx.get(f"{url}/v2/models/tiny-onnx", headers={"Authorization": f"Bearer {KEY}"})
        model = tuneforge.TunedModel.load(exported)
        model.config.created = "v2"
        model.save(exported)
        proc.send_signal(signal.SIGHUP)
        headers = {"Authorization": f"Bearer {KEY}"}
        deadline, after = time.monotonic() + 30, before.json()["versions"]
        while after == before.json()["versions"] and time.monotonic() < deadline:
            time.sleep(0.2)
            after = httpx.get(f"{url}/v2/models/tiny-onnx", headers=headers).json()["versions"]
        assert after != before.json()["versions"]
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    log = proc.stderr.read().decode()
    # uvicorn re-raises the captured SIGTERM once shutdown is complete: -15 is a clean exit.
    assert code in (0, -signal.SIGTERM), log[-3000:]
    assert "all models drained and closed" in log
