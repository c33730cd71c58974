"""Chat fine-tuning benchmark: support answers with SmolLM2-135M-Instruct, tuneforge against TRL's
`SFTTrainer` on the same model, data, LoRA config, epochs and max length, in one run here.

Task: a banking77 question -> the assistant demo's approved answer of its intent (the reply the
assistant would give: its template filled from the question's slots, as `assist` does). Train
and validation questions come from the demo's intents file (disjoint, stratified per intent);
test questions from banking77's public test split (stratified, seeded). To fit a session on a
2-core CPU the sets are subsampled per intent (`--train-per-intent` ...): say so with figures.

Honest by construction: every choice (the partial method's learning rate, epochs, the restored
checkpoint) is made on validation loss; the test split is generated once per final model and
never selected on; `--explore` never reads it.

Per run, in its own subprocess (peak memory = the child's `ru_maxrss`): the validation-loss curve
(seconds from the call, set-up included, evaluations excluded), the final validation loss and
perplexity by one function for every run (loss per assistant token, the EOS included), training
tokens/s, and on test greedy generations (one generation function for every run): exact match of
the approved answer, ROUGE-L, and intent accuracy (the intent whose approved answer for that
question is closest by ROUGE-L to the generation).

    pip install -e ".[bench]"   # TRL, the baseline
    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=2 python benchmarks/bench_chat.py \
        --plans trl lora partial4-lr1e-3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "src" / "tuneforge" / "apps" / "assist" / "demo"
BANKING_TEST = ROOT.parent / "shared" / "data" / "banking77" / "converted" / "test.csv"
OUT = ROOT / "benchmarks" / "results" / "chat_support.json"
TRL = "trl"
LORA = {"r": 16, "alpha": 32, "dropout": 0.05}  # tuneforge's lora defaults, given to TRL too

# name: (method, epochs, lr, method options, task options, extra TrainConfig fields)
PLANS = {
    "lora": ("lora", 2, 5e-4, LORA, {}, {}),
    "lora-packed": ("lora", 2, 5e-4, LORA, {"packing": True}, {}),
    "partial4": ("partial", 2, 2e-4, {"top_layers": 4}, {}, {}),
    "partial4-lr5e-4": ("partial", 2, 5e-4, {"top_layers": 4}, {}, {}),
    "partial4-lr1e-3": ("partial", 2, 1e-3, {"top_layers": 4}, {}, {}),
    "partial4-packed": ("partial", 2, 2e-4, {"top_layers": 4}, {"packing": True}, {}),
    "partial4-lr2e-3": ("partial", 2, 2e-3, {"top_layers": 4}, {}, {}),
    "partial4-lr1e-3-packed": ("partial", 2, 1e-3, {"top_layers": 4}, {"packing": True}, {}),
    # quality with more data and epochs (no TRL run at this size: it would take ~30 min)
    "partial4-lr1e-3-4ep": ("partial", 4, 1e-3, {"top_layers": 4}, {}, {}),
}
COMMON = {"batch_size": 8, "max_length": 256, "warmup_ratio": 0.06, "weight_decay": 0.01}


# ---- data -----------------------------------------------------------------------------------
def build_data(
    out: Path, per_intent: dict[str, int], seed: int, intents: int = 0
) -> dict[str, Path]:
    """train/val (demo questions) and test (banking77 test) as messages JSONL, stratified."""
    import pandas as pd

    from tuneforge.apps.assist.knowledge import load_answers
    from tuneforge.apps.assist.slots import extract_slots, fill

    answers = {k.lower(): v for k, v in load_answers(DEMO / "answers.yaml").items()}
    demo = pd.read_csv(DEMO / "intents.csv")
    demo["label"] = demo["label"].str.lower()
    test = pd.read_csv(BANKING_TEST)
    test["label"] = test["label"].str.lower()  # one intent is capitalized in banking77
    if intents:  # a smoke test: the first few intents only
        keep = sorted(demo["label"].unique())[:intents]
        demo, test = demo[demo["label"].isin(keep)], test[test["label"].isin(keep)]
    rng = np.random.default_rng(seed)
    picked = {"train": [], "val": [], "test": []}
    for intent, group in demo.groupby("label", sort=True):
        order = rng.permutation(len(group))
        n_train, n_val = per_intent["train"], per_intent["val"]
        picked["train"] += [(q, intent) for q in group["text"].iloc[order[:n_train]]]
        picked["val"] += [(q, intent) for q in group["text"].iloc[order[n_train : n_train + n_val]]]
    for intent, group in test.groupby("label", sort=True):
        order = rng.permutation(len(group))[: per_intent["test"]]
        picked["test"] += [(q, intent) for q in group["text"].iloc[order]]
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, rows in picked.items():
        path = paths[split] = out / f"{split}.jsonl"
        with path.open("w") as f:
            for question, intent in rows:
                reply = fill(answers[intent], extract_slots(question))[0]
                msgs = [{"role": "user", "content": question},
                        {"role": "assistant", "content": reply}]  # fmt: skip
                f.write(json.dumps({"messages": msgs, "intent": intent}) + "\n")
    return paths


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


# ---- one function each for every run: validation loss, test generations ---------------------
def validation_loss(lm, tokenizer, path: Path, max_length: int) -> dict:
    import torch

    from tuneforge.tasks.chat import CausalLM, next_token_loss
    from tuneforge.tasks.chat_data import IGNORE, load_chats, tokenize_chats

    model = CausalLM(lm).eval()
    rows = tokenize_chats(tokenizer, load_chats(path), max_length, "assistant", True)
    total, count = 0.0, 0
    with torch.no_grad():
        for row in rows:
            ids, labels = torch.tensor([row["input_ids"]]), torch.tensor([row["labels"]])
            hidden = model(ids, torch.ones_like(ids))
            total += float(next_token_loss(model, hidden, labels, reduction="sum"))
            count += int((labels[:, 1:] != IGNORE).sum())
    loss = total / count
    return {"val_loss": round(loss, 5), "val_perplexity": round(float(np.exp(loss)), 4)}


def test_scores(lm, tokenizer, path: Path) -> dict:
    from tuneforge.apps.assist.knowledge import load_answers
    from tuneforge.apps.assist.slots import extract_slots, fill
    from tuneforge.evaluation.generative import rouge_l, score_generations
    from tuneforge.generation import GenerationOptions, generate

    rows = read_rows(path)
    prompts = [r["messages"][:-1] for r in rows]
    expected = [r["messages"][-1]["content"] for r in rows]
    t0 = time.time()
    opts = GenerationOptions.build(max_new_tokens=80)
    generated = [g.text for g in generate(lm.eval(), tokenizer, prompts, opts, batch_size=8)]
    seconds = time.time() - t0
    scores = score_generations(generated, expected)
    answers = {k.lower(): v for k, v in load_answers(DEMO / "answers.yaml").items()}
    right = 0
    for row, text in zip(rows, generated, strict=True):
        slots = extract_slots(row["messages"][0]["content"])
        closest = max(answers, key=lambda i: rouge_l(text, fill(answers[i], slots)[0]))
        right += closest == row["intent"]
    worst = sorted(range(len(rows)), key=lambda i: scores.rows[i]["rouge_l"])[:3]
    return {
        "n": len(rows),
        "exact_match": round(scores.exact_match, 4),
        "rouge_l": round(scores.rouge_l, 4),
        "token_f1": round(scores.token_f1, 4),
        "intent_accuracy": round(right / len(rows), 4),
        "generation_seconds": round(seconds, 1),
        "examples": [
            {
                "question": prompts[i][0]["content"],
                "generated": generated[i],
                "expected": expected[i],
            }
            for i in worst
        ],
    }


def train_tokens(tokenizer, path: Path, max_length: int) -> int:
    from tuneforge.tasks.chat_data import load_chats, tokenize_chats

    rows = tokenize_chats(tokenizer, load_chats(path), max_length, "assistant", True)
    return sum(len(r["input_ids"]) for r in rows)


# ---- runs -----------------------------------------------------------------------------------
def run_tuneforge(spec: dict) -> dict:
    import tuneforge
    from tuneforge.tasks.chat import hf_model_of

    paths = {k: Path(v) for k, v in spec["paths"].items()}
    method, epochs, lr, options, task_options, config = PLANS[spec["plan"]]
    t0, first_step = time.time(), {}

    def on_step(state) -> None:
        first_step.setdefault("time", time.time())

    model = tuneforge.tune(
        paths["train"], val_data=paths["val"], task="chat", base="smollm2", method=method,
        epochs=epochs, lr=lr, seed=spec["seed"], early_stopping=0, eval_every=0.5,
        method_options=options, task_options=task_options, progress=False, on_step=on_step,
        **COMMON, **config,
    )  # fmt: skip
    wall = time.time() - t0
    evals = [e for e in model.log if "eval_loss" in e and "train_seconds" in e]
    setup = first_step["time"] - t0 - evals[0]["train_seconds"] / evals[0]["step"]
    curve = [{"epoch": e["epoch"], "val_loss": round(e["eval_loss"], 5),
              "train_seconds": e["train_seconds"],
              "seconds": round(setup + e["train_seconds"], 1)} for e in evals]  # fmt: skip
    lm, tok = hf_model_of(model), model.tokenizer
    tokens = train_tokens(tok, paths["train"], COMMON["max_length"]) * epochs
    res = {
        "curve": curve,
        "wall_seconds": round(wall, 1),
        "setup_seconds": round(setup, 1),
        "train_seconds": evals[-1]["train_seconds"],
        "tokens_per_second": round(tokens / evals[-1]["train_seconds"], 1),
        **validation_loss(lm, tok, paths["val"], COMMON["max_length"]),
        "method_details": model.config.method_details,
    }
    if not spec["explore"]:
        res["test"] = test_scores(lm, tok, paths["test"])
    return res


def run_trl(spec: dict) -> dict:
    """TRL's SFTTrainer as its docs show it for prompt-completion data (loss on the completion
    only, its default), fp32 on CPU (`bf16=False`: its default fails here), same LoRA config."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from tuneforge.models.smollm2 import smollm2_model_dir

    paths = {k: Path(v) for k, v in spec["paths"].items()}
    t0 = time.time()
    base = smollm2_model_dir()
    tok = AutoTokenizer.from_pretrained(str(base))
    lm = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    rows = read_rows(paths["train"])
    data = Dataset.from_list([{"prompt": r["messages"][:-1], "completion": r["messages"][-1:]}
                              for r in rows])  # fmt: skip
    epochs, lr = spec["epochs"], spec["lr"]
    args = SFTConfig(
        output_dir=tempfile.mkdtemp(prefix="bench-trl-"), num_train_epochs=epochs,
        per_device_train_batch_size=COMMON["batch_size"], learning_rate=lr,
        lr_scheduler_type="linear", warmup_steps=COMMON["warmup_ratio"],  # < 1: a ratio
        weight_decay=COMMON["weight_decay"], max_length=COMMON["max_length"], bf16=False,
        fp16=False, use_cpu=True, packing=False, eval_strategy="no", save_strategy="no",
        logging_steps=10, report_to=[], seed=spec["seed"], dataloader_num_workers=0,
    )  # fmt: skip
    peft_config = LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                             target_modules="all-linear", task_type="CAUSAL_LM")  # fmt: skip
    trainer = SFTTrainer(model=lm, args=args, train_dataset=data, processing_class=tok,
                         peft_config=peft_config)  # fmt: skip
    started = time.time()
    trainer.train()
    train_seconds = time.time() - started
    seconds = time.time() - t0  # set-up (load, tokenization) included, as for tuneforge
    merged = trainer.model.merge_and_unload().eval()
    tokens = train_tokens(tok, paths["train"], COMMON["max_length"]) * epochs
    res = {
        "curve": [],
        "wall_seconds": round(seconds, 1),
        "setup_seconds": round(started - t0, 1),
        "train_seconds": round(train_seconds, 1),
        "seconds_to_final": round(seconds, 1),
        "tokens_per_second": round(tokens / train_seconds, 1),
        "trl_log": [h for h in trainer.state.log_history if "loss" in h][-3:],
        **validation_loss(merged, tok, paths["val"], COMMON["max_length"]),
    }
    if not spec["explore"]:
        res["test"] = test_scores(merged, tok, paths["test"])
    return res


