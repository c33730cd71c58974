"""Serving benchmark (issue 6): `tuneforge serve` (ONNX int8, micro-batching) against a naive
FastAPI + transformers pipeline server (PyTorch fp32, one forward per request), same model, same
banking77 texts, same thread count, in one run. Loopback only, bounded in time.

Each server runs in its own process; the load generator is an async httpx client in this one.
Closed loop at concurrency 1, 8, 64: req/s, p50/p99. Then an open-loop overload at 4x the
measured capacity of `tuneforge serve`: accepted requests' p99, 429/503 counts, crashes.

    HF_HUB_OFFLINE=1 python benchmarks/bench_serve.py --model runs/b77 --exported runs/b77-int8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tuneforge.evaluation.provenance import run_header
from tuneforge.serving.server import run_event_loop

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "banking77" / "converted" / "test.csv"
KEY = "bench-" + "k" * 32


# ---- the naive baseline server ------------------------------------------------------------
def naive_app(model_dir: Path):
    """FastAPI + transformers feature-extraction pipeline + the tuned head, per request."""
    import torch
    from fastapi import FastAPI
    from transformers import pipeline

    import tuneforge

    tuned = tuneforge.TunedModel.load(model_dir)
    head = tuned.runtime.classifier.head.eval()
    extract = pipeline(
        "feature-extraction", model=str(model_dir / "encoder"), framework="pt", device="cpu"
    )
    app = FastAPI()

    @app.post("/v1/models/{name}/predict")
    def predict(name: str, body: dict) -> dict:  # sync: FastAPI runs it in its thread pool
        out = []
        for text in body["texts"]:
            hidden = extract(text, return_tensors=True, truncation=True)[0]  # one forward
            with torch.inference_mode():
                p = head(hidden.mean(0, keepdim=True)).softmax(-1)[0]
            out.append({"label": tuned.labels[int(p.argmax())], "score": float(p.max())})
        return {"predictions": out}

    @app.get("/v2/health/ready")
    def ready() -> dict:
        return {"ready": True}

    return app


def run_naive(model_dir: Path, port: int, threads: int) -> None:
    import torch
    import uvicorn

    torch.set_num_threads(threads)
    uvicorn.run(naive_app(model_dir), host="127.0.0.1", port=port, log_level="warning")


# ---- load generation ----------------------------------------------------------------------
WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(key)s"
local bodies = {%(bodies)s}
local i = 0
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) codes = {} end
function request()
  i = i %% #bodies + 1
  return wrk.format(nil, nil, nil, bodies[i])
end
function response(status, headers, body) codes[status] = (codes[status] or 0) + 1 end
function done(summary, latency, requests)
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("codes")) do io.write(string.format("STATUS %%d %%d\\n", k, v)) end
  end
  io.write(string.format("P50 %%f\\nP99 %%f\\nREQS %%d\\nSECS %%f\\n", latency:percentile(50),
    latency:percentile(99), summary.requests, summary.duration / 1e6))
end
"""


def wrk_closed_loop(url: str, texts: list[str], concurrency: int, seconds: float) -> dict:
    """wrk (C, event loop): `concurrency` connections each sending one request at a time."""
    bodies = ",".join(json.dumps(json.dumps({"texts": [t]})) for t in texts[:500])
    script = Path(tempfile.mkdtemp()) / "post.lua"
    script.write_text(WRK_SCRIPT % {"key": KEY, "bodies": bodies})
    cmd = ["wrk", "-t1", f"-c{concurrency}", f"-d{int(seconds)}s", "--timeout", "30s",
           "-s", str(script), url]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
    codes, figures = {}, {}
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0] == "STATUS":
            codes[parts[1]] = codes.get(parts[1], 0) + int(parts[2])
        elif parts and parts[0] in ("P50", "P99", "REQS", "SECS"):
            figures[parts[0]] = float(parts[1])
    ok = codes.get("200", 0)
    return {
        "ok_per_second": round(ok / figures["SECS"], 1),
        "p50_ms": round(figures["P50"] / 1000, 1),
        "p99_ms": round(figures["P99"] / 1000, 1),
        "status_counts": codes,
        "concurrency": concurrency,
        "load_generator": "wrk",
    }


async def closed_loop(url: str, texts: list[str], concurrency: int, seconds: float) -> dict:
    import httpx

    latencies, codes = [], {}
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30, headers=_auth()) as client:

        async def worker(i: int) -> None:
            while time.perf_counter() < deadline:
                text = texts[(i * 7919 + len(latencies)) % len(texts)]
                t = time.perf_counter()
                try:
                    r = await client.post(url, json={"texts": [text]})
                    code = r.status_code
                except httpx.HTTPError:
                    code = "error"
                codes[code] = codes.get(code, 0) + 1
                if code == 200:
                    latencies.append(time.perf_counter() - t)

        start = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        total = time.perf_counter() - start
    return _stats(latencies, codes, total) | {"concurrency": concurrency}


