"""Tasks behind one registry: add a module with a `@register_task` class and import it here."""

from tuneforge.tasks import chat, text_classification, token_classification  # noqa: F401
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
