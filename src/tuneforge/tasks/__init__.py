"""Tasks behind one registry: add a module with a `@register_task` class and import it here."""

from tuneforge.tasks import (  # noqa: F401
    chat,
    image_classification,
    text_classification,
    token_classification,
)
from tuneforge.tasks.base import (
    DEFAULT_TASK,
    TASKS,
    Task,
    TaskConfig,
    detect_task,
    get_task,
    register_task,
)

__all__ = [
    "DEFAULT_TASK",
    "TASKS",
    "Task",
    "TaskConfig",
    "detect_task",
    "get_task",
    "register_task",
]
