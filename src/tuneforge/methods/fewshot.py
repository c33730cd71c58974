"""`fewshot`: contrastive tuning of the sentence encoder on a few examples, then a linear head.

SetFit's recipe, made cheaper: instead of a cosine loss on sampled pairs of examples (two
encoder passes per pair, pair count quadratic in classes x shots unless capped), examples go
through the encoder once per batch and a supervised contrastive loss compares every pair of
the batch: B passes give B x (B-1) comparisons. Batches group each class with the classes it
is most confused with (methods/pairs.py), so the pairs that matter are the ones compared.
Afterwards a logistic regression on the tuned embeddings becomes the linear head, as in `head`.

With a handful of examples per class every row counts, so by default the validation split is
trained on too (its score is then optimistic: pass eval data for an honest figure), and the
head's regularization is chosen by cross-validation instead.
"""

from __future__ import annotations

import math
import re
import time
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from tuneforge.errors import ConfigError
from tuneforge.methods.base import Method, MethodContext, MethodOptions, register_method
from tuneforge.methods.embedding_cache import cached_embeddings, embed_texts
from tuneforge.methods.pairs import confusable_classes, contrastive_batches
from tuneforge.methods.self_training import SelfTraining, load_unlabeled, self_train
from tuneforge.models.classifier import TextClassifier
from tuneforge.models.encode import MAX_PADDED_TOKENS
from tuneforge.training import TrainJob
from tuneforge.training.batching import pad_hidden_batch, pad_token_batch, sorted_batches
from tuneforge.training.progress import console

# Small sets with label phrases tune every layer: on emotion 8-shot (6 classes, 60 rows with
# the phrases) all 6 layers for 60 steps gave 44.3/51.6/48.6% on seeds 0-2 against 40.4/49.1/
# 43.3% for the top 2 for 120 steps, in about the same time. On banking77 (924 rows) they
# cost 6x for -0.6, and on the shipped banking20 8-shot sample (200 rows) 2x for +1.0/-2.0
# points (seeds 0/1).
# Every layer but the word embeddings, for 45 steps at the top layers' learning rate (2e-4):
# emotion (5 seeds) 51.6% in 30 s vs 48.3% in 52 s for 60 steps at 5e-5; on two sets not
# used to choose it (twitter financial news and financial phrasebank 8-shot, 3 seeds each)
# 52.5/60.5% vs 51.6/61.4%. 4e-4 gave emotion 53.0% but those two 44.7/59.7%.
# Small sets without label phrases tune every layer too, but gently: 30 steps at 5e-5. On sst2
# 8-shot (16 rows, labels 0/1, 5 seeds) 65.3% vs 62.7% for the top 2 for 60 steps at 4e-4 (45
# steps: 64.8%; 45 at 2e-4: 63.9%); on uci sentiment amazon/imdb/yelp 8-shot (not used to
# choose it, 3 seeds each) 80.9/76.9/84.3% vs 79.7/77.6/80.5% (45 steps: 81.9/77.1/84.3%).
SMALL_SET_ROWS = 100
NO_PHRASE_SMALL_LR = 5e-5


