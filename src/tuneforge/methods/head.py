"""`head`: frozen encoder, embeddings computed once (cached on disk), a linear or MLP head on top.

The fastest method: the encoder runs once per text, ever. Logistic regression picks its
regularization on the validation split; its weights become a plain linear head, so the
artifact has the same shape as every other method's.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field

from tuneforge.methods.base import (
    RUN_FLAGS,
    Method,
    MethodContext,
    MethodOptions,
    register_method,
)
from tuneforge.methods.embedding_cache import cached_embeddings
from tuneforge.models.classifier import TextClassifier


class HeadOptions(MethodOptions):
    classifier: Literal["logreg", "mlp"] = "logreg"
    # logreg: every C is tried and the best on validation is kept
    C: list[float] = Field(default_factory=lambda: [1.0, 4.0, 16.0, 64.0])
    # logreg: once C is chosen, fit again on training + validation rows (as scikit-learn's
    # GridSearchCV(refit=True)), so an honest choice costs no data
    refit: bool = True
    hidden: int = 512  # mlp width
    cache: bool = True
    # logreg: standardize each feature (its mean and scale folded into the linear head after);
    # for features that are not unit vectors (an image CNN's pooled activations)
    standardize: bool = False


@register_method
class HeadMethod(Method):
    name = "head"
    Options = HeadOptions
    default_lr = 1e-3
    trains_pairs = True  # the frozen encoders give the embeddings, whatever their number
    tasks = frozenset({"text-classification", "token-classification", "image-classification"})

    def run_flags(self, task: str = "text-classification") -> frozenset[str]:
        # logistic regression is one scikit-learn fit; the mlp head (and a tagger's per-token
        # head) trains with the Trainer
        trainer = self.options.classifier == "mlp" or task == "token-classification"
        return RUN_FLAGS if trainer else frozenset()

    def fit(self, ctx: MethodContext) -> TextClassifier:
        if not ctx.task.embeds_rows:
            # frozen per-token vectors (the encoder's last layer, computed once) + a linear
            # layer trained on them: `partial` with no encoder layer trained
            from tuneforge.methods.partial import PartialOptions, train_top_layers

            return train_top_layers(ctx, 0, PartialOptions(), self.lr(ctx.config))
        opts = self.options
        kind = "mlp" if opts.classifier == "mlp" else "linear"
        model = ctx.new_model(
            ctx.load_encoder(),
            head=kind,
            normalize=True,
            hidden=opts.hidden if kind == "mlp" else 0,
        )
        x_train = cached_embeddings(model, ctx, ctx.train.texts, use_cache=opts.cache)
        x_val = cached_embeddings(model, ctx, ctx.val.texts, use_cache=opts.cache)
        if opts.classifier == "logreg":
            self._fit_logreg(ctx, model, x_train, x_val)
        else:

            def embed(texts, split):  # train and validation are embedded already
                known = {"train": x_train, "eval": x_val}.get(split)
                x = cached_embeddings(model, ctx, texts, opts.cache) if known is None else known
                return list(torch.from_numpy(x))

            ctx.trainer(self.lr(ctx.config)).fit(
                ctx.job(model.head, embed, _stack, lengths=lambda _: 1)
            )
        return model

    def _fit_logreg(self, ctx, model, x_train, x_val) -> None:
        y_train = ctx.targets(ctx.train).numpy()
        y_val = ctx.targets(ctx.val).numpy()
        shift, scale = np.zeros(x_train.shape[1]), np.ones(x_train.shape[1])
        if self.options.standardize:  # the training rows' statistics, never validation's
            shift, scale = x_train.mean(0), x_train.std(0) + 1e-6
            x_train, x_val = (x_train - shift) / scale, (x_val - shift) / scale
        fitted = {c: self._logreg(ctx, c).fit(x_train, y_train) for c in self.options.C}
        scores = {c: clf.score(x_val, y_val) for c, clf in fitted.items()}
        best_c = max(scores, key=scores.get)  # the first of equals: the stronger regularization
        details = {
            "C": best_c,
            "validation_scores": {str(c): round(v, 4) for c, v in scores.items()},
        }
        clf = fitted[best_c]
        if self.options.refit and len(y_val):
            x_all, y_all = np.vstack([x_train, x_val]), np.concatenate([y_train, y_val])
            clf = self._logreg(ctx, best_c).fit(x_all, y_all)
            details["trained_on_validation"] = True
        _copy_into_linear(clf, model.head[-1], len(ctx.label_names), ctx.multi_label)
        _fold_standardization(model.head[-1], shift, scale)
        model.spec["details"] = details

    def _logreg(self, ctx, c: float):
        from sklearn.linear_model import LogisticRegression
        from sklearn.multiclass import OneVsRestClassifier

        weight = "balanced" if ctx.config.class_weights == "balanced" else None
        clf = LogisticRegression(
            C=c, max_iter=2000, class_weight=weight, random_state=ctx.config.seed
        )
        return OneVsRestClassifier(clf) if ctx.multi_label else clf


def _stack(vectors: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    return {"input": torch.stack(vectors)}


def _copy_into_linear(clf, linear: torch.nn.Linear, n_labels: int, multi_label: bool) -> None:
    """LogisticRegression weights → the head's Linear layer (same probabilities)."""
    if multi_label:
        coef = np.vstack([e.coef_ for e in clf.estimators_])
        bias = np.concatenate([e.intercept_ for e in clf.estimators_])
    else:
        coef, bias = _full_coef(clf, n_labels)
    with torch.no_grad():
        linear.weight.copy_(torch.as_tensor(coef, dtype=torch.float32))
        linear.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))


def _fold_standardization(linear: torch.nn.Linear, shift: np.ndarray, scale: np.ndarray) -> None:
    """w·((x - μ)/σ) + b == (w/σ)·x + (b - (w/σ)·μ): the head reads raw features."""
    with torch.no_grad():
        w = linear.weight / torch.as_tensor(scale, dtype=torch.float32)
        linear.bias -= w @ torch.as_tensor(shift, dtype=torch.float32)
        linear.weight.copy_(w)


def _full_coef(clf, n_labels: int) -> tuple[np.ndarray, np.ndarray]:
    coef, bias = clf.coef_, clf.intercept_
    if coef.shape[0] == 1:  # binary: sigmoid(w.x+b) == softmax([-w/2, w/2])
        coef, bias = np.vstack([-coef / 2, coef / 2]), np.concatenate([-bias / 2, bias / 2])
    full_w = np.zeros((n_labels, coef.shape[1]))
    full_b = np.full(n_labels, -1e4)  # classes absent from training can never win
    full_w[clf.classes_], full_b[clf.classes_] = coef, bias
    return full_w, full_b
