"""Command, date and machine of a measurement: what a figure needs to be reproduced and
compared. Every benchmark's results JSON and `tuneforge assist eval` start with it."""

from __future__ import annotations

import os
import platform
import shlex
import sys
from datetime import UTC, datetime


def run_header(program: str | None = None, **machine) -> dict:
    """`program` names the command as a user would type it ("tuneforge" for a CLI verb);
    by default it is `python` and the script. `machine` adds facts (threads, a note)."""
    argv = [program, *sys.argv[1:]] if program else ["python", *sys.argv]
    return {
        "command": shlex.join(argv),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            # figures taken on a busy machine are low: say how busy it was
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            **machine,
        },
    }
