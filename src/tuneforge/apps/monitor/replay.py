"""Replay: stream a labelled file through the monitor with synthetic timestamps, faster than
real time, with an injected burst of negative items, so a trend and an alert appear within a
minute (`tuneforge monitor replay FILE --speed 600x`).

Items arrive as a Poisson stream of `rate` items per data-minute starting now; at 600x a
data-minute passes in 0.1 s. From `burst_at` for `burst_minutes` data-minutes, each item is,
with probability `burst_share`, replaced by a random row whose label is negative (e.g.
bearish): the model still has to classify it so, as on real data. The labels of the file are
used for nothing else. Ids are `replay-<start>-<n>`, so a second replay adds a second stream.
"""

from __future__ import annotations

import csv
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from tuneforge.apps.monitor.ingest import RawItem
from tuneforge.errors import ConfigError, DataError


def parse_speed(value: str) -> float:
    try:
        speed = float(str(value).lower().removesuffix("x"))
    except ValueError:
        speed = 0.0
    if speed <= 0:
        raise ConfigError(f"--speed {value!r}: give a positive factor such as 600x.")
    return speed


@dataclass
class ReplayPlan:
    items: list[RawItem]
    start: int
    burst_start: int
    burst_end: int


def read_labelled(path: Path, negative_labels: list[str]) -> tuple[list[str], list[str]]:
    """(all texts, texts whose label is negative) of a CSV with text,label columns."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not {"text", "label"} <= set(reader.fieldnames or []):
            raise DataError(f"{path}: a replay file needs 'text' and 'label' columns.")
        rows = [(r["text"], r["label"]) for r in reader if r["text"]]
    negative = {n.casefold() for n in negative_labels}
    negatives = [t for t, label in rows if label.casefold() in negative]
    if not negatives:
        raise DataError(f"{path}: no row is labelled {sorted(negative)}: cannot inject a burst.")
    return [t for t, _ in rows], negatives


def plan_replay(
    texts: list[str],
    negatives: list[str],
    start: int,
    rate: float = 6.0,
    burst_at: float = 90.0,
    burst_minutes: float = 30.0,
    burst_share: float = 0.8,
    seed: int = 0,
) -> ReplayPlan:
    """Every text once, in file order, at Poisson times; a negative burst injected."""
    rng = random.Random(seed)
    burst_start, burst_end = (
        start + int(burst_at * 60),
        start + int((burst_at + burst_minutes) * 60),
    )
    items, t = [], float(start)
    for n, text in enumerate(texts):
        t += rng.expovariate(rate / 60.0)
        if burst_start <= t < burst_end and rng.random() < burst_share:
            text = rng.choice(negatives)
        items.append(RawItem(f"replay-{start}-{n}", int(t), "replay", text))
    return ReplayPlan(items, start, burst_start, burst_end)


@dataclass
class ReplayResult:
    items: int = 0
    inserted: int = 0
    seconds: float = 0.0
    alerts: list[dict] = field(default_factory=list)


def run_replay(ingestor, plan: ReplayPlan, speed: float, on_tick=None) -> ReplayResult:
    """Ingest the plan's items as their data time comes, `speed` times faster than real time.
    If classification cannot keep up, batches grow and the replay runs late, never out of order."""
    result, t0, i = ReplayResult(), time.monotonic(), 0
    detector = ingestor.detector
    while i < len(plan.items):
        clock = plan.start + (time.monotonic() - t0) * speed
        j = i
        while j < len(plan.items) and plan.items[j].ts <= clock:
            j += 1
        if j == i:
            time.sleep(min(0.05, (plan.items[i].ts - clock) / speed))
            continue
        before = len(detector.found) if detector is not None else 0
        done = ingestor.ingest(plan.items[i:j])
        result.items += done.received
        result.inserted += done.inserted
        if detector is not None:
            result.alerts += detector.found[before:]
        i = j
        if on_tick is not None:
            on_tick(result, plan.items[j - 1].ts)
    result.seconds = time.monotonic() - t0
    return result


def detection_delay(plan: ReplayPlan, alerts: list[dict], scope: str = "all") -> dict | None:
    """When the first alert of `scope` at or after the burst fired, in data time: seconds and
    windows from the burst's start to the end of the alerting window (None: not detected)."""
    hits = [
        a
        for a in alerts
        if a["scope"] == scope and a["window_start"] + a["window_seconds"] > plan.burst_start
    ]
    if not hits:
        return None
    first = min(hits, key=lambda a: a["window_start"])
    width = first["window_seconds"]
    delay = first["window_start"] + width - plan.burst_start
    return {"seconds": delay, "windows": delay / width, "window_start": first["window_start"]}