class FewshotOptions(MethodOptions):
    top_layers: int | None = Field(
        None,
        ge=0,
        description="tune only the top k layers on cached lower outputs; 0 = all; default: "
        f"all for sets of up to {SMALL_SET_ROWS} rows (label phrases included), else 2",
    )
    views_per_epoch: int = Field(3, ge=1, description="batches each example is in, per epoch")
    min_steps: int | None = Field(
        None,
        ge=0,
        description="at least this many steps however few the rows: with 8 examples of 6 "
        "classes, epochs alone would give a dozen steps (setfit's default pair budget is of "
        "this order of steps); default 120; when every layer is tuned 45, or 30 for a small set "
        "without label phrases",
    )
    tune_word_embeddings: bool = Field(
        False,
        description="when every layer is tuned, tune the word-embedding matrix too (a few "
        "dozen rows would move only their own tokens' vectors; frozen, a step is ~20% cheaper)",
    )
    classes_per_batch: int = Field(16, ge=2)
    per_class: int = Field(4, ge=1, description="examples of each class in a batch")
    hard_negatives: int = Field(8, ge=0, description="confusable classes per class")
    hard_fraction: float = Field(0.5, ge=0, le=1, description="batch classes that are confusable")
    scale: float = Field(20.0, gt=0, description="inverse temperature of the contrastive loss")
    train_on_validation: bool = True
    label_phrases: bool = Field(
        True,
        description="add each label's name, as zero-shot phrases, as an example of its class "
        "(skipped when names are codes such as '3' or 'LABEL_3')",
    )
    C: list[float] = Field(default_factory=lambda: [1.0, 4.0, 16.0, 64.0])
    tune_both: bool = Field(
        False,
        description="a base pair: tune the second model too; by default it joins untuned, a "
        "view not fitted to the few examples (banking77 10-shot dev split: +0.5 points)",
    )
    unlabeled: str | None = Field(
        None,
        description="file of unlabelled in-domain texts (labels in it are ignored): the head "
        "is refitted on its confident pseudo-labels (self-training)",
    )
    max_unlabeled: int = Field(20000, ge=1, description="cap on unlabelled texts (seeded sample)")
    pseudo_labeller: Literal["spread", "head"] = Field(
        "spread",
        description="who pseudo-labels: label spreading on the kNN graph of the tuned "
        "embeddings, seeded with the labelled rows, or the logistic-regression head",
    )
    spread_neighbors: int = Field(10, ge=1, description="neighbours of the label-spreading graph")
    self_train_rounds: int = Field(
        1, ge=1, le=5, description="rounds of pseudo-labelling; rounds after the first use the head"
    )
    pseudo_fraction: float = Field(
        1.0, gt=0, le=1, description="most confident share kept of each predicted class"
    )
    pseudo_per_class: int = Field(100, ge=1, description="at most this many kept per class")
    pseudo_min_confidence: float = Field(0.0, ge=0, le=1)
    pseudo_weight: float = Field(1.0, gt=0, description="sample weight of a pseudo-labelled row")


