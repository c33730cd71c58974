"""Alembic environment: runs on the connection handed over by `upgrade()` (online only)."""

from alembic import context

from tuneforge.apps.assist.migrations import VERSION_TABLE, is_assist_table
from tuneforge.apps.assist.store import Base

context.configure(
    connection=context.config.attributes["connection"],
    target_metadata=Base.metadata,
    version_table=VERSION_TABLE,
    include_name=is_assist_table,
    render_as_batch=True,  # SQLite can alter tables only by copying them
)
with context.begin_transaction():
    context.run_migrations()
