"""Data readers, validation with row-level errors, and splits."""

from tuneforge.data.dataset import TextDataset, load_data
from tuneforge.data.split import stratified_split
from tuneforge.data.validate import check_trainable, data_warnings, dataset_stats

__all__ = [
    "TextDataset",
    "check_trainable",
    "data_warnings",
    "dataset_stats",
    "load_data",
    "stratified_split",
]
