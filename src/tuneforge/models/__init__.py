"""Base models (registry, converters) and the classifier shape every method trains."""

from tuneforge.models.classifier import Pooler, TextClassifier, build_head, mean_pool
from tuneforge.models.registry import BASE_MODELS, BaseModel, resolve_base

__all__ = [
    "BASE_MODELS",
    "BaseModel",
    "Pooler",
    "TextClassifier",
    "build_head",
    "mean_pool",
    "resolve_base",
]
