"""Training loop, batching, checkpoints and progress."""

from tuneforge.training.job import TrainJob, balanced_class_weights, encode_targets
from tuneforge.training.loop import Trainer, TrainState, predict_outputs

__all__ = [
    "TrainJob",
    "TrainState",
    "Trainer",
    "balanced_class_weights",
    "encode_targets",
    "predict_outputs",
]
