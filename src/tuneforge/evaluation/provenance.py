"""Command, commit, date and machine of a measurement: what a figure needs to be reproduced and
compared. Every benchmark's results JSON and `tuneforge assist eval` start with it; `save_runs`
appends runs to a results file atomically."""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from tuneforge.paths import write_text_atomically

SOURCE = Path(__file__).resolve().parents[3]  # the checkout tuneforge runs from, if it is one


def run_header(program: str | None = None, **machine) -> dict:
    """`program` names the command as a user would type it ("tuneforge" for a CLI verb);
    by default it is `python` and the script. `machine` adds facts (threads, a note). Call it
    when the run starts: the load average is the machine's before the run loads it."""
    argv = [program, *sys.argv[1:]] if program else ["python", *sys.argv]
    return {
        "command": shlex.join(argv),
        "commit": git_commit(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpu_model": cpu_model(),
            "cpus": os.cpu_count(),
            "cpus_usable": len(os.sched_getaffinity(0)),
            # figures taken on a busy machine are low: say how busy it was
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            "torch_threads": _torch_threads(),
            **machine,
        },
    }


def git_commit(source: Path = SOURCE) -> str:
    """The commit of the tuneforge checkout, `+dirty` when src/ or benchmarks/ differ from it
    (the figure is then not exactly that commit's); the package version outside a checkout."""
    from tuneforge import __version__

    def git(*args: str) -> str:
        try:
            out = subprocess.run(
                ["git", *args], cwd=source, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return out.stdout.strip() if out.returncode == 0 else ""

    head = git("rev-parse", "HEAD") if (source / ".git").exists() else ""
    if not head:
        return f"tuneforge {__version__} (not a git checkout)"
    dirty = git("status", "--porcelain", "--", "src", "benchmarks")
    return f"{head}+dirty" if dirty else head


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _torch_threads() -> int | None:
    torch = sys.modules.get("torch")  # not imported here: a header must not load torch
    return torch.get_num_threads() if torch is not None else None


def save_runs(path: str | Path, runs: list[dict], **fields) -> Path:
    """Append `runs` to the `runs` list of a results file, with `fields` set, atomically."""
    path = Path(path)
    results = json.loads(path.read_text()) if path.exists() else {"runs": []}
    results.setdefault("runs", []).extend(runs)
    results.update(fields)
    return write_text_atomically(path, json.dumps(results, indent=1) + "\n")
