"""Token-classification benchmark: SkillSpan (Zhang et al., NAACL 2022), the skill and the
knowledge layer as two separate models, against a plain Hugging Face `Trainer` tagger of the
same base model, in one run on this machine.

Honest by construction: every choice (the recipe's method, epochs and learning rate; the
checkpoint a run restores; the Trainer's best epoch) is made on SkillSpan's dev split; the public
test split is scored once, at the end of a run, and never selected on. `--explore` runs never
read the test split at all.

Each configuration runs in its own subprocess, so its peak memory is the child's `ru_maxrss`
(torch allocates outside Python's heap, where tracemalloc does not look). Per run: strict span
F1/P/R on test (overall and per type), the dev F1 curve, wall time, and the time to reach the
final dev F1 (training time, evaluations excluded, set-up and caching included).

The baseline is run_ner-style: AutoModelForTokenClassification + Trainer on the same local base
directory, the same epochs, learning rate, batch size, warmup and weight decay; the first
sub-token of a word carries its tag, -100 elsewhere; `load_best_model_at_end` on dev strict span
F1; its word-level first-sub-token predictions are scored with tuneforge's `evaluate_spans`
(with tuneforge's decoding: an I- that starts a span reads as B-; the raw figure is kept too).

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python benchmarks/bench_tokens.py --explore \
        --plans partial2 full lora --out /tmp/tokens_explore.json
    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python benchmarks/bench_tokens.py \
        --plans full trainer --layers skill knowledge --seeds 42
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "skillspan" / "json"
# Green et al. (LREC 2022): job-ad sentences, test only; its Skill type against SkillSpan's skill
GREEN = ROOT.parent / "shared" / "data" / "green_job_entities" / "df_testset.csv"
OUT = ROOT / "benchmarks" / "results" / "tokens.json"
# BERT-base level: a third-party MaChAmp reproduction of Zhang et al. (2022), 5 seeds
TARGETS = {"skill": 0.495, "knowledge": 0.639}
MINUTES_PER_MODEL = 10

# name: (method, epochs, lr, method options, extra TrainConfig fields)
PLANS = {
    "partial2": ("partial", 6, 5e-4, {"top_layers": 2}, {}),
    "partial2-ls0": ("partial", 6, 5e-4, {"top_layers": 2}, {"label_smoothing": 0.0}),
    "partial2-lr1e-3-ls0": ("partial", 6, 1e-3, {"top_layers": 2}, {"label_smoothing": 0.0}),
    "partial2-lr1e-3": ("partial", 6, 1e-3, {"top_layers": 2}, {}),
    "partial3-lr1e-3-ls0": ("partial", 6, 1e-3, {"top_layers": 3}, {"label_smoothing": 0.0}),
    # mpnet: partial3 at 1e-3 stayed at dev F1 0 for 6 epochs (collapsed to O); a 5x smaller step
    "partial3-lr2e-4-ls0": ("partial", 6, 2e-4, {"top_layers": 3}, {"label_smoothing": 0.0}),
    "partial4-lr3e-4-ls0": ("partial", 5, 3e-4, {"top_layers": 4}, {"label_smoothing": 0.0}),
    "full-lr2e-4-ls0": ("full", 6, 2e-4, {}, {"label_smoothing": 0.0}),
    "full-lr3e-4-ls0": ("full", 6, 3e-4, {}, {"label_smoothing": 0.0}),
    "full-3ep-lr2e-4-ls0": ("full", 3, 2e-4, {}, {"label_smoothing": 0.0}),
    "full-3ep-lr2e-4": ("full", 3, 2e-4, {}, {}),
    "lora-ls0": ("lora", 6, 1e-3, {}, {"label_smoothing": 0.0}),
    "partial3-lr1e-3-ls0-crf": ("partial", 6, 1e-3, {"top_layers": 3},
                                {"label_smoothing": 0.0, "task_options": {"crf": True}}),
}  # fmt: skip
TRAINER = "trainer"  # the HF baseline: takes epochs/lr of --baseline-of


def data_paths(layer: str) -> dict[str, Path]:
    return {s: DATA / f"{s}.json" for s in ("train", "dev", "test")}


# ---- one configuration (runs in a subprocess) ---------------------------------------------------
def run_tuneforge(spec: dict) -> dict:
    import tuneforge

    paths = data_paths(spec["layer"])
    config = dict(spec["config"])
    task_options = {"repair_tags": True, **config.pop("task_options", {})}
    t0, first_step = time.time(), {}

    def on_step(state) -> None:
        first_step.setdefault("time", time.time())

    model = tuneforge.tune(
        paths["train"],
        None if spec["explore"] else paths["test"],
        val_data=paths["dev"],
        task="token-classification",
        label_col=f"tags_{spec['layer']}",
        task_options=task_options,
        method=spec["method"],
        base=spec["base"],
        epochs=spec["epochs"],
        lr=spec["lr"],
        seed=spec["seed"],
        early_stopping=0,  # every epoch runs; the loop restores its best-on-dev weights
        method_options=spec["options"],
        progress=False,
        on_step=on_step,
        **config,
    )
    wall = time.time() - t0
    evals = [e for e in model.log if "f1" in e and "train_seconds" in e]
    # set-up before the loop's first step (model load, tokenization, partial's cache)
    setup = first_step["time"] - t0 - evals[0]["train_seconds"] / evals[0]["step"]
    curve = [
        {
            "epoch": e["epoch"],
            "dev_f1": round(e["f1"], 4),
            "dev_loss": round(e["eval_loss"], 4),
            "train_seconds": e["train_seconds"],
            # from the call to tune(): set-up and caching included, evaluations excluded
            "seconds": round(setup + e["train_seconds"], 1),
        }
        for e in evals
    ]
    final = model.metrics.get("eval") if not spec["explore"] else None
    transfer = None
    if spec["layer"] == "skill" and not spec["explore"] and GREEN.exists():
        transfer = green_job_entities(model)
    return {
        "curve": curve,
        "wall_seconds": round(wall, 1),
        "setup_seconds": round(setup, 1),
        "test": _span_scores(final),
        "green_job_entities": transfer,
        "method_details": model.config.method_details,
    }


def green_job_entities(model) -> dict:
    """The skill model applied as-is to Green et al.'s job-ad test set: strict span scores on
    its Skill type (its other types, Qualification, Experience, Occupation, Domain, read as O).
    The two sets' guidelines differ (Green's skills are often longer phrases), so a span that
    overlaps a gold span is counted too ("overlap": each gold span found by some overlapping
    prediction, each prediction overlapping some gold span)."""
    from tuneforge.evaluation.metrics import evaluate_spans
    from tuneforge.tasks.tags import read_spans
    from tuneforge.tasks.token_data import load_tokens

    ds = load_tokens(GREEN, "tag", True, None, True)
    gold = [[_as_skill(t) for t in tags] for tags in ds.tags]
    pred = [p.tags for p in model.predict([list(w) for w in ds.words], batch_size=64)]
    strict = _span_scores(evaluate_spans(gold, pred))
    g_spans = [read_spans(t, "bio", None) for t in gold]
    p_spans = [read_spans(t, "iob1", None) for t in pred]  # lenient, like the decoder
    pairs = list(zip(g_spans, p_spans, strict=True))
    found = sum(any(_overlaps(g, q) for q in ps) for gs, ps in pairs for g in gs)
    right = sum(any(_overlaps(q, g) for g in gs) for gs, ps in pairs for q in ps)
    n_gold, n_pred = sum(map(len, g_spans)), sum(map(len, p_spans))
    recall, precision = found / max(n_gold, 1), right / max(n_pred, 1)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"sentences": len(gold), "strict": strict,
            "overlap": {"f1": round(f1, 4), "precision": round(precision, 4),
                        "recall": round(recall, 4), "gold_spans": n_gold,
                        "predicted_spans": n_pred}}  # fmt: skip


def _as_skill(tag: str) -> str:
    return tag[:2] + "skill" if tag[2:].lower() == "skill" else "O"


def _overlaps(a: tuple, b: tuple) -> bool:
    """Spans are (first word, end word exclusive, type)."""
    return a[0] < b[1] and b[0] < a[1]


def run_trainer_baseline(spec: dict) -> dict:
    """Plain transformers Trainer, run_ner style (see the module docstring)."""
    import numpy as np
    import torch
    from datasets import Dataset
    from transformers import (
        AutoModelForTokenClassification,
        AutoTokenizer,
        DataCollatorForTokenClassification,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from tuneforge.evaluation.metrics import evaluate_spans
    from tuneforge.models.registry import resolve_base
    from tuneforge.tasks.tags import repair_bio, tag_names
    from tuneforge.tasks.token_data import load_tokens

    t0 = time.time()
    paths, col = data_paths(spec["layer"]), f"tags_{spec['layer']}"
    splits = {s: load_tokens(p, col, True, None, True) for s, p in paths.items()}
    if spec["explore"]:
        del splits["test"]
    names = tag_names(splits["train"].entity_types)
    index = {t: i for i, t in enumerate(names)}
    path = str(resolve_base(spec["base"]).path)
    tok = AutoTokenizer.from_pretrained(path)
    # run_ner's usual max_seq_length for training (tuneforge's window is 128 too: the 83 longer
    # training sentences would pad most random batches to hundreds of tokens, 5x slower);
    # dev and test are never cut (up to the model's 512), so every gold span is scored
    lengths = {"train": 128, "dev": tok.model_max_length, "test": tok.model_max_length}

    def encode(ds, max_length):
        enc = tok(ds.words, is_split_into_words=True, truncation=True, max_length=max_length)
        labels = []
        for i, tags in enumerate(ds.tags):
            previous, row = None, []
            for w in enc.word_ids(i):
                row.append(-100 if w is None or w == previous else index.get(tags[w], -100))
                previous = w
            labels.append(row)
        return Dataset.from_dict(
            {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
             "labels": labels}
        )  # fmt: skip

    encoded = {s: encode(ds, lengths[s]) for s, ds in splits.items()}

    def word_level(split: str, logits: np.ndarray, repair: bool) -> list[list[str]]:
        """Per sentence, each word's tag from its first sub-token (O for a word cut off)."""
        out = []
        for i, labels in enumerate(encoded[split]["labels"]):
            n_words = len(splits[split].words[i])
            firsts = [p for p, lab in enumerate(labels) if lab != -100]
            tags = ["O"] * n_words
            for w, p in enumerate(firsts[:n_words]):
                tags[w] = names[int(logits[i][p].argmax())]
            out.append(repair_bio(tags) if repair else tags)
        return out

    def in_order(split: str, label_ids: np.ndarray) -> None:
        """The predictions' rows are the split's rows, in order (what word_level assumes)."""
        for i, labels in enumerate(encoded[split]["labels"]):
            if list(label_ids[i][: len(labels)]) != labels:
                raise RuntimeError(f"{split} predictions out of order at row {i}")

    def dev_metrics(p):
        in_order("dev", p.label_ids)
        result = evaluate_spans(splits["dev"].tags, word_level("dev", p.predictions, True))
        return {"span_f1": result.f1}

    curve: list[dict] = []
    clock = {"eval": 0.0, "eval_start": 0.0}

    class Clock(TrainerCallback):
        def on_epoch_end(self, args, state, control, **kw):
            clock["eval_start"] = time.time()

        def on_evaluate(self, args, state, control, metrics=None, **kw):
            seconds = clock["eval_start"] - t0 - clock["eval"]
            curve.append(
                {
                    "epoch": round(state.epoch, 3),
                    "dev_f1": round(metrics["eval_span_f1"], 4),
                    "dev_loss": round(metrics["eval_loss"], 4),
                    "train_seconds": round(seconds - clock["setup"], 2),
                    "seconds": round(seconds, 1),
                }
            )
            clock["eval"] += time.time() - clock["eval_start"]

    torch.manual_seed(spec["seed"])
    model = AutoModelForTokenClassification.from_pretrained(
        path, num_labels=len(names), id2label=dict(enumerate(names)), label2id=index
    )
    batch, epochs = 32, spec["epochs"]
    steps = epochs * -(-len(encoded["train"]) // batch)
    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="bench-tokens-trainer-"),
        per_device_train_batch_size=batch,
        per_device_eval_batch_size=64,
        learning_rate=spec["lr"],
        warmup_steps=int(0.06 * steps),
        num_train_epochs=epochs,
        weight_decay=0.01,
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=1,
        load_best_model_at_end=True,
        metric_for_best_model="span_f1",
        logging_steps=50,
        report_to=[],
        seed=spec["seed"],
        use_cpu=True,
        disable_tqdm=True,
        # batches of similar lengths, as tuneforge's: random batches padded to their longest
        # sentence measured 4.5 s/step here (12 min an epoch), too slow for the time budget
        train_sampling_strategy="group_by_length" if spec.get("group_by_length") else "random",
    )

    class InOrderTrainer(Trainer):
        # this transformers groups evaluation batches by length too (a shuffled order) when
        # training does: keep dev and test in their order
        def _get_eval_sampler(self, eval_dataset):
            return torch.utils.data.SequentialSampler(eval_dataset)

    trainer = InOrderTrainer(
        model=model,
        args=args,
        train_dataset=encoded["train"],
        eval_dataset=encoded["dev"],
        data_collator=DataCollatorForTokenClassification(tok),
        compute_metrics=dev_metrics,
        callbacks=[Clock()],
    )
    clock["setup"] = time.time() - t0
    trainer.train()
    wall = time.time() - t0
    test = raw = None
    if not spec["explore"]:
        trainer.compute_metrics = None  # its metrics are dev's; test is scored below
        out = trainer.predict(encoded["test"])
        in_order("test", out.label_ids)
        logits = out.predictions
        gold = splits["test"].tags
        test = _span_scores(evaluate_spans(gold, word_level("test", logits, True)).to_dict())
        raw = _span_scores(evaluate_spans(gold, word_level("test", logits, False)).to_dict())
    return {"curve": curve, "wall_seconds": round(wall, 1), "test": test, "test_unrepaired": raw}


