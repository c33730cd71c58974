"""The Alembic environment of every app: runs the app's revisions on the connection that
`chassis.migrations.upgrade()` hands over (online only; there is no alembic.ini)."""

from alembic import context

from tuneforge.apps.chassis.migrations import include_name

app = context.config.attributes["app"]
context.configure(
    connection=context.config.attributes["connection"],
    target_metadata=app.metadata(),
    version_table=app.version_table,
    include_name=include_name(app),
    render_as_batch=True,  # SQLite can alter tables only by copying them
)
with context.begin_transaction():
    context.run_migrations()
