"""Training loop, batching, checkpoints and progress."""

from tuneforge.training.loop import Trainer, TrainState, predict_logits
from tuneforge.training.task import TrainTask, balanced_class_weights, encode_targets

__all__ = [
    "TrainState",
    "TrainTask",
    "Trainer",
    "balanced_class_weights",
    "encode_targets",
    "predict_logits",
]
