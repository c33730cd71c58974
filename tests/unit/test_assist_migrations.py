"""The assistant's schema migrations on SQLite (on PostgreSQL: test_assist_postgres.py)."""

from __future__ import annotations

import pytest

from assist_db import CHECKS


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_migrations_on_sqlite(tmp_path, check):
    check(f"sqlite:///{tmp_path / 'assist.db'}")
