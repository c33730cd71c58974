"""`text-classification`: one text in, one label (or, multi-label, a set of labels) out."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch
from torch import nn

from tuneforge.data import (
    TextDataset,
    check_trainable,
    data_warnings,
    dataset_stats,
    load_data,
    stratified_split,
)
from tuneforge.errors import ArtifactError
from tuneforge.evaluation.metrics import evaluate_predictions
from tuneforge.models.classifier import Pooler, TextClassifier, build_head
from tuneforge.tasks.base import Task, TaskConfig, register_task
from tuneforge.training.job import TrainJob, balanced_class_weights, encode_targets
from tuneforge.training.metrics import classification_scores


class TextClassificationConfig(TaskConfig):
    multi_label: bool = False
    pooling: Literal["mean", "cls"] = "mean"
    normalize: bool = False  # L2-normalised pooled vectors (the sentence-embedding space)
    head: Literal["linear", "mlp"] = "linear"
    head_hidden: int = 0


@dataclass
class Prediction:
    label: str | list[str]
    score: float
    scores: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"label": self.label, "score": self.score, "scores": self.scores}


@register_task
class TextClassification(Task):
    name = "text-classification"
    summary = "a label (or labels: multi-label) per text"
    Config = TextClassificationConfig
    metrics = ("accuracy", "macro_f1")
    default_metric = "accuracy"
    embeds_rows = True
    v2_outputs: ClassVar[dict[str, str]] = {"label": "BYTES", "score": "FP32"}

    # ---- data --------------------------------------------------------------------------------
    def load(self, path, text_col=None, label_col=None, require_labels=True) -> TextDataset:
        return load_data(path, text_col, label_col, require_labels=require_labels)

    def check_trainable(self, ds: TextDataset) -> None:
        check_trainable(ds)

    def split(self, ds: TextDataset, fraction: float, seed: int):
        return stratified_split(ds, fraction, seed)

    def choose_method(self, train, max_minutes, base, model_scale):
        from tuneforge.methods.auto import choose_method  # the table is documented there

        return choose_method(train, max_minutes, base, model_scale)

    def label_names(self, ds: TextDataset) -> list[str]:
        return ds.label_names

    def inputs(self, ds: TextDataset) -> list[str]:
        return ds.texts

    def token_ids(self, ctx, inputs: list[str]) -> list[list[int]]:
        texts = [ctx.base.text_prefix + t for t in inputs]
        return ctx.load_tokenizer()(texts, truncation=True, max_length=ctx.max_length)["input_ids"]

    def _lengths(self, ctx, ds: TextDataset) -> list[int]:
        # untruncated: how many texts the window cuts; counted once per dataset of a run
        cached = getattr(ctx, "_token_lengths", None)
        if cached is None or cached[0] is not ds:
            ctx._token_lengths = cached = (ds, ctx.token_lengths(ds.texts) if len(ds) else [])
        return cached[1]

    def warnings(self, train: TextDataset, eval_ds, ctx) -> list[str]:
        return data_warnings(train, eval_ds, self._lengths(ctx, train), ctx.max_length)

    def stats(self, ds: TextDataset, ctx) -> dict:
        return dataset_stats(ds, self._lengths(ctx, ds), ctx.max_length)

    # ---- model -------------------------------------------------------------------------------
    def new_model(
        self,
        ctx,
        encoder: nn.Module,
        head: str = "linear",
        normalize: bool = False,
        hidden: int = 0,
    ) -> TextClassifier:
        from tuneforge.models.pair import member_widths

        torch.manual_seed(ctx.config.seed)
        dim = encoder.config.hidden_size
        model = TextClassifier(
            encoder,
            build_head(dim, len(ctx.label_names), head, hidden),
            Pooler(ctx.base.pooling, normalize, segments=member_widths(encoder)),
        )
        model.spec = {
            "head": head,
            "hidden": hidden,
            "dim": dim,
            "pooling": ctx.base.pooling,
            "normalize": normalize,
        }
        return model

    def load_model(self, encoder: nn.Module, config) -> TextClassifier:
        from tuneforge.models.pair import member_widths

        opts = self.Config(**config.task_config)
        head = build_head(
            encoder.config.hidden_size, len(config.labels), opts.head, opts.head_hidden
        )
        return TextClassifier(
            encoder, head, Pooler(opts.pooling, opts.normalize, member_widths(encoder))
        )

    def task_config(self, model: TextClassifier, ctx) -> dict:
        spec = model.spec
        return self.Config(
            multi_label=ctx.multi_label,
            pooling=spec["pooling"],
            normalize=spec["normalize"],
            head=spec["head"],
            head_hidden=spec["hidden"],
        ).model_dump()

    # ---- training ----------------------------------------------------------------------------
    def targets(self, ctx, ds: TextDataset) -> torch.Tensor:
        return encode_targets(ds.labels, ctx.label_names, ctx.multi_label)

    def job(self, ctx, module, features: dict, collate_one, lengths) -> TrainJob:
        targets = {split: self.targets(ctx, ds) for split, ds in ctx.splits().items()}
        multi = ctx.multi_label
        if multi:
            loss = nn.BCEWithLogitsLoss()
        else:
            weights = balanced_class_weights(
                targets["train"], len(ctx.label_names), ctx.config.class_weights
            )
            loss = nn.CrossEntropyLoss(weight=weights, label_smoothing=ctx.config.label_smoothing)

        def score(split: str, outputs: list[torch.Tensor]) -> dict[str, float]:
            logits = torch.stack(outputs) if outputs else torch.empty(0)
            scores = classification_scores(logits, targets[split], multi)
            scores["eval_loss"] = float(loss(logits, targets[split]))
            return scores

        return TrainJob(
            module=module,
            collate=lambda split, ix: collate_one([features[split][i] for i in ix]),
            lengths={split: [lengths(f) for f in rows] for split, rows in features.items()},
            targets=lambda split, ix: targets[split][ix],
            loss=loss,
            score=score,
            metric=ctx.config.metric or self.default_metric,
        )

    # ---- inference ---------------------------------------------------------------------------
    def predict(self, model, inputs, batch_size: int = 64, top_k: int | None = 5):
        probs = model.predict_proba([inputs] if isinstance(inputs, str) else inputs, batch_size)
        return [self.decide(model.config, p, top_k) for p in probs]

    def decide(self, config, p: np.ndarray, top_k: int | None) -> Prediction:
        labels = config.labels
        order = np.argsort(-p)[: top_k or len(p)]
        scores = {labels[i]: round(float(p[i]), 6) for i in order}
        cal = config.calibration
        if config.multi_label:
            chosen = [labels[i] for i in np.flatnonzero(p >= 0.5)]
            return Prediction(chosen, float(p.max()), scores)
        best = int(order[0])
        if cal.abstain_threshold is not None and p[best] < cal.abstain_threshold:
            return Prediction(cal.abstain_label, float(p[best]), scores)
        return Prediction(labels[best], float(p[best]), scores)

    def prediction_columns(self, model, texts: list[str], batch_size: int = 64) -> dict:
        columns = self.v2_columns(self.predict(model, texts, batch_size, top_k=1))
        return {"label": columns["label"], "score": [round(x, 6) for x in columns["score"]]}

    def v2_columns(self, predictions: list[Prediction]) -> dict[str, list]:
        return {
            "label": [
                "|".join(p.label) if isinstance(p.label, list) else p.label for p in predictions
            ],
            "score": [float(p.score) for p in predictions],
        }

    def load_for(self, model, data, text_col=None, label_col=None) -> TextDataset:
        """A data file read the way `model` was trained (multi-label or not)."""
        if isinstance(data, TextDataset):
            return data
        return load_data(
            Path(data), text_col, label_col, multi_label=model.config.multi_label or None
        )

    def evaluate(self, model, ds: TextDataset, batch_size: int = 64):
        if ds.labels is None:
            raise ArtifactError(
                f"{ds.source} has no label column to evaluate against; pass "
                "--label-col, or use `tuneforge predict` for unlabelled data."
            )
        probs = model.predict_proba(ds.texts, batch_size)
        labels, multi = model.labels, model.config.multi_label
        if multi:
            pred = [[labels[i] for i in np.flatnonzero(p >= 0.5)] for p in probs]
        else:
            pred = [labels[i] for i in probs.argmax(1)]
        return evaluate_predictions(ds.labels, pred, labels, multi)
