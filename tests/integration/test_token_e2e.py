"""End to end on the embedded default model (MiniLM): a slot tagger trained, evaluated and used
from the CLI, on travel requests whose cities and days are spans."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

CITIES = ["Paris", "London", "Berlin", "Madrid", "Rome", "Vienna", "Oslo", "Dublin", "Lisbon",
          "Prague", "Warsaw", "Athens", "New York", "San Francisco", "Los Angeles"]  # fmt: skip
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday",
        "tomorrow", "next week"]  # fmt: skip
TEMPLATES = [
    "book a flight from {from} to {to} on {day}",
    "i need to fly to {to} from {from} {day}",
    "show me trains from {from} to {to}",
    "is there a bus to {to} on {day}",
    "cheapest ticket {from} to {to} {day} please",
    "get me from {from} to {to}",
]


def travel_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        slots = {"from": rng.choice(CITIES), "to": rng.choice(CITIES), "day": rng.choice(DAYS)}
        tokens, tags = [], []
        for part in rng.choice(TEMPLATES).split():
            if part.startswith("{"):
                kind = part.strip("{}")
                words = slots[kind].split()
                tokens += words
                tags += [f"B-{kind}"] + [f"I-{kind}"] * (len(words) - 1)
            else:
                tokens.append(part)
                tags.append("O")
        rows.append({"tokens": tokens, "tags": tags})
    return rows


@pytest.mark.integration
def test_a_slot_tagger_on_the_embedded_model(tmp_path):
    train, test = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    for path, rows in ((train, travel_rows(400, 1)), (test, travel_rows(100, 2))):
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "slots"
    cli = [sys.executable, "-m", "tuneforge"]
    trained = subprocess.run(
        [*cli, "train", str(train), "--eval", str(test), "--out", str(out), "--no-progress",
         "--max-minutes", "4"],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "method auto → partial" in trained.stdout + trained.stderr
    f1 = float(json.loads((out / "metrics.json").read_text())["eval"]["f1"])
    assert f1 > 0.9, f1  # from/to are told apart by the words around them, not the city
    shown = subprocess.run(
        [*cli, "predict", str(out), "flights from Oslo to Rome on Friday"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "Oslo [from]" in shown and "Rome [to]" in shown and "Friday [day]" in shown
