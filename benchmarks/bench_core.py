"""Core benchmark: every method on a train → test task, against a plain Hugging Face `Trainer`
full fine-tune of the same base model, in one run on this machine.

Honest by construction: every choice (head's C, the checkpoint a method restores, the Trainer's
best epoch) is made on a validation split taken from the training file (tuneforge's default:
stratified 10%, seed 42; the Trainer baseline gets the very same rows). The test file is scored
at each evaluation for the learning curve (`monitor_data`, never selected on) and at the end for
the reported figure. Per run: test accuracy and macro-F1, the curve, wall time, examples/s and
the time to first reach the target test accuracy (evaluation time excluded, caching included).
The embedding cache starts empty in every run of this script, so `head` is timed cold.

    HF_HUB_OFFLINE=1 python benchmarks/bench_core.py --methods head partial lora trainer
    HF_HUB_OFFLINE=1 python benchmarks/bench_core.py --dataset financial_phrasebank \
        --methods head partial --out benchmarks/results/core_fin_sentiment_allagree.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from tuneforge.evaluation.provenance import run_header, save_runs

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
TARGET = 0.93
VAL_FRACTION, VAL_SEED = 0.1, 42  # tuneforge's defaults: the split `tune` takes from train

# name: (method, epochs, method options, lr)
PLANS = {
    "head": ("head", 1, {}, None),  # C on validation, then refit on all training rows
    "head-norefit": ("head", 1, {"refit": False}, None),  # fitted on the 90% only
    "head-nocache": ("head", 1, {"cache": False}, None),  # embeddings never written to disk
    "partial": ("partial", 6, {"top_layers": 2}, 3e-4),
    "partial3": ("partial", 5, {"top_layers": 3}, 2e-4),
    "lora": ("lora", 3, {}, 1e-3),
    "full": ("full", 3, {}, 1e-4),
}


def run_method(name: str, train: Path, test: Path, plan: tuple) -> dict:
    import tuneforge

    method, epochs, options, lr = plan
    t0 = time.time()
    # early stopping off: every epoch runs; the loop restores its best-on-validation weights
    model = tuneforge.tune(
        train,
        test,
        monitor_data=test,
        method=method,
        epochs=epochs,
        early_stopping=0,
        method_options=options,
        lr=lr,
        progress=False,
    )
    wall = time.time() - t0
    curve = [
        {
            "epoch": e["epoch"],
            "validation_accuracy": e["accuracy"],
            "test_accuracy": e["monitor_accuracy"],
            "test_macro_f1": e["monitor_macro_f1"],
            "seconds": round(e["wall_time"] - t0 - e["eval_seconds_before"], 1),
        }
        for e in model.log
        if e.get("eval")
    ]
    final = model.metrics["eval"]
    extra = {"method_details": model.config.method_details}
    return _summary(name, curve, final, wall, plan, model.config.data.get("rows", 0), extra)


def _summary(name, curve, final, wall, plan, n_train, extra=None) -> dict:
    _, epochs, options, lr = plan
    hit = next((c["seconds"] for c in curve if c["test_accuracy"] >= TARGET), None)
    if not curve and final["accuracy"] >= TARGET:  # no curve (logistic regression): whole run
        hit = round(wall, 1)
    return {
        "method": name,
        "options": options,
        "lr": lr,
        "epochs": epochs,
        "selection": f"validation split of the training file ({VAL_FRACTION:.0%}, seed "
        f"{VAL_SEED}); test scored only for the curve and the final figure",
        "test_accuracy": round(final["accuracy"], 4),
        "test_macro_f1": round(final["macro_f1"], 4),
        "wall_seconds": round(wall, 1),
        "examples_per_second": round(n_train * epochs / wall, 1),
        f"seconds_to_{round(TARGET * 100)}": hit,
        "curve": curve,
        **(extra or {}),
    }


def run_trainer_baseline(train: Path, test: Path, epochs: int, lr: float) -> dict:
    """Plain transformers Trainer: AutoModelForSequenceClassification, dynamic padding; the best
    epoch on the same validation rows is restored (load_best_model_at_end), as ours is."""
    import numpy as np
    from datasets import Dataset
    from sklearn.metrics import accuracy_score, f1_score
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from tuneforge.data import load_data, stratified_split
    from tuneforge.models.registry import resolve_base

    path = str(resolve_base("minilm").path)
    full = load_data(train)
    fit, val = stratified_split(full, VAL_FRACTION, VAL_SEED)
    te = load_data(test)
    index = {lab: i for i, lab in enumerate(full.label_names)}
    tok = AutoTokenizer.from_pretrained(path)

    def encode(ds):
        rows = {"text": ds.texts, "label": [index[x] for x in ds.labels]}
        return Dataset.from_dict(rows).map(
            lambda b: tok(b["text"], truncation=True, max_length=128), batched=True
        )

    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=len(index))
    curve: list[dict] = []
    clock = {"t0": time.time(), "eval": 0.0, "eval_start": 0.0, "val": None}

    class Clock(TrainerCallback):
        def on_epoch_end(self, args, state, control, **kw):
            clock["eval_start"] = time.time()

        def on_evaluate(self, args, state, control, metrics=None, **kw):
            if clock.get("done"):  # the final scoring below is no point of the curve
                return
            if "eval_val_accuracy" in metrics:  # the validation pass comes first
                clock["val"] = metrics["eval_val_accuracy"]
                return
            curve.append(
                {
                    "epoch": round(state.epoch, 3),
                    "validation_accuracy": clock["val"],
                    "test_accuracy": metrics["eval_test_accuracy"],
                    "test_macro_f1": metrics["eval_test_macro_f1"],
                    "seconds": round(clock["eval_start"] - clock["t0"] - clock["eval"], 1),
                }
            )
            clock["eval"] += time.time() - clock["eval_start"]

    def metrics(p):
        pred = np.argmax(p.predictions, axis=1)
        return {
            "accuracy": accuracy_score(p.label_ids, pred),
            "macro_f1": f1_score(p.label_ids, pred, average="macro"),
        }

    out_dir = tempfile.mkdtemp(prefix="bench-trainer-")
    args = TrainingArguments(
        output_dir=out_dir,
        per_device_train_batch_size=32,
        per_device_eval_batch_size=64,
        learning_rate=lr,
        warmup_steps=int(0.06 * epochs * -(-len(fit) // 32)),
        num_train_epochs=epochs,
        weight_decay=0.01,
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=1,
        load_best_model_at_end=True,
        metric_for_best_model="val_accuracy",
        logging_steps=50,
        report_to=[],
        seed=42,
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=encode(fit),
        eval_dataset={"val": encode(val), "test": encode(te)},
        data_collator=DataCollatorWithPadding(tok),
        compute_metrics=metrics,
        callbacks=[Clock()],
    )
    trainer.train()
    wall, clock["done"] = time.time() - clock["t0"], True
    final = trainer.evaluate({"test": encode(te)})
    scores = {"accuracy": final["eval_test_accuracy"], "macro_f1": final["eval_test_macro_f1"]}
    plan = ("hf-trainer-full", epochs, {}, lr)
    return _summary(f"hf-trainer-full (lr {lr})", curve, scores, wall, plan, len(fit))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--methods", nargs="+", default=["head", "partial", "lora", "trainer"])
    parser.add_argument("--dataset", default="banking77")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "core.json"))
    args = parser.parse_args()
    folder = DATA / args.dataset / "converted"
    train, test = (
        (folder / "train.csv", folder / "test.csv")
        if args.dataset == "banking77"
        else (folder / "allagree_train.csv", folder / "allagree_test.csv")
    )
    if not train.exists():
        sys.exit(f"needs {train} (../shared/data)")
    os.environ["TUNEFORGE_CACHE"] = tempfile.mkdtemp(prefix="bench-core-cache-")  # cold
    import torch  # noqa: F401  (loaded before the header, which records its threads)

    for name in args.methods:
        print(f"== {name}", flush=True)
        record = run_header()
        if name == "trainer":
            res = run_trainer_baseline(train, test, epochs=3, lr=2e-4)
        else:
            res = run_method(name, train, test, PLANS[name])
        res = {"dataset": args.dataset, **record, **res}
        print(json.dumps({k: v for k, v in res.items() if k != "curve"}), flush=True)
        print("curve:", res["curve"], flush=True)
        save_runs(Path(args.out), [res])


if __name__ == "__main__":
    main()
