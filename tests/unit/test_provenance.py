"""Every results file says how it was made: command, date, machine and how busy it was."""

from __future__ import annotations

import sys
from datetime import datetime

from tuneforge.evaluation.provenance import run_header


def test_run_header_names_the_command_date_and_machine(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["benchmarks/bench_x.py", "--model", "runs/my model"])
    header = run_header(threads=1)
    assert header["command"] == "python benchmarks/bench_x.py --model 'runs/my model'"
    assert datetime.fromisoformat(header["date"]).tzinfo is not None
    machine = header["machine"]
    assert machine["threads"] == 1 and machine["cpus"] >= 1
    assert len(machine["load_average_at_start"]) == 3


def test_run_header_for_a_cli_verb(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/venv/bin/tuneforge", "assist", "eval", "a"])
    assert run_header("tuneforge")["command"] == "tuneforge assist eval a"
