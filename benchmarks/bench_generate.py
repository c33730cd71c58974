"""Generation speed: tuneforge's `generate` (fp32, bf16, int8) against plain `model.generate` fp32
on a fine-tuned SmolLM2-135M-Instruct, at batch 1 and 8, with the support-answers exact match of
each (bench_chat's task: banking77 test questions -> the demo's approved answers).

The model is a `partial` (top 4 layers) fine-tune on bench_chat's training questions, or the run
directory given with `--model`. Greedy decoding everywhere, the same prompts, `max_new_tokens`
the same; tokens/s counts each row's tokens up to and including its end-of-turn token. Variants
run in turns (`--rounds`), so a change in the machine's load hits all of them alike; the figure
per variant is its median over rounds, and the ratio is against the baseline of the same round.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=2 python benchmarks/bench_generate.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_chat

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "generate.json"


def trained_model(args, paths: dict) -> object:
    import tuneforge

    if args.model:
        return tuneforge.TunedModel.load(args.model)
    return tuneforge.tune(
        paths["train"], val_data=paths["val"], task="chat", base="smollm2", method="partial",
        method_options={"top_layers": 4}, epochs=2, lr=args.lr, seed=42, early_stopping=0,
        batch_size=8, max_length=256, progress=False,
    )  # fmt: skip


def plain_generate(lm, tok, prompts: list, batch: int, max_new: int) -> list[str]:
    """The baseline as the transformers docs show it: left-padded batches, `generate`."""
    import torch

    tok.padding_side = "left"
    texts = [
        tok.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts
    ]
    out = []
    for at in range(0, len(texts), batch):
        enc = tok(texts[at : at + batch], return_tensors="pt", padding=True,
                  add_special_tokens=False)  # fmt: skip
        with torch.no_grad():
            ids = lm.generate(**enc, max_new_tokens=max_new, do_sample=False,
                              pad_token_id=tok.pad_token_id)  # fmt: skip
        out += [ids[i, enc["input_ids"].shape[1] :].tolist() for i in range(len(ids))]
    return out


def count_and_decode(tok, rows: list[list[int]], eos: set[int]) -> tuple[int, list[str]]:
    tokens, texts = 0, []
    for ids in rows:
        end = next((i for i, t in enumerate(ids) if t in eos), None)
        kept = ids if end is None else ids[:end]
        tokens += len(ids) if end is None else end + 1
        texts.append(tok.decode(kept, skip_special_tokens=True).strip())
    return tokens, texts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None, help="a chat run directory (else one is trained)")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=["plain", "fp32", "bf16", "int8"])
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    import torch

    from tuneforge.evaluation.generative import exact_match, rouge_l
    from tuneforge.evaluation.provenance import run_header, save_runs
    from tuneforge.generation import GenerationOptions, generate
    from tuneforge.generation.constrained import end_token_ids
    from tuneforge.tasks.chat import hf_model_of

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    record = run_header()
    per_intent = {"train": 2, "val": 1, "test": 1}
    paths = bench_chat.build_data(Path(tempfile.mkdtemp(prefix="bench-gen-")), per_intent, 42)
    t0 = time.time()
    model = trained_model(args, paths)
    train_seconds = round(time.time() - t0, 1)
    lm, tok = hf_model_of(model), model.tokenizer
    rows = bench_chat.read_rows(paths["test"])[: args.prompts]
    prompts = [r["messages"][:-1] for r in rows]
    expected = [r["messages"][-1]["content"] for r in rows]
    eos = set(end_token_ids(lm, tok))
    found: dict[str, dict] = {}
    for rnd in range(args.rounds):
        for batch in (1, 8):
            for variant in args.variants:
                t = time.time()
                if variant == "plain":
                    ids = plain_generate(lm, tok, prompts, batch, args.max_new_tokens)
                    tokens, texts = count_and_decode(tok, ids, eos)
                else:
                    opts = GenerationOptions.build(max_new_tokens=args.max_new_tokens,
                                                   precision=variant)  # fmt: skip
                    if rnd == 0 and batch == 1:  # the one-off conversion is not decoding time
                        generate(lm, tok, prompts[:1], opts)
                        t = time.time()
                    out = generate(lm, tok, prompts, opts, batch_size=batch)
                    tokens, texts = sum(g.tokens for g in out), [g.text for g in out]
                seconds = time.time() - t
                key = f"{variant}@{batch}"
                entry = found.setdefault(key, {"variant": variant, "batch": batch, "rounds": []})
                entry["rounds"].append({"tokens_per_second": round(tokens / seconds, 2),
                                        "seconds": round(seconds, 2), "tokens": tokens,
                                        "load": round(os.getloadavg()[0], 2)})  # fmt: skip
                entry["exact_match"] = round(
                    sum(exact_match(g, e) for g, e in zip(texts, expected, strict=True))
                    / len(rows), 4)  # fmt: skip
                entry["rouge_l"] = round(
                    sum(rouge_l(g, e) for g, e in zip(texts, expected, strict=True)) / len(rows), 4
                )
                print(key, entry["rounds"][-1], entry["exact_match"], flush=True)
    for entry in found.values():
        entry["tokens_per_second"] = statistics.median(
            r["tokens_per_second"] for r in entry["rounds"])  # fmt: skip
        base = found[f"plain@{entry['batch']}"]["rounds"]
        ratios = [r["tokens_per_second"] / b["tokens_per_second"]
                  for r, b in zip(entry["rounds"], base, strict=True)]  # fmt: skip
        entry["speedup_vs_plain"] = round(statistics.median(ratios), 2)
        entry["exact_match_minus_plain"] = round(
            entry["exact_match"] - found[f"plain@{entry['batch']}"]["exact_match"], 4
        )
    record["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    run = {"task": "support answers (bench_chat)", "prompts": len(rows),
           "max_new_tokens": args.max_new_tokens, "model": args.model or "partial4 fine-tune",
           "train_seconds": train_seconds, **record, "results": list(found.values())}  # fmt: skip
    save_runs(Path(args.out), [run])
    for entry in found.values():
        print(entry["variant"], entry["batch"], entry["tokens_per_second"],
              entry["speedup_vs_plain"], entry["exact_match"])  # fmt: skip


if __name__ == "__main__":
    main()
