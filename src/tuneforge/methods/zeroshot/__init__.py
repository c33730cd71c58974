"""`zeroshot`: a classifier from label names alone (plus optional descriptions, seed phrases).

Texts and labels are embedded by the same sentence encoder; a text's score for a label is the
cosine similarity to the label's prototype (the mean embedding of prompt templates filled with
the label, and of its seed phrases). The prototypes, scaled, become the rows of an ordinary
linear head, so the artifact predicts, evaluates, exports and serves like any other.

Optional self-training: unlabelled texts (the train file, if given) get zero-shot
pseudo-labels; the confident ones train a logistic-regression head, as in `head`.
A second engine scores labels with a small instruct LLM (methods/zeroshot/llm.py).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from tuneforge.methods.base import Method, MethodContext, MethodOptions, register_method
from tuneforge.methods.embedding_cache import cached_embeddings, embed_texts
from tuneforge.methods.self_training import pseudo_label_selection
from tuneforge.methods.zeroshot.labels import LabelSpec, parse_labels
from tuneforge.models.classifier import TextClassifier

DEFAULT_TEMPLATES = ["{label}", "This text is about {label}."]


class ZeroshotOptions(MethodOptions):
    labels: Any = None  # set by `tune(labels=...)`; any form parse_labels accepts
    templates: list[str] = Field(default_factory=lambda: list(DEFAULT_TEMPLATES))
    scale: float = Field(30.0, gt=0, description="logit = scale x cosine similarity")
    engine: Literal["embedding", "llm"] = "embedding"
    self_train: bool = False
    min_confidence: float = Field(0.5, ge=0, le=1)
    per_class: int = Field(64, ge=1, description="most confident pseudo-labels kept per class")


@register_method
class ZeroshotMethod(Method):
    name = "zeroshot"
    Options = ZeroshotOptions
    trains_pairs = True  # the frozen encoders give the embeddings, whatever their number

    def run_flags(self, task: str = "text-classification") -> frozenset[str]:
        return frozenset()  # no training loop: prototypes, and at most one head fit

    def fit(self, ctx: MethodContext) -> TextClassifier:
        opts = self.options
        specs = parse_labels(opts.labels)
        for template in opts.templates:
            if "{label}" not in template:
                from tuneforge.errors import ConfigError

                raise ConfigError(f"Template {template!r} needs a {{label}} placeholder.")
        model = ctx.new_model(ctx.load_encoder(), head="linear", normalize=True)
        model.eval()
        protos, anchors = label_prototypes(model, ctx, specs, opts.templates)
        with torch.no_grad():
            model.head[-1].weight.copy_(torch.as_tensor(opts.scale * protos))
            model.head[-1].bias.zero_()
        texts = ctx.train.texts
        if opts.engine == "llm" or (opts.self_train and texts):
            self._self_train(ctx, model, specs, protos, anchors)
        return model

    def _self_train(self, ctx, model, specs, protos, anchors) -> None:
        """Pseudo-label the unlabelled texts, keep the confident ones, fit a linear head."""
        from tuneforge.errors import ConfigError
        from tuneforge.methods.head import _copy_into_linear

        opts = self.options
        if not ctx.train.texts:
            raise ConfigError(
                "Self-training (and the llm engine) needs unlabelled texts: pass a file of "
                "texts as DATA, e.g. `tuneforge train texts.csv --labels labels.yaml`."
            )
        x = cached_embeddings(model, ctx, ctx.train.texts)
        if opts.engine == "llm":
            from tuneforge.methods.zeroshot.llm import llm_label_probs

            probs = llm_label_probs(ctx.train.texts, specs)
        else:
            probs = _softmax(opts.scale * x @ protos.T)
        keep = pseudo_label_selection(probs, opts.per_class, opts.min_confidence)
        anchor_x, anchor_y = anchors
        x_fit = np.concatenate([x[keep], anchor_x])
        y_fit = np.concatenate([probs[keep].argmax(1), anchor_y])
        from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression(C=4.0, max_iter=2000, random_state=ctx.config.seed)
        clf.fit(x_fit, y_fit)
        _copy_into_linear(clf, model.head[-1], len(specs), False)


def label_prototypes(model, ctx, specs: list[LabelSpec], templates: list[str]):
    """(C, dim) normalized prototypes, and (embeddings, class ids) of every label phrase."""
    phrases, owner = [], []
    for i, spec in enumerate(specs):
        for text in [t.format(label=spec.text) for t in templates] + spec.examples:
            phrases.append(text)
            owner.append(i)
    emb = embed_texts(model, ctx, phrases)
    owner = np.asarray(owner)
    protos = np.stack([emb[owner == i].mean(0) for i in range(len(specs))])
    protos /= np.linalg.norm(protos, axis=1, keepdims=True).clip(min=1e-9)
    return protos.astype(np.float32), (emb, owner)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


__all__ = ["LabelSpec", "ZeroshotMethod", "parse_labels"]