@register_method
class FewshotMethod(Method):
    name = "fewshot"
    Options = FewshotOptions
    default_lr = 2e-4  # high for an encoder: few steps (top layers alone move less per step)
    trains_pairs = True  # each member of a pair is tuned on its own, then they are joined

    def fit(self, ctx: MethodContext) -> TextClassifier:
        opts = self.options
        data = ctx.train
        if opts.train_on_validation and len(ctx.val):
            data = _concat(ctx.train, ctx.val)
            console.print(
                "fewshot: the validation rows are trained on too (few examples per class); "
                "its score is optimistic, pass eval data for an honest one."
            )
        details = {"trained_on_validation": True} if data is not ctx.train else {}
        n_phrases = 0
        if opts.label_phrases and not ctx.multi_label and names_are_words(ctx.label_names):
            phrases = label_phrase_rows(ctx.label_names, data)
            data, n_phrases = _concat(data, phrases), len(phrases)  # phrases last: see _choose_c
            details["label_phrases"] = n_phrases
            console.print(f"fewshot: the label names add {n_phrases} example phrases.")
        plan = self.tuning_plan(len(data), n_phrases > 0, ctx.config.lr)
        details.update(tuned_layers=plan[0] or "all", lr=plan[2], min_steps=plan[1])
        unlabeled = self._unlabeled(ctx, data.texts) if opts.unlabeled else None
        targets = ctx.targets(data)
        class_ids = (targets.argmax(1) if ctx.multi_label else targets).numpy()
        minutes = ctx.config.max_minutes  # one budget for the run, a pair's members included
        deadline = time.monotonic() + 60 * minutes if minutes else math.inf
        if ctx.base.pair_of:
            model, details["tuned_members"] = self._pair(ctx, data.texts, class_ids, plan, deadline)
        else:
            model = self._tuned(ctx, data.texts, class_ids, plan, deadline)
        model.spec["details"] = details
        self._fit_head(ctx, model, data, targets.numpy(), n_phrases, unlabeled)
        return model

    def _tuned(self, ctx, texts, class_ids, plan, deadline: float) -> TextClassifier:
        """The base's encoder after contrastive tuning on `texts`, with an untrained head."""
        layers, steps_floor, lr = plan
        model = ctx.new_model(ctx.load_encoder(), head="linear", normalize=True)
        frozen = cached_embeddings(model, ctx, texts)
        confusable = confusable_classes(frozen, class_ids, self.options.hard_negatives)
        embedder = self._trainable_embedder(ctx, model, texts, layers)
        self._contrastive(ctx, embedder, class_ids, confusable, lr, steps_floor, deadline)
        return model.eval()

    def _pair(self, ctx, texts, class_ids, plan, deadline: float):
        """(a base pair's members as one model, the names of those tuned): the first tuned,
        the second as it is (tuned too with `tune_both`). Tuned, both fit the same few
        examples; an untuned member keeps a view the examples did not shape."""
        first, second = ctx.base.pair_of
        console.print(f"fewshot: tuning {first.name}, the pair's first model.")
        encoders = [self._tuned(ctx.for_base(first), texts, class_ids, plan, deadline).encoder]
        tuned = [first.name]
        if self.options.tune_both:
            console.print(f"fewshot: tuning {second.name} too (tune_both).")
            second_model = self._tuned(ctx.for_base(second), texts, class_ids, plan, deadline)
            encoders.append(second_model.encoder)
            tuned.append(second.name)
        else:
            console.print(f"fewshot: {second.name} joins untuned (-O tune_both=true tunes it).")
            encoders.append(ctx.for_base(second).load_encoder())
        model = ctx.new_model(ctx.join_encoders(encoders), head="linear", normalize=True)
        return model.eval(), tuned

    def _unlabeled(self, ctx, labelled: list[str]) -> tuple[list[str], dict]:
        if ctx.multi_label:
            raise ConfigError(
                "fewshot -O unlabeled=... (self-training) is for single-label data; this data "
                "is multi-label. Drop the unlabeled option."
            )
        opts = self.options
        texts, info = load_unlabeled(opts.unlabeled, labelled, opts.max_unlabeled, ctx.config.seed)
        console.print(
            f"fewshot: {info['used']} unlabelled texts from {opts.unlabeled} for self-training "
            f"({info['duplicates_of_labelled']} duplicates of labelled rows dropped)."
        )
        return texts, info

    def tuning_plan(
        self, rows: int, has_phrases: bool, lr: float | None = None
    ) -> tuple[int, int, float]:
        """(top layers to tune, 0 = all; the floor on steps; the learning rate) for a training
        set (see above). Options, and a given `lr`, win over the rule."""
        opts = self.options
        small = rows <= SMALL_SET_ROWS
        layers = opts.top_layers
        if layers is None:
            layers = 0 if small else 2
        if layers:
            steps, rate = 120, self.default_lr
        elif small and not has_phrases:
            steps, rate = 30, NO_PHRASE_SMALL_LR
        else:
            steps, rate = 45, self.default_lr
        return layers, steps if opts.min_steps is None else opts.min_steps, lr or rate

    def _trainable_embedder(self, ctx, model, texts: list[str], k: int):
        """(the module that trains, function: (its forward, row indices) -> embeddings, each
        row's length).

        With `top_layers` k, the lower layers run once per text (their outputs are kept) and
        each step runs only k layers forward and backward: with k=2 of 6, a third of the cost.
        """
        from tuneforge.methods.partial import TopLayers, encoder_layers, lower_states

        layers = encoder_layers(model.encoder) if k else []
        if not k or k >= len(layers):
            ids = ctx.tokenize(texts)
            pad = ctx.load_tokenizer().pad_token_id or 0
            model.encoder.get_input_embeddings().requires_grad_(self.options.tune_word_embeddings)
            lengths = [len(x) for x in ids]

            def embed(forward, rows):
                return in_length_groups(
                    lambda group: forward(**pad_token_batch([ids[i] for i in group], pad)),
                    lengths,
                )(rows)

            return _Embedder(model), embed, lengths
        model.encoder.requires_grad_(False)
        model.encoder.eval()  # frozen part: no dropout, so its cached outputs are exact
        states = lower_states(ctx, model, texts, len(layers) - k, "train", torch.float32)
        top = torch.nn.ModuleList(layers[len(layers) - k :])
        top.requires_grad_(True)
        module = TopLayers(model, top, readout=model.pooler)  # pooled embeddings, no head
        module.head.requires_grad_(False)  # the head is fit afterwards, on the embeddings
        lengths = [s.shape[0] for s in states]

        def embed_cached(forward, rows):
            return in_length_groups(
                lambda group: forward(**pad_hidden_batch([states[i] for i in group])), lengths
            )(rows)

        return module, embed_cached, lengths

    def _contrastive(self, ctx, embedder, class_ids, confusable, lr, steps_floor, deadline):
        """Supervised contrastive tuning on the Trainer: its schedule, clipping, checkpoints
        (--resume), --compile, the time budget and the progress bar."""
        cfg, opts = ctx.config, self.options
        module, embed_rows, lengths = embedder
        labels = torch.as_tensor(class_ids)

        def epoch_batches(epoch: int) -> list[list[int]]:
            return [
                b.tolist()
                for b in contrastive_batches(
                    class_ids,
                    opts.classes_per_batch,
                    opts.per_class,
                    confusable,
                    opts.hard_fraction,
                    views=opts.views_per_epoch,
                    seed=cfg.seed + epoch,
                )
            ]

        def step(forward, rows: list[int]) -> torch.Tensor:
            return supervised_contrastive_loss(
                embed_rows(forward, rows), labels[torch.as_tensor(rows)], opts.scale
            )

        job = TrainJob(
            module=module,
            lengths={"train": lengths},
            step=step,
            batches=epoch_batches,
            min_steps=steps_floor,
        )
        left = (deadline - time.monotonic()) / 60 if deadline != math.inf else None
        budget = {"max_minutes": max(left, 1e-3)} if left is not None else {}
        part = f"fewshot-{ctx.base.name}" if ctx.base.name else "fewshot"
        ctx.trainer(lr, part=part, grad_accum=1, **budget).fit(job)

    def _fit_head(self, ctx, model, data, y: np.ndarray, n_phrases: int, unlabeled=None) -> None:
        from tuneforge.methods.head import _copy_into_linear

        x = embed_texts(model, ctx, data.texts)
        make = self._head_factory(ctx)
        best_c = self._choose_c(ctx, make, x, y, n_phrases)
        clf = make(best_c).fit(x, y)
        if unlabeled is not None:
            refit = lambda xs, ys, w: make(best_c).fit(xs, ys, sample_weight=w)  # noqa: E731
            clf = self._self_train(ctx, model, x, y, clf, refit, unlabeled)
        _copy_into_linear(clf, model.head[-1], len(ctx.label_names), ctx.multi_label)

    def _head_factory(self, ctx):
        from sklearn.linear_model import LogisticRegression
        from sklearn.multiclass import OneVsRestClassifier

        weight = "balanced" if ctx.config.class_weights == "balanced" else None

        def make(c: float):
            clf = LogisticRegression(
                C=c, max_iter=2000, class_weight=weight, random_state=ctx.config.seed
            )
            return OneVsRestClassifier(clf) if ctx.multi_label else clf

        return make

    def _choose_c(self, ctx, make, x: np.ndarray, y: np.ndarray, n_phrases: int) -> float:
        """The head's C by cross-validation on the labelled rows (the last C if too few).

        The last `n_phrases` rows, label phrases, are in every training fold and never scored:
        they are not examples of the data, and the easiest rows to get right.
        """
        from sklearn.model_selection import StratifiedKFold

        cs = self.options.C
        real = np.arange(len(y) - n_phrases)
        folds = 0 if ctx.multi_label else min(3, int(np.bincount(y[real]).min()))
        if folds < 2 or len(cs) < 2:
            return cs[-1]
        phrase_rows = np.arange(len(real), len(y))
        scores = np.zeros(len(cs))
        splitter = StratifiedKFold(folds, shuffle=True, random_state=ctx.config.seed)
        for fit_rows, held in splitter.split(real, y[real]):
            fit_rows = np.concatenate([fit_rows, phrase_rows])
            for i, c in enumerate(cs):
                scores[i] += make(c).fit(x[fit_rows], y[fit_rows]).score(x[held], y[held])
        return cs[int(np.argmax(scores))]

    def _self_train(self, ctx, model, x, y, clf, refit, unlabeled):
        """Refit the head on labelled + confident pseudo-labelled rows; record the counts."""
        opts = self.options
        texts, info = unlabeled
        x_unl = embed_texts(model, ctx, texts, progress="embedding unlabelled texts")
        how = SelfTraining(
            labeller=opts.pseudo_labeller,
            rounds=opts.self_train_rounds,
            per_class=opts.pseudo_per_class,
            fraction=opts.pseudo_fraction,
            min_confidence=opts.pseudo_min_confidence,
            weight=opts.pseudo_weight,
            neighbors=opts.spread_neighbors,
        )
        console.print(f"fewshot: self-training on {len(texts)} unlabelled texts ({how.labeller}).")
        clf, rounds = self_train(refit, clf, x, y, x_unl, how)
        kept = ", ".join(str(r["kept"]) for r in rounds)
        console.print(f"fewshot: self-training kept {kept} pseudo-labels (per round).")
        model.spec.setdefault("details", {})["self_training"] = {**info, "rounds": rounds}
        return clf


