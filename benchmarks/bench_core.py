"""Core benchmark (issue 3): every method on banking77 train → test, against a plain Hugging Face
`Trainer` full fine-tune of the same base model, in one run on this machine.

For each method: test accuracy and macro-F1 after each epoch, wall time, examples/s, and the
time to first reach 93% test accuracy (evaluation time excluded, caching time included).

    HF_HUB_OFFLINE=1 python benchmarks/bench_core.py --methods head partial lora trainer
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
TARGET = 0.93


def run_method(
    name: str, train: Path, test: Path, epochs: float, options: dict, lr: float | None
) -> dict:
    import tuneforge

    t0 = time.time()
    # The test set is the per-epoch curve, early stopping off: the reported model is the last
    # epoch's, exactly like the Trainer baseline (no selection on test).
    model = tuneforge.tune(
        train,
        test,
        val_data=test,
        method=name,
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
            "accuracy": e["accuracy"],
            "macro_f1": e["macro_f1"],
            "seconds": round(e["wall_time"] - t0 - e["eval_seconds_before"], 1),
        }
        for e in model.log
        if e.get("eval")
    ]
    final = model.metrics["eval"]
    n_train = model.config.data.get("rows", 0)
    return _summary(
        name, curve, final["accuracy"], final["macro_f1"], wall, epochs, options, lr, n_train
    )


def _summary(name, curve, acc, f1, wall, epochs, options, lr, n_train) -> dict:
    hit = next((c["seconds"] for c in curve if c["accuracy"] >= TARGET), None)
    if not curve and acc >= TARGET:  # no per-epoch curve (logistic regression): the whole run
        hit = round(wall, 1)
    return {
        "method": name,
        "options": options,
        "lr": lr,
        "epochs": epochs,
        "test_accuracy": round(acc, 4),
        "test_macro_f1": round(f1, 4),
        "wall_seconds": round(wall, 1),
        "examples_per_second": round(n_train * epochs / wall, 1),
        "seconds_to_93": hit,
        "curve": curve,
    }


def run_trainer_baseline(train: Path, test: Path, epochs: int, lr: float) -> dict:
    """Plain transformers Trainer: AutoModelForSequenceClassification, dynamic padding."""
    import numpy as np
    import pandas as pd
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

    from tuneforge.models.registry import resolve_base

    path = str(resolve_base("minilm").path)
    tr, te = pd.read_csv(train), pd.read_csv(test)
    labels = sorted(tr.label.unique())
    index = {lab: i for i, lab in enumerate(labels)}
    tok = AutoTokenizer.from_pretrained(path)

    def encode(df):
        ds = Dataset.from_dict({"text": df.text.tolist(), "label": [index[x] for x in df.label]})
        return ds.map(lambda b: tok(b["text"], truncation=True, max_length=128), batched=True)

    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=len(labels))
    curve: list[dict] = []
    clock = {"t0": time.time(), "eval": 0.0, "eval_start": 0.0}

    class Clock(TrainerCallback):
        def on_epoch_end(self, args, state, control, **kw):
            clock["eval_start"] = time.time()

        def on_evaluate(self, args, state, control, metrics=None, **kw):
            curve.append(
                {
                    "epoch": round(state.epoch, 3),
                    "accuracy": metrics["eval_accuracy"],
                    "macro_f1": metrics["eval_macro_f1"],
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

    args = TrainingArguments(
        output_dir="/tmp/bench-trainer",
        per_device_train_batch_size=32,
        per_device_eval_batch_size=64,
        learning_rate=lr,
        warmup_steps=int(0.06 * epochs * -(-len(tr) // 32)),
        num_train_epochs=epochs,
        weight_decay=0.01,
        eval_strategy="epoch",
        save_strategy="no",
        logging_steps=50,
        report_to=[],
        seed=42,
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=encode(tr),
        eval_dataset=encode(te),
        data_collator=DataCollatorWithPadding(tok),
        compute_metrics=metrics,
        callbacks=[Clock()],
    )
    trainer.train()
    wall = time.time() - clock["t0"]
    last = curve[-1]
    return _summary(
        f"hf-trainer-full (lr {lr})",
        curve,
        last["accuracy"],
        last["macro_f1"],
        wall,
        epochs,
        {},
        lr,
        len(tr),
    )


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
    plans = {
        "head": ("head", 1, {}, None),
        "head-cold": ("head", 1, {"cache": False}, None),  # embeddings computed, not cached
        "partial": ("partial", 6, {"top_layers": 2}, 3e-4),
        "partial3": ("partial", 5, {"top_layers": 3}, 2e-4),
        "lora": ("lora", 3, {}, 1e-3),
        "full": ("full", 3, {}, 1e-4),
    }
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else {"runs": []}
    for name in args.methods:
        print(f"== {name}", flush=True)
        if name == "trainer":
            res = run_trainer_baseline(train, test, epochs=3, lr=2e-4)
        else:
            method, epochs, options, lr = plans[name]
            res = run_method(method, train, test, epochs, options, lr)
        res.update(
            dataset=args.dataset,
            date=datetime.now(UTC).isoformat(timespec="seconds"),
            command=" ".join(sys.argv),
            machine=f"{platform.node()} {platform.machine()} {platform.processor()} cpus=2",
            python=platform.python_version(),
        )
        print(json.dumps({k: v for k, v in res.items() if k != "curve"}), flush=True)
        print("curve:", res["curve"], flush=True)
        results["runs"].append(res)
        out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
