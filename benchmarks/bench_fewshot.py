"""Few-shot and zero-shot benchmark: tuneforge `fewshot` vs the `head` floor vs the setfit library.

Every (task, method, seed) runs in its own subprocess, so peak memory (max RSS) is per run.
The N-shot training set of seed s is `sample_shots(train, N, s)` for every method, setfit too.

    python benchmarks/bench_fewshot.py --task banking77 --methods head fewshot --seeds 0 1 2 3 4
    /tmp/setfit-venv/bin/python benchmarks/bench_fewshot.py --task banking77 --methods setfit \
        --seeds 0 --merge benchmarks/results/fewshot_banking77.json
    python benchmarks/bench_fewshot.py --task ag_news --methods zeroshot
    python benchmarks/bench_fewshot.py --task banking77 --methods fewshot --seeds 0 1 2 --unlabeled
    python benchmarks/bench_fewshot.py --task banking77 --base mpnet   # -> fewshot_banking77_mpnet

setfit runs from its own virtualenv (its pins differ from ours; measured with setfit 1.2.0,
sentence-transformers 6.2.0, transformers 5.24.0, torch 2.13.0+cpu):

    python -m venv /tmp/setfit-venv && /tmp/setfit-venv/bin/pip install torch==2.13.0 \
        setfit pandas pyyaml pydantic rich typer   # SETFIT_ITERATIONS=5 bounds its time

`--unlabeled`: the train rows outside the N-shot sample, text column only (their labels never
reach the method), are passed as `-O unlabeled=POOL` (self-training); results then go to
fewshot_<task>_selftrain.json.

Training seconds: from the sample in memory to a trained model, model loading included and
library imports excluded, for setfit and tuneforge alike. Every run gets an empty embedding
cache (`TUNEFORGE_CACHE`), so no run reuses frozen embeddings an earlier one computed.

Results: benchmarks/results/fewshot_<task>.json (each run's accuracy, train seconds, peak MB,
and mean ± std per method).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "src"))  # the setfit venv sees tuneforge only through this

from tuneforge.evaluation.provenance import run_header  # noqa: E402
from tuneforge.paths import write_text_atomically  # noqa: E402

# name: (train file, test file, shots, base model)
TASKS = {
    "banking77": ("banking77/converted/train.csv", "banking77/converted/test.csv", 10, "minilm"),
    "emotion": (
        "emotion_dair_ai/converted/train.csv",
        "emotion_dair_ai/converted/test.csv",
        8,
        "minilm",
    ),
    "sst2": (
        "sst_kim2014/converted/sst2_train.csv",
        "sst_kim2014/converted/sst2_test.csv",
        8,
        "minilm",
    ),
    "waimai": (None, None, 16, "e5-multilingual"),  # fixed split: see waimai_split()
    "ag_news": (None, "ag_news_test/converted/test.csv", 0, "minilm"),
}


def waimai_split(workdir: Path) -> tuple[Path, Path]:
    """A fixed stratified 80/20 split of waimai_10k (seed 42), written once."""
    from tuneforge.data import stratified_split
    from tuneforge.data.dataset import load_data
    from tuneforge.data.sampling import write_dataset

    train, test = workdir / "waimai_train.csv", workdir / "waimai_test.csv"
    if not train.exists():
        ds = load_data(DATA / "waimai_10k/converted/all.csv")
        fit, held = stratified_split(ds, 0.2, 42)
        write_dataset(fit, train)
        write_dataset(held, test)
    return train, test


def task_files(task: str, workdir: Path) -> tuple[Path | None, Path]:
    if task == "waimai":
        return waimai_split(workdir)
    train, test = TASKS[task][:2]
    return (DATA / train if train else None), DATA / test


def unlabeled_pool(train_file: Path, shots: int, seed: int, workdir: Path) -> Path:
    """The train rows not in the N-shot sample of `seed`, as a text-only CSV (no labels)."""
    import pandas as pd

    from tuneforge.data.dataset import load_data
    from tuneforge.data.sampling import sample_shots

    train = load_data(train_file)
    sample = sample_shots(train, shots, seed)
    taken = set(sample.lines)
    out = workdir / f"pool_{train_file.parent.parent.name}_{shots}shot_seed{seed}.csv"
    rest = [t for t, line in zip(train.texts, train.lines, strict=True) if line not in taken]
    pd.DataFrame({"text": rest}).to_csv(out, index=False)
    return out


def run_one(
    task: str, method: str, seed: int, shots: int, workdir: Path, options: dict, base: str
) -> dict:
    """One training run in this process; returns its figures."""
    train_file, test_file = task_files(task, workdir)
    if options.get("unlabeled") is True:  # --unlabeled: this seed's pool
        options = {**options, "unlabeled": str(unlabeled_pool(train_file, shots, seed, workdir))}
    if method == "setfit":
        acc, n_train, seconds = run_setfit(train_file, test_file, shots, seed, base)
        options = {"num_iterations": setfit_iterations(), "batch_size": 32, "num_epochs": 1}
    else:
        acc, n_train, seconds, details = run_tuneforge(
            method, train_file, test_file, shots, seed, base, options
        )
    return {
        "task": task,
        "base": base,
        "method": method,
        "seed": seed,
        "shots": shots,
        "train_rows": n_train,
        "accuracy": round(acc, 4),
        "train_seconds": round(seconds, 1),
        "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "options": options,
        **({"method_details": details} if method != "setfit" and details else {}),
    }


def run_tuneforge(method, train_file, test_file, shots, seed, base, options):
    """Train on the N-shot sample; returns (test accuracy, train rows, training seconds)."""
    import sklearn.linear_model  # noqa: F401  (imported by setfit before its timer too)

    import tuneforge
    import tuneforge.methods  # library imports are outside both timers
    from tuneforge.data.dataset import load_data
    from tuneforge.data.sampling import sample_shots

    test = load_data(test_file)
    train = None if method == "zeroshot" else sample_shots(load_data(train_file), shots, seed)
    labels = sorted(set(test.labels)) if method == "zeroshot" else None
    import_model_code(base)
    started = time.perf_counter()
    model = tuneforge.tune(
        train,
        method=method,
        labels=labels,
        base=base,
        seed=seed,
        progress=False,
        method_options=options,
    )
    seconds = time.perf_counter() - started
    details = model.config.method_details
    return model.evaluate(test).accuracy, len(train or []), seconds, details


def run_setfit(train_file, test_file, shots, seed, base):
    """The setfit library on the same sample and base model (its documented defaults, bounded)."""
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    from tuneforge.data.dataset import load_data
    from tuneforge.data.sampling import sample_shots
    from tuneforge.models.registry import resolve_base

    train = sample_shots(load_data(train_file), shots, seed)
    test = load_data(test_file)
    import_model_code(base)
    started = time.perf_counter()  # model loading counts for both, as in run_tuneforge
    model = SetFitModel.from_pretrained(str(resolve_base(base).path))
    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="setfit-"),  # never inside the repository
        batch_size=32,
        num_iterations=setfit_iterations(),
        num_epochs=1,
        seed=seed,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_dict({"text": train.texts, "label": train.labels}),
    )
    trainer.train()
    seconds = time.perf_counter() - started
    preds = model.predict(test.texts, batch_size=64)
    acc = sum(str(p) == y for p, y in zip(preds, test.labels, strict=True)) / len(test)
    return acc, len(train), seconds


def import_model_code(base: str) -> None:
    """Import the base model's modeling and tokenizer modules before either timer starts.

    transformers imports them lazily, at the first load: setfit's own imports had already
    brought the tokenizer stack in, ours had not, so our timer counted ~1.5 s more imports.
    """
    from transformers import AutoConfig, AutoTokenizer
    from transformers.models.auto.modeling_auto import MODEL_MAPPING

    from tuneforge.models.registry import resolve_base

    path = str(resolve_base(base).path)
    MODEL_MAPPING[type(AutoConfig.from_pretrained(path))]  # the lookup imports the module
    AutoTokenizer.from_pretrained(path)


def setfit_iterations() -> int:
    """Pairs per example for setfit (its default is 20; lower bounds the CPU time)."""
    return int(os.environ.get("SETFIT_ITERATIONS", "20"))


def summarize(runs: list[dict]) -> dict:
    out = {}
    for method in sorted({r["method"] for r in runs}):
        rs = [r for r in runs if r["method"] == method]
        out[method] = {"seeds": [r["seed"] for r in rs]}
        for key in ("accuracy", "train_seconds", "peak_mb"):
            vals = [r[key] for r in rs]
            out[method][key] = {
                "mean": round(statistics.mean(vals), 4),
                "std": round(statistics.stdev(vals), 4) if len(vals) > 1 else 0.0,
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", choices=sorted(TASKS), required=True)
    parser.add_argument("--methods", nargs="+", default=["head", "fewshot"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--shots", type=int, default=None)
    parser.add_argument("--option", action="append", default=[], help="method option KEY=JSON")
    parser.add_argument(
        "--unlabeled", action="store_true", help="self-training on the train rows not sampled"
    )
    parser.add_argument("--base", help="base model for every method (default: the task's)")
    parser.add_argument("--merge", type=Path, help="add runs to this results file")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    options = {k: json.loads(v) for k, v in (o.split("=", 1) for o in args.option)}
    if args.unlabeled:
        options["unlabeled"] = True  # resolved per seed in the child (unlabeled_pool)
    shots = args.shots if args.shots is not None else TASKS[args.task][2]
    base = args.base or TASKS[args.task][3]
    workdir = Path(tempfile.gettempdir()) / "tuneforge-bench"
    workdir.mkdir(exist_ok=True)
    if args.one:  # child process: exactly one run, figures as JSON on the last line
        m, s = args.methods[0], args.seeds[0]
        print(json.dumps(run_one(args.task, m, s, shots, workdir, options, base)))
        return
    suffix = ("" if base == TASKS[args.task][3] else f"_{base}") + (
        "_selftrain" if args.unlabeled else ""
    )
    out_file = args.merge or RESULTS / f"fewshot_{args.task}{suffix}.json"
    result = json.loads(out_file.read_text()) if out_file.exists() else {"runs": []}
    for method in args.methods:
        for seed in args.seeds:
            cmd = [
                sys.executable,
                __file__,
                "--task",
                args.task,
                "--methods",
                method,
                "--seeds",
                str(seed),
                "--shots",
                str(shots),
                "--base",
                base,
                "--one",
            ]
            cmd += [f"--option={o}" for o in args.option]
            cmd += ["--unlabeled"] if args.unlabeled else []
            header = run_header(omp_num_threads=os.environ.get("OMP_NUM_THREADS", "default"))
            with tempfile.TemporaryDirectory(prefix="tuneforge-bench-cache-") as cache:
                # a cold embedding cache for every run: timings are those of a first run
                env = {**os.environ, "TUNEFORGE_CACHE": cache}
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode:
                sys.stderr.write(proc.stderr[-3000:])
                raise SystemExit(f"run failed: {' '.join(cmd)}")
            run = header | json.loads(proc.stdout.strip().splitlines()[-1])
            print(json.dumps(run), flush=True)
            result["runs"] = [
                r for r in result["runs"] if (r["method"], r["seed"]) != (method, seed)
            ] + [run]
            command = "python " + " ".join(sys.argv)
            result.update(
                task=args.task,
                commands=sorted({*result.get("commands", []), command}),
                machine=f"{platform.machine()}, {os.cpu_count()} cores, torch threads "
                f"{os.environ.get('OMP_NUM_THREADS', 'default')}",
                summary=summarize(result["runs"]),
            )
            write_text_atomically(out_file, json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