def _span_scores(metrics) -> dict | None:
    if metrics is None:
        return None
    m = metrics if isinstance(metrics, dict) else metrics.to_dict()
    keep = ("f1", "precision", "recall", "macro_f1", "per_type", "gold_spans", "predicted_spans")
    return {k: m[k] for k in keep if k in m}


def child(spec_json: str, result_path: str) -> None:
    import resource

    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    spec = json.loads(spec_json)
    res = run_trainer_baseline(spec) if spec["kind"] == TRAINER else run_tuneforge(spec)
    res["peak_rss_mb_self"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    Path(result_path).write_text(json.dumps(res))


# ---- the parent: one subprocess per configuration -----------------------------------------------
def run_in_subprocess(spec: dict) -> dict:
    result = Path(tempfile.mkstemp(prefix="bench-tokens-", suffix=".json")[1])
    cmd = [sys.executable, __file__, "--child", json.dumps(spec), str(result)]
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)  # the child's own rusage, not all children's
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"run failed: {spec}")
    res = json.loads(result.read_text())
    res["peak_rss_mb"] = round(usage.ru_maxrss / 1024, 1)
    return res


def summarize(spec: dict, res: dict) -> dict:
    curve = res["curve"]
    best = max(curve, key=lambda c: c["dev_f1"]) if curve else None  # the restored checkpoint
    return {
        "dev_f1": best["dev_f1"] if best else None,
        "best_epoch": best["epoch"] if best else None,
        # the first evaluation at the final (best) dev F1: training seconds incl. set-up/caching
        "seconds_to_final_dev_f1": best["seconds"] if best else None,
        "test_f1": res["test"]["f1"] if res.get("test") else None,
        "within_time_target": res["wall_seconds"] <= 60 * MINUTES_PER_MODEL,
    }


