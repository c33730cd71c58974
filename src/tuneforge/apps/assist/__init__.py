"""Customer-service assistant: approved answers by intent, help-article retrieval, hand-off.

`tuneforge assist init DIR` → `train DIR` → `chat DIR` / `serve DIR` / `eval DIR`.
"""

from pathlib import Path

from tuneforge.apps.chassis.spec import AppSpec

APP = AppSpec(
    name="assist",
    models="tuneforge.apps.assist.store:Base",
    versions=Path(__file__).resolve().parent / "migrations" / "versions",
    cli="tuneforge.cli.assist:assist_app",
    settings_file="assist.yaml",
    init_command="tuneforge assist init {directory}",
    table_prefix="assist_",
    # The conversation log as `create_all` made it before the migrations existed.
    baseline="0001",
)
