"""tuneforge: adapt a pre-trained language model to your own text task, fast, on a CPU.

Names are imported lazily, so `import tuneforge` (and `tuneforge --help`) stays fast until
torch is really needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    "tune": "tuneforge.tuning",
    "TunedModel": "tuneforge.tuned_model",
    "Prediction": "tuneforge.tuned_model",
    "TrainConfig": "tuneforge.config",
    "load_data": "tuneforge.data.dataset",
    "TextDataset": "tuneforge.data.dataset",
    "register_method": "tuneforge.methods.base",
    "TuneforgeError": "tuneforge.errors",
    "DataError": "tuneforge.errors",
    "ConfigError": "tuneforge.errors",
    "ModelNotFoundError": "tuneforge.errors",
    "ArtifactError": "tuneforge.errors",
}

__all__ = [*_EXPORTS, "__version__"]

if TYPE_CHECKING:
    from tuneforge.config import TrainConfig
    from tuneforge.data.dataset import TextDataset, load_data
    from tuneforge.errors import (
        ArtifactError,
        ConfigError,
        DataError,
        ModelNotFoundError,
        TuneforgeError,
    )
    from tuneforge.methods.base import register_method
    from tuneforge.tuned_model import Prediction, TunedModel
    from tuneforge.tuning import tune


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'tuneforge' has no attribute {name!r}")
