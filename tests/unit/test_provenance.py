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


def test_run_header_names_the_commit_the_cpu_and_torch_threads():
    import torch  # noqa: F401  (the header reads torch's threads only once it is loaded)

    from tuneforge.evaluation.provenance import SOURCE, git_commit

    header = run_header()
    commit = header["commit"]
    if (SOURCE / ".git").exists():
        assert len(commit.removesuffix("+dirty")) == 40 and commit == git_commit()
    else:
        assert "not a git checkout" in commit
    machine = header["machine"]
    assert machine["cpu_model"] and machine["cpus_usable"] >= 1
    assert machine["torch_threads"] >= 1


def test_save_runs_appends_atomically(tmp_path):
    from tuneforge.evaluation.provenance import save_runs

    file = tmp_path / "r.json"
    save_runs(file, [{"a": 1}], note="x")
    save_runs(file, [{"a": 2}])
    import json

    data = json.loads(file.read_text())
    assert [r["a"] for r in data["runs"]] == [1, 2] and data["note"] == "x"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temp file left