def spec_for(plan: str, layer: str, seed: int, base: str, explore: bool, baseline_of: str):
    if plan == TRAINER:
        method, epochs, lr, _, _ = PLANS[baseline_of]
        return {"kind": TRAINER, "plan": f"hf-trainer (epochs/lr of {baseline_of})",
                "layer": layer, "seed": seed, "base": base, "epochs": epochs, "lr": lr,
                "explore": explore, "group_by_length": True}  # fmt: skip
    method, epochs, lr, options, config = PLANS[plan]
    return {"kind": "tuneforge", "plan": plan, "layer": layer, "seed": seed, "base": base,
            "method": method, "epochs": epochs, "lr": lr, "options": options,
            "config": config, "explore": explore}  # fmt: skip


def add_time_ratios(runs: list[dict]) -> None:
    """Per (layer, base): the baseline is the Trainer run with the best dev F1 (its learning
    rate tuned on dev, as ours was; one seed, as the issue asks). Its seconds to its final dev
    F1 over tuneforge's seconds to first reach that dev F1 (None if tuneforge never does)."""
    for run in runs:
        if run["kind"] == TRAINER:
            continue
        same = ("layer", "base")
        candidates = [r for r in runs
                      if r["kind"] == TRAINER and all(r[k] == run[k] for k in same)]  # fmt: skip
        if not candidates:
            continue
        base = max(candidates, key=lambda r: r["dev_f1"])
        target = base["dev_f1"]
        hit = next((c["seconds"] for c in run["curve"] if c["dev_f1"] >= target), None)
        run["baseline"] = {"lr": base["lr"], "epochs": base["epochs"], "seed": base["seed"]}
        run["baseline_dev_f1"] = target
        run["seconds_to_baseline_dev_f1"] = hit
        run["speedup_to_baseline_dev_f1"] = (
            round(base["seconds_to_final_dev_f1"] / hit, 2) if hit else None
        )
        run["test_f1_minus_baseline"] = (
            round(run["test_f1"] - base["test_f1"], 4)
            if run["test_f1"] is not None and base["test_f1"] is not None
            else None
        )