def in_length_groups(embed_rows, lengths: list[int], max_tokens: int = MAX_PADDED_TOKENS):
    """`embed_rows` run on length-sorted groups of a batch, results back in the batch's order.

    A contrastive batch groups rows by class, not length, so one long text would make all 64
    rows pay for its length. Same loss and gradients (padding is masked); a step on banking77
    went from 5.0 s to 1.9 s (1 thread).
    """

    def run(rows: list[int]) -> torch.Tensor:
        groups = sorted_batches([lengths[i] for i in rows], len(rows), max_tokens)
        out = torch.cat([embed_rows([rows[j] for j in group]) for group in groups])
        order = torch.as_tensor([j for group in groups for j in group])
        return out[torch.argsort(order)]

    return run


def supervised_contrastive_loss(
    emb: torch.Tensor, labels: torch.Tensor, scale: float
) -> torch.Tensor:
    """SupCon (Khosla et al. 2020) on L2-normalized embeddings: every same-class pair of the
    batch is a positive, every other-class pair a negative; anchors without a positive skip."""
    sims = scale * emb @ emb.T
    eye = torch.eye(len(emb), dtype=torch.bool)
    sims = sims.masked_fill(eye, float("-inf"))
    log_prob = sims - torch.logsumexp(sims, dim=1, keepdim=True)
    positive = (labels[:, None] == labels[None, :]) & ~eye
    n_pos = positive.sum(1)
    has = n_pos > 0
    if not has.any():
        return emb.sum() * 0.0
    per_anchor = log_prob.masked_fill(~positive, 0.0).sum(1)[has] / n_pos[has]
    return -per_anchor.mean()


