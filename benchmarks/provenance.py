"""What every benchmark result records about where it came from: the exact command, the git
commit (and whether the tree had uncommitted changes), the date, the CPU model and count read
off this machine, the load average when the run started, and torch's thread count.

    from provenance import run_record, save_runs
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def git_commit() -> str:
    """HEAD's hash; `+dirty` when src/ or benchmarks/ differ from it (the figure is then not
    exactly that commit's)."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()

    head = git("rev-parse", "HEAD") or "unknown"
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


def run_record() -> dict:
    """The provenance fields, read now (call it when the run starts)."""
    import torch

    return {
        "command": " ".join(["python", *sys.argv]),
        "commit": git_commit(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def save_runs(path: Path, runs: list[dict], **fields) -> Path:
    """Append `runs` to the `runs` list of a results file (atomically), with `fields` set."""
    path = Path(path)
    results = json.loads(path.read_text()) if path.exists() else {"runs": []}
    results["runs"].extend(runs)
    results.update(fields)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(results, indent=1))
    os.replace(tmp, path)
    return path