def child(spec_json: str, result_path: str) -> None:
    import resource

    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    spec = json.loads(spec_json)
    res = run_trl(spec) if spec["plan"] == TRL else run_tuneforge(spec)
    res["peak_rss_mb_self"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    Path(result_path).write_text(json.dumps(res))


def run_in_subprocess(spec: dict) -> dict:
    result = Path(tempfile.mkstemp(prefix="bench-chat-", suffix=".json")[1])
    proc = subprocess.Popen([sys.executable, __file__, "--child", json.dumps(spec), str(result)])
    _, status, usage = os.wait4(proc.pid, 0)  # the child's own rusage
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"run failed: {spec['plan']}")
    res = json.loads(result.read_text())
    res["peak_rss_mb"] = round(usage.ru_maxrss / 1024, 1)
    return res


def add_ratios(runs: list[dict]) -> None:
    """Against the TRL run of the same data: TRL's seconds to its final validation loss over
    tuneforge's seconds to first reach it (None if never), and the loss difference."""
    by_data = defaultdict(list)
    for run in runs:
        key = json.dumps([run["per_intent"], run.get("intents"), run["seed"]], sort_keys=True)
        by_data[key].append(run)
    for group in by_data.values():
        trl = next((r for r in reversed(group) if r["plan"] == TRL), None)
        if trl is None:
            continue
        target = trl["val_loss"]
        for run in group:
            if run["plan"] == TRL:
                continue
            hit = next((c["seconds"] for c in run["curve"] if c["val_loss"] <= target), None)
            run["trl_val_loss"] = target
            run["val_loss_minus_trl"] = round(run["val_loss"] - target, 5)
            run["seconds_to_trl_val_loss"] = hit
            run["speedup_to_trl_val_loss"] = (
                round(trl["seconds_to_final"] / hit, 2) if hit else None
            )
            run["peak_rss_vs_trl"] = round(run["peak_rss_mb"] / trl["peak_rss_mb"], 3)


