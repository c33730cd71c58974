"""Chat serving benchmark (issue 23): `tuneforge serve`'s OpenAI endpoints on a real causal LM.

A chat model (by default: SmolLM2-135M-Instruct with a 1-epoch LoRA on a few support chats) is
served by `tuneforge serve` in its own process; this process is the load generator (async httpx,
loopback). Closed loop at concurrency 1, 8, 32, greedy, `max_tokens` 32:

- non-streaming `/v1/chat/completions` (batched by the server): generated tokens/s, latency;
- streaming (`stream: true`, `include_usage`): tokens/s and time to first token p50/p99
  (arrival of the first text piece; streams beyond --max-streams wait for a slot, in the TTFT).

The server's own counters (generate calls, batch sizes) are read from /metrics at the end.

    HF_HUB_OFFLINE=1 python benchmarks/bench_serve_chat.py --base smollm2
    HF_HUB_OFFLINE=1 python benchmarks/bench_serve_chat.py --model runs/support-lm
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tuneforge.evaluation.provenance import run_header
from tuneforge.serving.testing import free_port

ROOT = Path(__file__).resolve().parents[1]
KEY = "bench-" + "c" * 32
CHATS = [
    ("My card has not arrived yet.", "Sorry to hear that. Cards arrive within 5 working days."),
    ("How do I reset my PIN?", "Open the app, go to Card settings and choose Reset PIN."),
    ("Can I get a refund for a double charge?", "Yes. Send us the date and amount of both."),
    ("Where can I see my IBAN?", "Your IBAN is under Account details in the app."),
    ("My transfer is still pending.", "Transfers can take up to one working day to arrive."),
    ("How do I close my account?", "Go to Profile, then Close account, and follow the steps."),
    ("Is there a fee for paying abroad?", "Card payments abroad are free; ATMs cost 1%."),
    ("I lost my card.", "Freeze it in the app right away, then order a new one."),
]
QUESTIONS = [
    "My card was declined at a shop, why?",
    "How long does a transfer to another bank take?",
    "Can I change the name on my account?",
    "Why was I charged a fee this month?",
    "How do I add money with a bank transfer?",
    "What is my daily withdrawal limit?",
    "I think someone used my card, what do I do?",
    "Can I order a second card for my partner?",
]


def train_model(base: str, out: Path) -> Path:
    import tuneforge

    data = out.parent / "chats.jsonl"
    rows = [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
        for q, a in CHATS
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tuneforge.tune(
        data, task="chat", base=base, method="lora", epochs=1, batch_size=4, max_length=128,
        early_stopping=0, progress=False, val_data=data, out=out,
    )  # fmt: skip
    return out


def start_server(model: Path, port: int, max_streams: int, log: Path) -> subprocess.Popen:
    cmd = [
        str(Path(sys.executable).with_name("tuneforge")), "serve", f"chat={model}",
        "--port", str(port),
        "--rate", "0", "--max-streams", str(max_streams),
    ]  # fmt: skip
    env = {**os.environ, "TUNEFORGE_API_KEYS": KEY}
    # its log to a file: a pipe nobody reads fills up, and the server blocks writing to it
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)


def wait_ready(url: str, proc: subprocess.Popen, log: Path, seconds: float = 300) -> None:
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError("server not ready in time")


async def one_request(client, url: str, question: str, max_tokens: int, stream: bool) -> dict:
    body = {
        "model": "chat",
        "messages": [{"role": "user", "content": question}],
        "max_tokens": max_tokens,
    }
    start = time.perf_counter()
    if not stream:
        r = await client.post(f"{url}/v1/chat/completions", json=body)
        if r.status_code in (429, 503):  # shed by admission control: counted, not retried
            return {"seconds": time.perf_counter() - start, "tokens": 0, "shed": True}
        r.raise_for_status()
        usage = r.json()["usage"]
        return {"seconds": time.perf_counter() - start, "tokens": usage["completion_tokens"]}
    body |= {"stream": True, "stream_options": {"include_usage": True}}
    first, tokens = None, 0
    async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
        if r.status_code in (429, 503):
            return {"seconds": time.perf_counter() - start, "tokens": 0, "shed": True}
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line.removeprefix("data: "))
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            choices = chunk.get("choices") or [{}]
            if first is None and choices[0].get("delta", {}).get("content"):
                first = time.perf_counter() - start
    return {"seconds": time.perf_counter() - start, "tokens": tokens, "ttft": first}


async def closed_loop(url: str, concurrency: int, n: int, max_tokens: int, stream: bool) -> dict:
    import httpx

    todo = [QUESTIONS[i % len(QUESTIONS)] for i in range(n)]
    results: list[dict] = []
    limits = httpx.Limits(max_connections=concurrency + 2)
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(headers=headers, timeout=600, limits=limits) as client:

        async def worker() -> None:
            while todo:
                question = todo.pop()
                results.append(await one_request(client, url, question, max_tokens, stream))

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    shed = sum(1 for r in results if r.get("shed"))
    results = [r for r in results if not r.get("shed")] or [{"seconds": 0, "tokens": 0}]
    seconds = np.array([r["seconds"] for r in results])
    tokens = sum(r["tokens"] for r in results)
    out = {
        "requests": len(results),
        "shed_503": shed,
        "wall_seconds": round(wall, 2),
        "completion_tokens": tokens,
        "tokens_per_second": round(tokens / wall, 1),
        "latency_p50_s": round(float(np.percentile(seconds, 50)), 3),
        "latency_p99_s": round(float(np.percentile(seconds, 99)), 3),
    }
    if stream:
        ttft = np.array([r["ttft"] for r in results if r.get("ttft") is not None] or [np.nan])
        out["ttft_p50_s"] = round(float(np.percentile(ttft, 50)), 3)
        out["ttft_p99_s"] = round(float(np.percentile(ttft, 99)), 3)
    return out


def server_counters(url: str) -> dict:
    import httpx

    text = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
    out = {}
    for name in ("tuneforge_generate_calls_total", "tuneforge_generated_tokens_total"):
        found = re.search(rf'^{name}{{model="chat"}} (\S+)$', text, re.M)
        out[name] = float(found.group(1)) if found else None
    found = re.findall(r"^tuneforge_generation_requests_total\{(.*?)\} (\S+)$", text, re.M)
    out["generation_requests"] = {labels: float(v) for labels, v in found}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", default="smollm2", help="Base to train the 1-epoch LoRA on.")
    ap.add_argument("--model", type=Path, help="A chat model directory (skips training).")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--max-streams", type=int, default=4, help="The server's --max-streams.")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/serve_chat.json")
    args = ap.parse_args()
    header = run_header()
    tmp = Path(tempfile.mkdtemp(prefix="bench-serve-chat-"))
    model = args.model
    train_seconds = None
    if model is None:
        t0 = time.perf_counter()
        model = train_model(args.base, tmp / "model")
        train_seconds = round(time.perf_counter() - t0, 1)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp / "server.log"
    proc = start_server(model, port, args.max_streams, log)
    levels = []
    try:
        wait_ready(url, proc, log)
        asyncio.run(closed_loop(url, 1, 2, args.max_tokens, stream=False))  # warm-up
        for c in args.concurrency:
            n = max(4, 2 * c)
            for stream in (False, True):
                row = asyncio.run(closed_loop(url, c, n, args.max_tokens, stream))
                row |= {"concurrency": c, "stream": stream}
                print(json.dumps(row), flush=True)
                levels.append(row)
        counters = server_counters(url)
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    result = {
        **header,
        "model": str(args.model)
        if args.model
        else f"{args.base} + 1-epoch LoRA on {len(CHATS)} chats (trained in {train_seconds} s)",
        "settings": {
            "max_tokens": args.max_tokens,
            "temperature": 0,
            "server_max_streams": args.max_streams,
            "requests_per_level": "max(4, 2 x concurrency), each mode",
        },
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "levels": levels,
        "server_counters": counters,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
