"""CI never turns a broken set-up into green skips; a user's `make test` still skips with the
reason."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import conftest

REPO = Path(__file__).resolve().parents[2]


def test_a_missing_service_skips_for_a_user_and_fails_under_ci(monkeypatch):
    monkeypatch.setattr(conftest, "SERVICES_REQUIRED", False)
    with pytest.raises(pytest.skip.Exception, match="no database"):
        conftest.needs_service("no database")
    monkeypatch.setattr(conftest, "SERVICES_REQUIRED", True)
    with pytest.raises(pytest.fail.Exception, match=r"no database .*CI=true"):
        conftest.needs_service("no database")


def _fake_repo(tmp_path: Path, browser_ok: bool) -> Path:
    """.ci/run beside set-up scripts that succeed or fail, and a Makefile that only says which
    targets ran."""
    (tmp_path / ".ci").mkdir()
    shutil.copy2(REPO / ".ci" / "run", tmp_path / ".ci" / "run")
    for name, ok in (("setup-browser.sh", browser_ok), ("setup-postgres.sh", True)):
        script = tmp_path / ".ci" / name
        script.write_text(f"#!/usr/bin/env bash\nexit {0 if ok else 1}\n")
        script.chmod(0o755)
    (tmp_path / "Makefile").write_text(
        ".venv/.installed:\n\t@echo installed\ntest:\n\t@echo tests-ran\n"
    )
    return tmp_path


@pytest.mark.parametrize(("ci", "browser_ok", "code", "ran"), [
    ("true", False, 1, False),   # CI: a failed set-up fails the run before any test
    ("", False, 0, True),        # a user's machine: the tests run (and skip what they cannot)
    ("true", True, 0, True),
])  # fmt: skip
def test_ci_run_fails_on_a_failed_setup_only_under_ci(tmp_path, ci, browser_ok, code, ran):
    repo = _fake_repo(tmp_path, browser_ok)
    env = {k: v for k, v in os.environ.items() if k != "CI"} | ({"CI": ci} if ci else {})
    proc = subprocess.run(
        ["bash", str(repo / ".ci" / "run")], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == code, proc.stderr
    assert ("tests-ran" in proc.stdout) is ran
    if not browser_ok:
        assert "setup-browser.sh failed" in proc.stderr
