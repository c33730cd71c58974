"""Export benchmark (issue 6): exported ONNX models against sentence-transformers and
transformers (PyTorch fp32) on the same model and the same banking77 texts, in one run.

For each engine: throughput (texts/s) and p50/p99 latency per call at batch 1 and 32 (random
chunks of the texts), throughput over 1,024 texts in length-sorted batches of 32 (how every
engine runs a file), and the accuracy figures the export's gate recorded. Threads are pinned to
the same count for all; engines take turns over several rounds and keep their best.

    HF_HUB_OFFLINE=1 python benchmarks/bench_export.py --model runs/b77 \
        --exported runs/b77-int8 runs/b77-int8-p2 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from tuneforge.evaluation.provenance import run_header

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "banking77" / "converted" / "test.csv"


def timed_calls(fn, texts: list[str], batch: int, seconds: float) -> dict:
    """Call `fn` on consecutive batches until `seconds` pass; throughput and latency per call."""
    fn(texts[:batch])  # warm-up (first-call allocations, lazy init)
    latencies, done, i = [], 0, 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        chunk = texts[i : i + batch] or texts[:batch]
        i = (i + batch) % len(texts)
        t = time.perf_counter()
        fn(chunk)
        latencies.append(time.perf_counter() - t)
        done += len(chunk)
    total = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {
        "batch": batch,
        "texts_per_second": round(done / total, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "calls": len(latencies),
    }


def bulk(fn, texts: list[str], batch: int, n: int) -> dict:
    """Throughput over `n` texts in one call: every engine sorts them by length into batches."""
    fn(texts[:batch], batch_size=batch)
    start = time.perf_counter()
    fn(texts[:n], batch_size=batch)
    return {
        "batch": batch,
        "texts": n,
        "texts_per_second": round(n / (time.perf_counter() - start), 1),
    }


def engines(model_dir: Path, exported: list[Path]):
    import torch
    from sentence_transformers import SentenceTransformer

    import tuneforge

    torch_model = tuneforge.TunedModel.load(model_dir)
    st = SentenceTransformer(str(model_dir / "encoder"), device="cpu")
    st.max_seq_length = torch_model.config.max_length
    head = torch_model.runtime.classifier.head.eval()

    def st_predict(texts, batch_size=None):
        emb = st.encode(texts, batch_size=batch_size or len(texts), convert_to_tensor=True)
        with torch.inference_mode():
            return head(emb).argmax(1)

    yield "sentence-transformers fp32", st_predict, {}
    yield "transformers fp32 (tuneforge torch runtime)", torch_model.logits, {}
    for path in exported:
        model = tuneforge.TunedModel.load(path)
        yield f"onnx {path.name}", model.logits, getattr(model.config, "export", {})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True, help="PyTorch artifact (the source).")
    ap.add_argument("--exported", type=Path, nargs="+", required=True)
    ap.add_argument("--texts", type=Path, default=DATA)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=5.0, help="Per engine, batch size, round.")
    ap.add_argument("--bulk-texts", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3, help="Turns per engine; best one kept.")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/export_banking77.json")
    args = ap.parse_args()
    if not args.texts.exists():
        sys.exit(f"needs {args.texts} (the shared banking77 data)")
    import pandas as pd
    import torch

    torch.set_num_threads(args.threads)
    os.environ["TUNEFORGE_ORT_THREADS"] = str(args.threads)
    texts = pd.read_csv(args.texts)["text"].astype(str).tolist()
    header = run_header(threads=args.threads)  # before we load the machine
    rng = np.random.default_rng(0)
    texts = [texts[i] for i in rng.permutation(len(texts))]
    # Engines take turns for `rounds` rounds and each keeps its best round: on a shared machine
    # the load changes during the run, and turns keep every engine exposed to the same changes.
    loaded = list(engines(args.model, args.exported))
    rows = [{"engine": name, "export": info} for name, _, info in loaded]
    for _ in range(args.rounds):
        for row, (_, fn, _) in zip(rows, loaded, strict=True):
            for key, run in (
                ("batch_1", lambda f: timed_calls(f, texts, 1, args.seconds)),
                ("batch_32", lambda f: timed_calls(f, texts, 32, args.seconds)),
                ("bulk_sorted_32", lambda f: bulk(f, texts, 32, args.bulk_texts)),
            ):
                result = run(fn)
                if key not in row or result["texts_per_second"] > row[key]["texts_per_second"]:
                    row[key] = result
            print(json.dumps({k: v for k, v in row.items() if k != "export"}), flush=True)
    base = rows[0]
    for row in rows:
        row["speedup_vs_sentence_transformers"] = {
            f"batch_{b}": round(
                row[f"batch_{b}"]["texts_per_second"] / base[f"batch_{b}"]["texts_per_second"], 2
            )
            for b in (1, 32)
        } | {
            "bulk_sorted_32": round(
                row["bulk_sorted_32"]["texts_per_second"]
                / base["bulk_sorted_32"]["texts_per_second"],
                2,
            )
        }
    result = {
        "benchmark": "export: ONNX/int8/pruned vs PyTorch fp32, banking77 test texts",
        **header,
        "model": str(args.model),
        "texts": str(args.texts),
        "results": rows,
    }
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
