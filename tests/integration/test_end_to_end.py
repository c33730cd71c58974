"""End to end on the embedded default model: the README's demo, and a real banking77 run."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tuneforge.apps.chassis.spec import APPS
from tuneforge.cli.app import VERBS

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.integration
def test_demo_trains_evaluates_and_saves(tmp_path):
    """What `make demo` runs: the bundled sample on the embedded model, end to end."""
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "tuneforge", "demo", "--out", str(out), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "accuracy" in proc.stdout and f"Model saved to {out}" in proc.stdout
    acc = float(re.search(r"accuracy ([0-9.]+)", proc.stdout).group(1))
    assert acc > 0.8  # 20 intents, 40 examples each: far above chance (0.05)
    import tuneforge

    model = tuneforge.TunedModel.load(out)
    assert (
        model.predict("I lost my card, someone may have stolen it")[0].label
        == "lost_or_stolen_card"
    )


def test_readme_commands_are_real():
    """The README's two set-up commands exist in the Makefile, and every verb it shows exists."""
    readme = (REPO / "README.md").read_text()
    makefile = (REPO / "Makefile").read_text()
    assert "make demo" in readme and "make test" in readme
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    shown = set(re.findall(r"^tuneforge ([a-z]+)", readme, re.M))
    verbs = {"eval" if v == "evaluate" else v for v in VERBS} | set(APPS)  # apps: sub-commands
    assert shown and shown <= verbs, shown - verbs
