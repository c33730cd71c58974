"""Extraction benchmark: SkillSpan job-posting sentences -> `{"skills": [...], "knowledge": [...]}`
by a fine-tuned SmolLM2-135M-Instruct, beside tuneforge's token-classification taggers trained on
the same sentences, in one run here.

Data (seeded samples, to fit a session on a 2-core CPU): `--train` sentences of SkillSpan's
train split, `--val` of its dev split (every choice: the restored checkpoint), `--test` of its
test split, scored once. The chat model answers with JSON constrained to the schema below
(llguidance), and unconstrained on the first `--unconstrained` test rows (the JSON validity
figure). Span F1 is one function for both models (`evaluation/generative.json_scores`: per
field, spans as multisets of normalized strings; micro over both fields), so the tagger's spans
are turned into the same JSON first. The taggers are MiniLM `partial` top 3 + CRF (the tasks
issue's recipe), one per layer, as in bench_tokens.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=2 python benchmarks/bench_chat_extract.py
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "skillspan" / "json"
OUT = ROOT / "benchmarks" / "results" / "chat_extract.json"
INSTRUCTION = (
    "Extract the skills and the knowledge named in this job-posting sentence. Answer with JSON: "
    '{"skills": [...], "knowledge": [...]}, each span copied word for word.\n\n'
)
SCHEMA = {
    "type": "object",
    "properties": {
        "skills": {"type": "array", "items": {"type": "string"}},
        "knowledge": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["skills", "knowledge"],
    "additionalProperties": False,
}
LAYERS = {"skills": "tags_skill", "knowledge": "tags_knowledge"}


def read_split(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / f"{name}.json").read_text().splitlines() if line]


def spans(words: list[str], tags: list[str]) -> list[str]:
    """Span texts of BIO tags, leniently (an I- that starts a span reads as B-, as tuneforge's
    decoding does)."""
    out, current = [], []
    for word, tag in zip(words, tags, strict=True):
        if tag.startswith("B") or (tag.startswith("I") and not current):
            if current:
                out.append(" ".join(current))
            current = [word]
        elif tag.startswith("I"):
            current.append(word)
        else:
            if current:
                out.append(" ".join(current))
            current = []
    if current:
        out.append(" ".join(current))
    return out


def target(row: dict) -> dict:
    return {key: spans(row["tokens"], row[col]) for key, col in LAYERS.items()}


def sample(rows: list[dict], n: int, seed: int) -> list[dict]:
    order = np.random.default_rng(seed).permutation(len(rows))[:n]
    return [rows[i] for i in sorted(order)]


def write_chats(rows: list[dict], path: Path) -> Path:
    with path.open("w") as f:
        for row in rows:
            msgs = [{"role": "user", "content": INSTRUCTION + " ".join(row["tokens"])},
                    {"role": "assistant", "content": json.dumps(target(row))}]  # fmt: skip
            f.write(json.dumps({"messages": msgs}) + "\n")
    return path


def write_tags(rows: list[dict], path: Path) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def score(generated: list[str], rows: list[dict]) -> dict:
    from tuneforge.evaluation.generative import json_scores

    found = json_scores(generated, [target(r) for r in rows])
    return {
        "json_valid": round(found.valid, 4),
        "span_f1": round(found.f1, 4),
        "precision": round(found.precision, 4),
        "recall": round(found.recall, 4),
        "per_field": {
            k: {m: round(v, 4) for m, v in s.items()} for k, s in found.per_field.items()
        },
    }


def run_chat(paths: dict, test_rows: list[dict], args) -> dict:
    import tuneforge
    from tuneforge.generation import GenerationOptions, generate
    from tuneforge.tasks.chat import hf_model_of

    t0 = time.time()
    model = tuneforge.tune(
        paths["train"], val_data=paths["val"], task="chat", base="smollm2", method=args.method,
        epochs=args.epochs, lr=args.lr, seed=args.seed, early_stopping=0, eval_every=0.5,
        method_options={"top_layers": args.top_layers} if args.method == "partial" else {},
        batch_size=8, max_length=512, progress=False,
        task_options={"truncate": True},  # a few "sentences" are whole postings (688 tokens)
    )  # fmt: skip
    train_wall = time.time() - t0
    curve = [{"epoch": e["epoch"], "val_loss": round(e["eval_loss"], 5)}
             for e in model.log if "eval_loss" in e and "train_seconds" in e]  # fmt: skip
    lm, tok = hf_model_of(model), model.tokenizer
    prompts = [
        [{"role": "user", "content": INSTRUCTION + " ".join(r["tokens"])}] for r in test_rows
    ]
    result = {"train_wall_seconds": round(train_wall, 1), "curve": curve}
    for name, opts, n in (
        ("constrained", GenerationOptions.build(max_new_tokens=160, json_schema=SCHEMA), None),
        ("unconstrained", GenerationOptions.build(max_new_tokens=160), args.unconstrained),
    ):
        t = time.time()
        rows = test_rows[:n]
        texts = [g.text for g in generate(lm, tok, prompts[:n], opts, batch_size=8)]
        pairs = list(zip(rows, texts, strict=True))[:5]
        examples = [{"sentence": " ".join(r["tokens"]), "generated": g, "expected": target(r)}
                    for r, g in pairs]  # fmt: skip
        seconds = round(time.time() - t, 1)
        result[name] = {**score(texts, rows), "n": len(rows), "generation_seconds": seconds,
                        "examples": examples}  # fmt: skip
    return result


def run_taggers(train_rows: list[dict], val_rows: list[dict], test_rows: list[dict], tmp: Path,
                seed: int) -> dict:  # fmt: skip
    import tuneforge

    found = {key: [] for key in LAYERS}
    t0 = time.time()
    for key, col in LAYERS.items():
        model = tuneforge.tune(
            write_tags(train_rows, tmp / "tags_train.jsonl"),
            val_data=write_tags(val_rows, tmp / "tags_val.jsonl"), task="token-classification",
            label_col=col, task_options={"repair_tags": True, "crf": True}, method="partial",
            method_options={"top_layers": 3}, base="minilm", epochs=6, lr=1e-3, seed=seed,
            early_stopping=0, label_smoothing=0.0, progress=False,
        )  # fmt: skip
        for pred in model.predict([r["tokens"] for r in test_rows]):
            found[key].append([e.text for e in pred.entities])
    generated = [json.dumps({k: found[k][i] for k in LAYERS}) for i in range(len(test_rows))]
    return {**score(generated, test_rows), "train_wall_seconds": round(time.time() - t0, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train", type=int, default=1000)
    parser.add_argument("--val", type=int, default=200)
    parser.add_argument("--test", type=int, default=500)
    parser.add_argument("--method", default="partial")
    parser.add_argument("--top-layers", type=int, default=4)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--skip-taggers", action="store_true")
    parser.add_argument("--unconstrained", type=int, default=100, help="test rows without schema")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    if not (DATA / "train.json").exists():
        sys.exit(f"needs {DATA} (../shared/data)")
    import torch

    from tuneforge.evaluation.provenance import run_header, save_runs

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    record = run_header()
    train = sample(read_split("train"), args.train, args.seed)
    val = sample(read_split("dev"), args.val, args.seed)
    test = sample(read_split("test"), args.test, args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="bench-extract-"))
    paths = {"train": write_chats(train, tmp / "train.jsonl"),
             "val": write_chats(val, tmp / "val.jsonl")}  # fmt: skip
    run = {"dataset": "skillspan -> JSON", "sizes": {"train": len(train), "val": len(val),
           "test": len(test)}, **record, "method": args.method, "lr": args.lr,
           "epochs": args.epochs, "top_layers": args.top_layers, "seed": args.seed}  # fmt: skip
    run["chat"] = run_chat(paths, test, args)
    print(json.dumps(run["chat"], indent=1), flush=True)
    if not args.skip_taggers:
        run["taggers"] = run_taggers(train, val, test, tmp, args.seed)
        print(json.dumps(run["taggers"], indent=1), flush=True)
    run["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    run["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    save_runs(Path(args.out), [run])


if __name__ == "__main__":
    main()