def print_table(runs: list[dict]) -> None:
    cols = ("layer", "plan", "seed", "base", "dev_f1", "best_epoch", "test_f1",
            "wall_seconds", "seconds_to_final_dev_f1", "speedup_to_baseline_dev_f1",
            "peak_rss_mb")  # fmt: skip
    print(" | ".join(cols))
    for r in runs:
        print(" | ".join(str(r.get(c)) for c in cols))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--plans", nargs="+", default=["full-lr2e-4-ls0", TRAINER])
    parser.add_argument("--layers", nargs="+", default=["skill", "knowledge"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[42])
    parser.add_argument("--base", default="minilm")
    parser.add_argument("--baseline-of", default=None, help="plan whose epochs/lr the Trainer uses")
    parser.add_argument("--explore", action="store_true", help="dev only: test is never read")
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--table", action="store_true", help="ratios and table of --out only")
    args = parser.parse_args()
    if args.child:
        return child(*args.child)
    if args.table:
        return print_table(update_ratios(Path(args.out)))
    if not (DATA / "train.json").exists():
        sys.exit(f"needs {DATA} (../shared/data)")
    import torch  # noqa: F401  (loaded before the header, which records its threads)

    from tuneforge.evaluation.provenance import run_header, save_runs

    baseline_of = args.baseline_of or next(p for p in args.plans if p != TRAINER)
    runs = []
    for layer in args.layers:
        for seed in args.seeds:
            for plan in args.plans:
                spec = spec_for(plan, layer, seed, args.base, args.explore, baseline_of)
                print(f"== {spec}", flush=True)
                record = run_header()
                res = run_in_subprocess(spec)
                record["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
                run = {"dataset": "skillspan", **record, **spec, **res}
                run.update(summarize(spec, res))
                print(json.dumps({k: v for k, v in run.items() if k not in ("curve",)}))
                print("curve:", run["curve"], flush=True)
                runs.append(run)
                save_runs(Path(args.out), [run])
    print_table(update_ratios(Path(args.out)))


def update_ratios(path: Path) -> list[dict]:
    """Time ratios of every test run in the results file against its baseline (the latest
    Trainer run of the same layer, seed, base, epochs and lr); the file is rewritten."""
    from tuneforge.paths import write_text_atomically

    results = json.loads(path.read_text())
    tested = [r for r in results["runs"] if not r.get("explore")]
    add_time_ratios(tested)
    results["targets"] = {**TARGETS, "minutes_per_model": MINUTES_PER_MODEL}
    write_text_atomically(path, json.dumps(results, indent=1) + "\n")
    return results["runs"]


if __name__ == "__main__":
    main()
