"""`token-classification`: a tag per word, read as spans (entities, skills, slots).

The model is the encoder with a linear layer on every token. Words are split into sub-tokens by
the base's fast tokenizer; the first sub-token of a word carries its tag (option:
`label_all_subtokens`, every sub-token). Sentences longer than the window are cut into
overlapping windows of whole words, never truncated; at prediction each word takes the window
where it sits farthest from an edge. Predictions are spans with character offsets in the user's
text, a type and a score (the mean probability of the span's tags). Option `crf`: a CRF with
BIO-constrained transitions on the logits, decoded per sentence with Viterbi (`tasks/crf.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from pydantic import Field
from torch import nn

from tuneforge.errors import DataError
from tuneforge.evaluation.calibration import softmax
from tuneforge.evaluation.metrics import evaluate_spans
from tuneforge.tasks import crf as crf_layer
from tuneforge.tasks.base import Task, TaskConfig, print_warnings, register_task, with_options
from tuneforge.tasks.tags import SCHEMES, decode_bio, repair_bio, tag_names
from tuneforge.tasks.token_data import TokenDataset, load_tokens, token_format
from tuneforge.training.job import TrainJob

_RECORDED = ("layer", "entity_types", "crf_scores")  # written by training, not options
IGNORE = -100  # targets the loss skips: special tokens, later sub-tokens of a word, padding


class TokenClassificationConfig(TaskConfig):
    scheme: str | None = Field(None, description="tag scheme of the data; None = detected")
    repair_tags: bool = False  # read a BIO I- that begins a span as its start (conlleval)
    label_all_subtokens: bool = False
    window_overlap: float = Field(0.25, ge=0, lt=1, description="share of a window's words")
    crf: bool = False  # a CRF over the word scores: trained transitions, Viterbi decoding
    layer: str | None = None  # the tag column/layer trained on (recorded)
    crf_scores: dict | None = None  # the trained CRF's scores (recorded; see tasks/crf.py)
    entity_types: list[str] = Field(default_factory=list)

    def model_post_init(self, _) -> None:
        if self.scheme is not None and self.scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {', '.join(SCHEMES)}")


@dataclass
class EntitySpan:
    start: int  # character offsets in the text: text[start:end] is the span
    end: int
    label: str
    text: str
    score: float

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("start", "end", "label", "text", "score")}


@dataclass
class TokenPrediction:
    text: str
    entities: list[EntitySpan] = field(default_factory=list)
    words: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"text": self.text, "entities": [e.to_dict() for e in self.entities]}


class TokenTagger(nn.Module):
    """encoder -> a linear layer on every token: logits (batch, tokens, tags)."""

    def __init__(self, encoder: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.encoder, self.head = encoder, head

    def readout(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(hidden)

    def token_states(self, input_ids, attention_mask) -> torch.Tensor:
        """The per-token vectors the head reads."""
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def embed(self, input_ids, attention_mask, **extra) -> torch.Tensor:
        """A sentence vector: the mean of the token vectors (what /v1/embeddings serves)."""
        from tuneforge.models.classifier import mean_pool

        return mean_pool(self.token_states(input_ids, attention_mask), attention_mask)

    def forward(self, input_ids, attention_mask, **extra) -> torch.Tensor:
        return self.head(self.token_states(input_ids, attention_mask))

    def outputs(self, input_ids, attention_mask, **extra) -> dict[str, torch.Tensor]:
        """Every output of one encoder pass: per-token `logits` and the mean `embedding`."""
        from tuneforge.models.classifier import mean_pool

        states = self.token_states(input_ids, attention_mask)
        return {"logits": self.head(states), "embedding": mean_pool(states, attention_mask)}


def new_head(dim: int, names: list[str], crf: bool = False, dropout: float = 0.1) -> nn.Module:
    layers = [nn.Dropout(dropout), nn.Linear(dim, len(names))]
    if crf:
        layers.append(crf_layer.TagTransitions(names))
    return nn.Sequential(*layers)


@register_task
class TokenClassification(Task):
    name = "token-classification"
    summary = "a tag per word, read as spans (entities, skills, slots)"
    Config = TokenClassificationConfig
    metrics = ("f1",)
    default_metric = "f1"
    # per text, a JSON list of {start, end, label, text, score}
    v2_outputs: ClassVar[dict[str, str]] = {"entities": "BYTES"}
    onnx_axes: ClassVar[dict[str, dict[int, str]]] = {"logits": {0: "batch", 1: "sequence"}}
    # a fresh per-token head needs larger steps than the classifiers' defaults: chosen on the
    # validation split of the slot set in tests/integration/test_token_e2e.py (MiniLM, 4 epochs:
    # partial 2e-4 -> val F1 0.80, 1e-3 -> 1.00; full 1e-4 -> 0.89, 3e-4 -> 1.00;
    # lora 1e-3 -> 0.84, 3e-3 -> 1.00; head 5e-3 -> 0.74, 2e-2 -> 0.85)
    default_lrs: ClassVar[dict[str, float]] = {
        "partial": 1e-3,
        "full": 3e-4,
        "lora": 3e-3,
        "head": 2e-2,
    }

    def __init__(self, options: dict | None = None) -> None:
        self.options = TokenClassificationConfig(**(options or {}))

    def configured(self, options: dict) -> TokenClassification:
        return with_options(self, options, _RECORDED)

    # ---- data --------------------------------------------------------------------------------
    @classmethod
    def recognizes(cls, path: Path) -> bool:
        return token_format(path) is not None

    def load(self, path, text_col=None, label_col=None, require_labels=True) -> TokenDataset:
        ds = load_tokens(
            path, label_col, require_labels, self.options.scheme, self.options.repair_tags
        )
        print_warnings(ds.warnings)
        return ds

    def load_for(self, model, data, text_col=None, label_col=None) -> TokenDataset:
        if isinstance(data, TokenDataset):
            return data
        opts = TokenClassificationConfig(**model.config.task_config)
        layer = opts.layer or ""
        trained_on = layer.removeprefix("column ") if layer.startswith("column ") else layer
        ds = load_tokens(data, label_col or trained_on or None, True, opts.scheme, opts.repair_tags)
        print_warnings(ds.warnings)
        return ds

    def check_trainable(self, ds: TokenDataset) -> None:
        if ds.tags is None:
            raise DataError(f"{ds.source}: no tags to train on.")
        if not ds.entity_types:
            raise DataError(
                f"{ds.source}: every tag is O; a model needs tagged spans to learn from."
            )
        if len(ds) < 4:
            raise DataError(f"{ds.source}: {len(ds)} sentences; at least 4 are needed.")

    def split(self, ds: TokenDataset, fraction: float, seed: int):
        order = np.random.default_rng(seed).permutation(len(ds))
        n_val = max(1, round(fraction * len(ds)))
        return ds.subset(sorted(order[n_val:].tolist())), ds.subset(sorted(order[:n_val].tolist()))

    def label_names(self, ds: TokenDataset) -> list[str]:
        return tag_names(ds.entity_types)

    def choose_method(self, train, max_minutes, base, model_scale):
        if max_minutes is not None and max_minutes < 2:
            return "head", f"time budget {max_minutes:g} min < 2 min: frozen token vectors + linear"
        return "partial", (
            f"{len(train)} sentences: tune the top layers on cached lower-layer outputs"
        )

    def inputs(self, ds: TokenDataset) -> list[list[str]]:
        return ds.words

    def token_ids(self, ctx, inputs: list[list[str]]) -> list[list[int]]:
        return encode_words(ctx.load_tokenizer(), inputs, ctx.max_length)[0]

    def prepare(self, ctx, ds: TokenDataset, split: str) -> TokenDataset:
        rows, words = windowed(
            ctx.load_tokenizer(), ds.words, ctx.max_length, self.options.window_overlap
        )
        from collections import Counter

        long = sum(n > 1 for n in Counter(i for i, _, _ in rows).values())  # sentences cut
        if not long:
            return ds
        from tuneforge.training.progress import console

        console.print(
            f"[yellow]warning:[/] {long} {'validation ' if split == 'eval' else ''}sentences "
            f"of {ds.source} are longer than the model's window of {ctx.max_length} tokens: "
            "each is cut into overlapping windows of whole words (nothing is truncated)."
        )
        out = ds.subset([i for i, _, _ in rows])
        out.words = words
        out.tags = None if ds.tags is None else [ds.tags[i][s:e] for i, s, e in rows]
        return out

    def warnings(self, train: TokenDataset, eval_ds, ctx) -> list[str]:
        found = []
        if eval_ds is not None and eval_ds.tags is not None:
            unseen = sorted(set(eval_ds.entity_types) - set(train.entity_types))
            if unseen:
                found.append(
                    f"{eval_ds.source} has span types training never saw: {', '.join(unseen)}"
                )
        return found

    def stats(self, ds: TokenDataset, ctx) -> dict:
        return {
            "sentences": len(ds),
            "tokens": sum(len(w) for w in ds.words),
            "spans": dict(sorted(ds.span_counts().items())),
            "scheme_read": ds.scheme,
            "layer": ds.layer,
            "source": ds.source,
        }

    # ---- model -------------------------------------------------------------------------------
    def new_model(self, ctx, encoder: nn.Module, **head) -> TokenTagger:
        torch.manual_seed(ctx.config.seed)
        dim = encoder.config.hidden_size
        model = TokenTagger(encoder, new_head(dim, ctx.label_names, self.options.crf))
        model.spec = {"head": "linear", "dim": dim, "text_prefix": ""}
        return model

    def load_model(self, encoder: nn.Module, config) -> TokenTagger:
        crf = TokenClassificationConfig(**config.task_config).crf
        return TokenTagger(encoder, new_head(encoder.config.hidden_size, config.labels, crf))

    def task_config(self, model, ctx) -> dict:
        types = sorted({t[2:] for t in ctx.label_names if t != "O"})
        crf = crf_layer.find(model)
        scores = crf.scores(ctx.label_names) if crf is not None else None
        return {**self.options.model_dump(), "layer": ctx.train.layer, "entity_types": types,
                "crf_scores": scores}  # fmt: skip

    # ---- training ----------------------------------------------------------------------------
    def job(self, ctx, module, features: dict, collate_one, lengths) -> TrainJob:
        tokenizer, index = ctx.load_tokenizer(), {t: i for i, t in enumerate(ctx.label_names)}
        aligned = {}
        for split, ds in ctx.splits().items():
            word_ids = encode_words(tokenizer, ds.words, ctx.max_length)[1]
            aligned[split] = [
                align_targets(w, [index.get(t, IGNORE) for t in tags], self.options)
                for w, tags in zip(word_ids, ds.tags, strict=True)
            ]
        loss = nn.CrossEntropyLoss(ignore_index=IGNORE, label_smoothing=ctx.config.label_smoothing)

        def targets(split: str, rows: list[int]) -> torch.Tensor:
            width = max(len(aligned[split][i][0]) for i in rows)
            out = torch.full((len(rows), width), IGNORE, dtype=torch.long)
            for r, i in enumerate(rows):
                out[r, : len(aligned[split][i][0])] = torch.tensor(aligned[split][i][0])
            return out

        crf = crf_layer.find(module)

        def token_loss(outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            if crf is not None:  # per scored token, as the cross-entropy is
                scored = (target != IGNORE).sum().clamp(min=1)
                return crf.nll(*crf_layer.compact(outputs, target, IGNORE)) / scored
            return loss(outputs.reshape(-1, outputs.shape[-1]), target.reshape(-1))

        def score(split: str, outputs: list[torch.Tensor]) -> dict[str, float]:
            ds = ctx.splits()[split]
            scores = crf.scores(ctx.label_names) if crf is not None else None
            pred = [
                word_tags(ctx.label_names, out, firsts, len(tags), scores)
                for out, (_, firsts), tags in zip(outputs, aligned[split], ds.tags, strict=True)
            ]
            result = evaluate_spans(ds.tags, pred)
            # the mean over every scored token (a row may have none: a window of dropped words);
            # cross-entropy of the word scores with a CRF too, so runs compare
            flat_out = torch.cat(
                [out[: len(t)] for out, (t, _) in zip(outputs, aligned[split], strict=True)]
            )
            flat_target = torch.tensor([x for t, _ in aligned[split] for x in t])
            scored = flat_target != IGNORE
            eval_loss = float(loss(flat_out[scored], flat_target[scored])) if scored.any() else 0.0
            return {
                "f1": result.f1,
                "precision": result.precision,
                "recall": result.recall,
                "macro_f1": result.macro_f1,
                "eval_loss": eval_loss,
            }

        return TrainJob(
            module=module,
            collate=lambda split, ix: collate_one([features[split][i] for i in ix]),
            lengths={split: [lengths(f) for f in rows] for split, rows in features.items()},
            targets=targets,
            loss=token_loss,
            score=score,
            metric=ctx.config.metric or self.default_metric,
        )

    # ---- inference ---------------------------------------------------------------------------
    def word_probabilities(self, model, words: list[list[str]], batch_size: int = 64):
        """Tag probabilities (words, tags) per sentence, windows merged."""
        from tuneforge.models.encode import map_id_batches

        opts = TokenClassificationConfig(**model.config.task_config)
        tokenizer, max_len = model.tokenizer, model.config.max_length
        rows, pieces = windowed(tokenizer, words, max_len, opts.window_overlap)
        ids, word_ids = encode_words(tokenizer, pieces, max_len)
        pad = tokenizer.pad_token_id or 0
        logits = map_id_batches(
            lambda b: list(model.runtime.forward(b)["logits"]), ids, pad, batch_size
        )
        merged = [np.zeros((len(w), len(model.labels)), dtype=np.float32) for w in words]
        best_margin = [np.full(len(w), -1) for w in words]
        for (i, s, e), z, wids in zip(rows, logits, word_ids, strict=True):
            for k, position in first_positions(wids):
                word, margin = s + k, min(k, e - s - 1 - k)  # distance to the window's edge
                if margin > best_margin[i][word]:
                    merged[i][word], best_margin[i][word] = z[position], margin
        return [softmax(m) if len(m) else m for m in merged]

    def predict(self, model, inputs, batch_size: int = 64, **options) -> list[TokenPrediction]:
        """Spans of each text (a string: split into words, offsets into it) or word list."""
        if isinstance(inputs, str):
            inputs = [inputs]
        ds = (
            TokenDataset.from_words(inputs)
            if inputs and isinstance(inputs[0], list)
            else TokenDataset.from_texts(list(inputs))
        )
        probs = self.word_probabilities(model, ds.words, batch_size) if len(ds) else []
        scores = TokenClassificationConfig(**model.config.task_config).crf_scores
        return [
            self._spans(model.labels, p, text, words, offs, scores)
            for p, text, words, offs in zip(probs, ds.texts, ds.words, ds.offsets, strict=True)
        ]

    def prediction_columns(self, model, texts: list[str], batch_size: int = 64) -> dict:
        return self.v2_columns(self.predict(model, texts, batch_size))

    def v2_columns(self, predictions: list[TokenPrediction]) -> dict[str, list]:
        import json

        return {
            "entities": [
                json.dumps([e.to_dict() for e in p.entities], ensure_ascii=False)
                for p in predictions
            ]
        }

    def _spans(self, names, p, text, words, offsets, scores=None) -> TokenPrediction:
        tags = decode_tags(names, _log(p), scores)
        best = p.max(-1) if len(p) else np.zeros(0)
        entities = [
            EntitySpan(
                start=offsets[s][0],
                end=offsets[e - 1][1],
                label=t,
                text=text[offsets[s][0] : offsets[e - 1][1]],
                score=round(float(best[s:e].mean()), 6),
            )
            for s, e, t in decode_bio(tags)
        ]
        return TokenPrediction(text, entities, list(words), tags)

    def evaluate(self, model, ds: TokenDataset, batch_size: int = 64):
        if ds.tags is None:
            raise DataError(f"{ds.source} has no tags to evaluate against.")
        probs = self.word_probabilities(model, ds.words, batch_size)
        scores = TokenClassificationConfig(**model.config.task_config).crf_scores
        pred = [decode_tags(model.labels, _log(p), scores) for p in probs]
        return evaluate_spans(ds.tags, pred, ds.words)


def _log(probabilities: np.ndarray) -> np.ndarray:
    return np.log(np.clip(probabilities, 1e-12, None))


def encode_words(tokenizer, words: list[list[str]], max_length: int):
    """(token ids, word index per token: None for special tokens) of each word list."""
    if not words:
        return [], []
    enc = tokenizer(words, is_split_into_words=True, truncation=True, max_length=max_length)
    return enc["input_ids"], [enc.word_ids(i) for i in range(len(words))]


def first_positions(word_ids: list[int | None]) -> list[tuple[int, int]]:
    """(word, position of its first sub-token) of each word the tokenizer kept."""
    seen, out = set(), []
    for position, w in enumerate(word_ids):
        if w is not None and w not in seen:
            seen.add(w)
            out.append((w, position))
    return out


def word_tags(names, logits: torch.Tensor, firsts, n_words: int, scores=None) -> list[str]:
    """Valid BIO tags of a sentence's words from its token logits (O for a word with no
    sub-token, which some tokenizers drop, e.g. a lone control character)."""
    tags = ["O"] * n_words
    if firsts:
        kept = logits[[p for _, p in firsts]].float().numpy()
        for (w, _), tag in zip(firsts, decode_tags(names, kept, scores), strict=True):
            tags[w] = tag
    return repair_bio(tags)


def decode_tags(names: list[str], log_scores: np.ndarray, crf_scores=None) -> list[str]:
    """Valid BIO tags from (words, tags) logits or log-probabilities (they differ by one
    constant per word, so both decode alike): word by word, or with a CRF's scores the best
    allowed sequence of the sentence."""
    if not len(log_scores):
        return []
    if crf_scores is None:
        return repair_bio([names[j] for j in log_scores.argmax(-1)])
    return [names[j] for j in crf_layer.viterbi(log_scores, crf_scores)]


def align_targets(word_ids, tag_ids: list[int], options) -> tuple[list[int], list]:
    """(a target per token, the first-sub-token positions): IGNORE except on a word's first
    sub-token or, with `label_all_subtokens`, on each (a B- tag's later pieces take I-)."""
    targets, previous = [], None
    for w in word_ids:
        if w is None:
            targets.append(IGNORE)
        elif w != previous:
            targets.append(tag_ids[w])
        else:
            targets.append(_inside(tag_ids[w]) if options.label_all_subtokens else IGNORE)
        previous = w
    return targets, first_positions(word_ids)


def _inside(tag_id: int) -> int:
    # tag_names orders O, B-t, I-t, ...: a B- (odd id) becomes the I- right after it
    return tag_id + 1 if tag_id > 0 and tag_id % 2 == 1 else tag_id


def sentence_windows(tokenizer, words: list[list[str]], max_length: int, overlap: float):
    """Per sentence, [(first word, end word)] windows whose sub-tokens fit `max_length`."""
    budget = max_length - tokenizer.num_special_tokens_to_add()
    out = []
    counts_all = _subtoken_counts(tokenizer, words)
    for counts in counts_all:
        if sum(counts) <= budget:
            out.append([(0, len(counts))])
            continue
        windows, start = [], 0
        while start < len(counts):
            end, used = start, 0
            while end < len(counts) and used + max(counts[end], 1) <= budget:
                used += max(counts[end], 1)
                end += 1
            end = max(end, start + 1)  # a word longer than the window still gets one
            windows.append((start, end))
            if end >= len(counts):
                break
            start = max(start + 1, end - int(overlap * (end - start)))
        out.append(windows)
    return out


def windowed(tokenizer, words: list[list[str]], max_length: int, overlap: float):
    """([(sentence, first word, end word)] of every window, the words of each window)."""
    rows = [
        (i, s, e)
        for i, ws in enumerate(sentence_windows(tokenizer, words, max_length, overlap))
        for s, e in ws
    ]
    return rows, [words[i][s:e] for i, s, e in rows]


def _subtoken_counts(tokenizer, words: list[list[str]]) -> list[list[int]]:
    if not words:
        return []
    enc = tokenizer(words, is_split_into_words=True, add_special_tokens=False, verbose=False)
    out = []
    for i, ws in enumerate(words):
        counts = [0] * len(ws)
        for w in enc.word_ids(i):
            if w is not None:
                counts[w] += 1
        out.append(counts)
    return out
