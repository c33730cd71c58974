"""Monitor benchmark (issue 7): items/s ingested and classified on 2 cores, the sentiment
model's validation accuracy, and the surge detector's delay and false alarms on the replay.

The demo model (head on MiniLM, trained on the shipped 1,500-row sample) is trained once into
--home (reused on later runs). Accuracy is on the full validation split in ../shared when
present, else on the shipped replay sample (validation rows too).

    HF_HUB_OFFLINE=1 python benchmarks/bench_monitor.py --home runs/monitor-bench
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from tuneforge.evaluation.provenance import run_header

ROOT = Path(__file__).resolve().parents[1]
VALIDATION = ROOT.parent / "shared/data/twitter_financial_news_sentiment/converted/validation.csv"


class Memo:
    """A model wrapper that classifies each distinct text once (replays repeat the file)."""

    def __init__(self, model) -> None:
        self.model, self.labels, self.cache = model, model.labels, {}

    def predict_proba(self, texts, batch_size=64):
        todo = list(dict.fromkeys(t for t in texts if t not in self.cache))
        if todo:
            self.cache.update(zip(todo, self.model.predict_proba(todo, batch_size), strict=True))
        return np.stack([self.cache[t] for t in texts])


def accuracy(model, file: Path) -> dict:
    data = pd.read_csv(file)
    probs = model.predict_proba(data["text"].tolist())
    predicted = np.array(model.labels)[probs.argmax(1)]
    return {
        "file": str(file.relative_to(ROOT.parent))
        if file.is_relative_to(ROOT.parent)
        else file.name,
        "n": len(data),
        "accuracy": round(float((predicted == data["label"]).mean()), 4),
    }


def throughput(home: Path, texts: list[str], topics: bool, one_pass: bool = True) -> dict:
    """items/s of the whole path: classify (sentiment + topic + entities), store, detect;
    a fresh SQLite database each time. `one_pass`: the two heads share one encoder pass
    (when their models share the encoder); False runs an encoder pass per model."""
    from tuneforge.apps.monitor.classify import load_classifier
    from tuneforge.apps.monitor.home import open_monitor
    from tuneforge.apps.monitor.ingest import RawItem
    from tuneforge.apps.monitor.settings import load_settings

    classifier = load_classifier(load_settings(home))
    classifier.share_encoder = one_pass
    if not topics:
        classifier.topics = None
    classifier.sentiment.predict_proba(texts[:32])  # warm-up
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TUNEFORGE_MONITOR_DB"] = f"sqlite:///{tmp}/bench.db"
        monitor = open_monitor(home, classifier=classifier)
        t0 = int(time.time())
        items = [RawItem(f"b{i}", t0 + i, "bench", t) for i, t in enumerate(texts)]
        start = time.perf_counter()
        result = monitor.ingestor.ingest(items)
        seconds = time.perf_counter() - start
        monitor.close()
        del os.environ["TUNEFORGE_MONITOR_DB"]
    return {
        "topics": topics,
        "one_encoder_pass": classifier.one_pass,
        "items": result.inserted,
        "seconds": round(seconds, 2),
        "items_per_second": round(result.inserted / seconds, 1),
    }


def replay_delays(home: Path, seeds: int, speed: float) -> dict:
    """Detection delay (windows from the burst's start to the end of the alerting window)
    and alerts outside the burst, over `seeds` replays of the shipped sample."""
    from tuneforge.apps.monitor.classify import load_classifier
    from tuneforge.apps.monitor.home import open_monitor
    from tuneforge.apps.monitor.replay import (
        detection_delay,
        plan_replay,
        read_labelled,
        run_replay,
    )
    from tuneforge.apps.monitor.sentiment import DEMO_REPLAY
    from tuneforge.apps.monitor.settings import load_settings

    settings = load_settings(home)
    classifier = load_classifier(settings)
    classifier.sentiment = Memo(classifier.sentiment)
    if classifier.topics is not None:
        classifier.topics = Memo(classifier.topics)
    texts, negatives = read_labelled(DEMO_REPLAY, settings.negative_labels)
    runs = []
    for seed in range(seeds):
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["TUNEFORGE_MONITOR_DB"] = f"sqlite:///{tmp}/replay.db"
            monitor = open_monitor(home, classifier=classifier)
            plan = plan_replay(texts, negatives, 1_800_000_000 + seed * 86_400, seed=seed)
            result = run_replay(monitor.ingestor, plan, speed)
            monitor.close()
            del os.environ["TUNEFORGE_MONITOR_DB"]
        delay = detection_delay(plan, result.alerts)
        outside = [
            a
            for a in result.alerts
            if a["window_start"] + a["window_seconds"] <= plan.burst_start
            or a["window_start"] >= plan.burst_end + 6 * a["window_seconds"]
        ]
        runs.append(
            {
                "seed": seed,
                "alerts": len(result.alerts),
                "alerts_outside_burst": len(outside),
                "delay_windows": None if delay is None else round(delay["windows"], 2),
                "wall_seconds": round(result.seconds, 1),
            }
        )
        print(json.dumps(runs[-1]), flush=True)
    delays = [r["delay_windows"] for r in runs if r["delay_windows"] is not None]
    return {
        "runs": runs,
        "detected": f"{len(delays)}/{seeds}",
        "delay_windows_mean": round(float(np.mean(delays)), 2) if delays else None,
        "delay_windows_max": max(delays) if delays else None,
        "false_alarms": sum(r["alerts_outside_burst"] for r in runs),
    }


def one_pass_comparison(args, header: dict, texts: list[str]) -> None:
    """items/s with sentiment + topics, one shared encoder pass vs a pass per model, in
    alternation (so drift in the machine's load hits both), and the ratio of the medians."""
    from tuneforge.evaluation.provenance import save_runs

    rounds = [
        {"round": r, **throughput(args.home, texts, True, one_pass)}
        for r in range(3)
        for one_pass in (False, True)
    ]
    for row in rounds:
        print(json.dumps(row), flush=True)

    def median(shared: bool) -> float:
        return float(
            np.median([r["items_per_second"] for r in rounds if r["one_encoder_pass"] == shared])
        )

    run = {
        **header,
        "benchmark": "monitor: sentiment + topic heads on one encoder pass vs one pass each "
        "(issue 22 part 3), ingest path end to end",
        "items": len(texts),
        "rounds": rounds,
        "items_per_second_one_pass": median(True),
        "items_per_second_two_passes": median(False),
        "speedup": round(median(True) / median(False), 3),
    }
    print("one pass / two passes:", run["speedup"], flush=True)
    save_runs(ROOT / "benchmarks/results/monitor_one_pass.json", [run])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, default=ROOT / "runs/monitor-bench")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/monitor.json")
    ap.add_argument(
        "--one-pass-only",
        action="store_true",
        help="Only the throughput with one encoder pass for both heads against one per model, "
        "alternating 3 times (appended to benchmarks/results/monitor_one_pass.json).",
    )
    args = ap.parse_args()
    import torch

    from tuneforge.apps.monitor.home import init_home
    from tuneforge.apps.monitor.sentiment import DEMO_REPLAY
    from tuneforge.tuned_model import TunedModel

    torch.set_num_threads(args.threads)
    header = run_header(torch_threads=args.threads)  # before we load the machine
    trained = not (args.home / "models" / "sentiment").exists()
    start = time.perf_counter()
    settings = init_home(args.home)  # trains the demo model on the first run only
    init_seconds = round(time.perf_counter() - start, 1)
    model = TunedModel.load(settings.path(settings.sentiment_model))
    acc = accuracy(model, VALIDATION if VALIDATION.exists() else DEMO_REPLAY)
    print("accuracy", json.dumps(acc), flush=True)
    texts = pd.read_csv(DEMO_REPLAY)["text"].tolist()[: args.items]
    if args.one_pass_only:
        one_pass_comparison(args, header, texts)
        return
    speed = [throughput(args.home, texts, topics) for topics in (True, False)]
    print("throughput", json.dumps(speed), flush=True)
    detection = replay_delays(args.home, args.seeds, speed=1e6)
    result = {
        "benchmark": "monitor: ingest + classify throughput, demo model accuracy, surge "
        "detection delay on the replay (6 items/data-minute, 5-minute windows, burst of 30 "
        "data-minutes with 80% of items drawn from bearish rows)",
        **header,
        "init": {"seconds": init_seconds, "trained_the_model": trained},
        "model": {"method": "head", "base": "minilm", "train_rows": 1500, "validation": acc},
        "throughput": speed,
        "detection": detection,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
