"""Methods behind one registry: add a module with a `@register_method` class and import it here."""

from tuneforge.methods import fewshot, full, head, lora, partial, prompt, zeroshot  # noqa: F401
from tuneforge.methods.base import (
    METHODS,
    Method,
    MethodContext,
    MethodOptions,
    get_method,
    register_method,
)

__all__ = ["METHODS", "Method", "MethodContext", "MethodOptions", "get_method", "register_method"]