def print_table(runs: list[dict]) -> None:
    cols = ("plan", "val_loss", "wall_seconds", "tokens_per_second", "speedup_to_trl_val_loss",
            "peak_rss_mb", "exact_match", "rouge_l", "intent_accuracy")  # fmt: skip
    print(" | ".join(cols))
    for r in runs:
        test = r.get("test") or {}
        print(" | ".join(str(r.get(c, test.get(c))) for c in cols))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--plans", nargs="+", default=[TRL, "lora", "partial4"])
    parser.add_argument("--train-per-intent", type=int, default=4)
    parser.add_argument("--val-per-intent", type=int, default=1)
    parser.add_argument("--test-per-intent", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--trl-lr", type=float, default=5e-4)
    parser.add_argument("--explore", action="store_true", help="validation only")
    parser.add_argument("--intents", type=int, default=0, help="smoke test: first N intents")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    if args.child:
        return child(*args.child)
    if not BANKING_TEST.exists():
        sys.exit(f"needs {BANKING_TEST} (../shared/data)")
    import torch  # noqa: F401  (loaded before the header, which records its threads)

    from tuneforge.evaluation.provenance import run_header, save_runs
    from tuneforge.paths import write_text_atomically

    per_intent = {"train": args.train_per_intent, "val": args.val_per_intent,
                  "test": args.test_per_intent}  # fmt: skip
    data_dir = Path(tempfile.mkdtemp(prefix="bench-chat-data-"))
    paths = build_data(data_dir, per_intent, args.seed, args.intents)
    sizes = {k: len(read_rows(p)) for k, p in paths.items()}
    print("data:", sizes, flush=True)
    runs = []
    for plan in args.plans:
        spec = {"plan": plan, "seed": args.seed, "explore": args.explore,
                "paths": {k: str(v) for k, v in paths.items()}}  # fmt: skip
        if plan == TRL:
            spec.update(epochs=2, lr=args.trl_lr)
        else:
            method, epochs, lr, options, task_options, _ = PLANS[plan]
            spec.update(method=method, epochs=epochs, lr=lr, options=options,
                        task_options=task_options)  # fmt: skip
        print(f"== {plan}", flush=True)
        record = run_header()
        res = run_in_subprocess(spec)
        record["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
        spec.pop("paths")
        run = {"dataset": "banking77 support answers", "per_intent": per_intent, "sizes": sizes,
               "intents": args.intents or 77,
               "model": "SmolLM2-135M-Instruct (dequantized Q4_1)",
               **record, **spec, **res}  # fmt: skip
        print(json.dumps({k: v for k, v in run.items() if k != "curve"}), flush=True)
        print("curve:", run["curve"], flush=True)
        runs.append(run)
        save_runs(Path(args.out), [run])
    everything = json.loads(Path(args.out).read_text())
    add_ratios(everything["runs"])
    write_text_atomically(Path(args.out), json.dumps(everything, indent=1) + "\n")
    print_table(everything["runs"])


if __name__ == "__main__":
    main()