class _Embedder(torch.nn.Module):
    """The encoder and pooling of a classifier: what contrastive tuning trains (no head)."""

    def __init__(self, model: TextClassifier) -> None:
        super().__init__()
        self.encoder, self.pooler = model.encoder, model.pooler

    def forward(self, input_ids, attention_mask) -> torch.Tensor:
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        return self.pooler(out.last_hidden_state, attention_mask)


def names_are_words(names: list[str]) -> bool:
    """True when every label name says something (not '3', 'LABEL_3' or 'c12')."""
    code = re.compile(r"^(label|class|cat|c)?[\s_-]*\d+$", re.IGNORECASE)
    return all(sum(ch.isalpha() for ch in n) >= 2 and not code.match(n) for n in names)


def label_phrase_rows(names: list[str], like):
    """Rows whose texts are the zero-shot phrases of each label name, labelled with it."""
    from tuneforge.data.dataset import TextDataset
    from tuneforge.methods.zeroshot import DEFAULT_TEMPLATES, LabelSpec

    texts, labels = [], []
    for name in names:
        for template in DEFAULT_TEMPLATES:
            texts.append(template.format(label=LabelSpec(name).text))
            labels.append(name)
    return TextDataset(
        texts=texts,
        labels=labels,
        source=like.source,
        lines=[0] * len(texts),
        text_col=like.text_col,
        label_col=like.label_col,
        multi_label=False,
    )


def _concat(a, b):
    from tuneforge.data.dataset import TextDataset

    return TextDataset(
        texts=a.texts + b.texts,
        labels=a.labels + b.labels,
        source=a.source,
        lines=a.lines + b.lines,
        text_col=a.text_col,
        label_col=a.label_col,
        multi_label=a.multi_label,
    )