async def open_loop(url: str, texts: list[str], rate: float, seconds: float) -> dict:
    """Requests at a fixed arrival rate, whatever the server does (how overload really looks).

    aiohttp, not httpx: at hundreds of requests/s the client's own CPU cost matters here.
    """
    import aiohttp

    latencies, codes = [], {}
    connector = aiohttp.TCPConnector(limit=2048)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=_auth()) as s:

        async def one(text: str) -> None:
            t = time.perf_counter()
            try:
                async with s.post(url, json={"texts": [text]}) as r:
                    await r.read()
                    code = r.status
            except (aiohttp.ClientError, TimeoutError):
                code = "error"
            codes[code] = codes.get(code, 0) + 1
            if code == 200:
                latencies.append(time.perf_counter() - t)

        tasks, start, n = [], time.perf_counter(), int(rate * seconds)
        for i in range(n):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(texts[i % len(texts)])))
        await asyncio.gather(*tasks)
        total = time.perf_counter() - start
    return _stats(latencies, codes, total) | {"offered_rate": round(rate, 1), "sent": n}


def _auth() -> dict:
    return {"Authorization": f"Bearer {KEY}"}


def _stats(latencies: list[float], codes: dict, total: float) -> dict:
    ms = np.array(latencies or [float("nan")]) * 1000
    return {
        "ok_per_second": round(len(latencies) / total, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "status_counts": {str(k): v for k, v in sorted(codes.items(), key=str)},
    }


# ---- orchestration ------------------------------------------------------------------------
def start_server(cmd: list[str], port: int, env: dict) -> subprocess.Popen:
    import httpx

    # Logs to a file: a pipe nobody reads fills up and blocks the server mid-benchmark.
    log = open(Path(tempfile.gettempdir()) / f"tuneforge-bench-serve-{port}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited; see {log.name}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready").status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError("server did not become ready")


def stop(proc: subprocess.Popen) -> bool:
    """Graceful stop (SIGTERM); True when it was still alive, i.e. did not crash under load."""
    alive = proc.poll() is None
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
    return alive


def bench(name: str, proc_cmd, port: int, env, texts, seconds, concurrencies) -> dict:
    proc = start_server(proc_cmd, port, env)
    url = f"http://127.0.0.1:{port}/v1/models/m/predict"
    try:
        asyncio.run(closed_loop(url, texts, 4, 2))  # warm-up
        if shutil.which("wrk"):
            rows = [wrk_closed_loop(url, texts, c, seconds) for c in concurrencies]
        else:  # wrk is `apt-get install wrk`; the async client is slower but works anywhere
            rows = [asyncio.run(closed_loop(url, texts, c, seconds)) for c in concurrencies]
        for row in rows:
            print(name, json.dumps(row), flush=True)
        return {"server": name, "closed_loop": rows, "proc": proc, "url": url, "command": proc_cmd}
    except BaseException:
        stop(proc)
        raise


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="PyTorch artifact (naive baseline).")
    ap.add_argument("--exported", type=Path, help="Artifact `tuneforge serve` runs.")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--max-queue", type=int, default=64)
    ap.add_argument("--max-inflight", type=int, default=64)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/serve_banking77.json")
    ap.add_argument("--naive-server", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.naive_server:
        return run_naive(args.model, args.naive_server, args.threads)
    if not DATA.exists():
        sys.exit(f"needs {DATA} (the shared banking77 data)")
    import pandas as pd

    texts = pd.read_csv(DATA)["text"].astype(str).tolist()
    header = run_header(
        threads_per_server=args.threads,
        note="2 CPU cores shared by the server and the load generator",
    )  # before we load the machine
    env = {
        **os.environ,
        "TUNEFORGE_API_KEYS": KEY,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": str(args.threads),
        "TUNEFORGE_ORT_THREADS": str(args.threads),
    }
    conc = [1, 8, 64]
    tf_cmd = [
        sys.executable,
        "-m",
        "tuneforge",
        "serve",
        f"m={args.exported}",
        "--port",
        "8731",
        "--rate",
        "0",
        "--max-queue",
        str(args.max_queue),
        "--max-inflight",
        str(args.max_inflight),
        "--max-batch",
        "32",
    ]
    naive_cmd = [
        sys.executable,
        __file__,
        "--naive-server",
        "8732",
        "--model",
        str(args.model),
        "--threads",
        str(args.threads),
    ]
    naive = bench("naive", naive_cmd, 8732, env, texts, args.seconds, conc)
    naive_alive = stop(naive.pop("proc"))
    tf = bench("tuneforge", tf_cmd, 8731, env, texts, args.seconds, conc)
    capacity = max(r["ok_per_second"] for r in tf["closed_loop"])
    # uvloop (as the server): at hundreds of requests/s the generator's own CPU matters
    overload = run_event_loop(open_loop(tf["url"], texts, 4 * capacity, args.seconds))
    print("overload", json.dumps(overload), flush=True)
    tf_alive = stop(tf.pop("proc"))
    at64 = {s["server"]: s["closed_loop"][-1]["ok_per_second"] for s in (naive, tf)}
    speedup = round(at64["tuneforge"] / at64["naive"], 2) if at64["naive"] else None
    result = {
        "benchmark": "serve: tuneforge serve (onnx int8, micro-batching) vs naive FastAPI + "
        "transformers pipeline (fp32, one forward per request), banking77 texts, 1 text/request",
        **header,
        "servers": [naive, tf],
        "speedup_at_concurrency_64": speedup,
        "overload_at_4x_capacity": overload | {"capacity_req_per_s": capacity},
        "crashes": {"naive": int(not naive_alive), "tuneforge": int(not tf_alive)},
    }
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
