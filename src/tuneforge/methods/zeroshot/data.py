"""What `tune(labels=...)` needs before a zero-shot run: label names and unlabelled texts."""

from __future__ import annotations

from pathlib import Path

from tuneforge.data.dataset import TextDataset, load_data
from tuneforge.errors import ConfigError
from tuneforge.methods.zeroshot.labels import parse_labels


def zero_shot_setup(cfg, train, labels, text_col: str | None):
    """(config with the labels recorded, unlabelled texts (may be empty), label names).

    `train`, when given, is only a source of unlabelled texts for self-training; a label column
    in it is ignored (train with `--method fewshot` to use labelled rows).
    """
    if cfg.method not in ("auto", "zeroshot"):
        raise ConfigError(
            f"--labels defines the classes of a zero-shot model, but --method is "
            f"'{cfg.method}'. Use --method zeroshot (or auto), or drop --labels."
        )
    specs = parse_labels(labels)
    recorded = (
        str(labels)
        if isinstance(labels, Path | str)
        else {s.name: {"description": s.description, "examples": s.examples} for s in specs}
    )
    options = {**cfg.method_options, "labels": recorded}
    cfg = cfg.model_copy(update={"method": "zeroshot", "method_options": options})
    if train is None:
        texts = TextDataset(texts=[], labels=None, source="<labels only>", label_col=None)
    elif isinstance(train, TextDataset):
        texts = TextDataset(texts=list(train.texts), labels=None, source=train.source)
    else:
        ds = load_data(train, text_col, require_labels=False)
        texts = TextDataset(texts=ds.texts, labels=None, source=ds.source, text_col=ds.text_col)
    return cfg, texts, [s.name for s in specs]
