"""`chat`: supervised fine-tuning of a causal LM on conversations (alias `causal-lm`).

Data is any format of `tasks/chat_data.py` (messages, Alpaca, prompt/completion, plain text),
rendered with the base tokenizer's chat template; the loss falls on the assistant turns (option
`loss_on`). The model is the Hugging Face causal LM itself (`CausalLM.encoder`) with an empty
`.head`, so `lora` (adapters merged on save), `full` and the torch runtime work unchanged.

The loss is next-token cross-entropy on the labelled positions only: the decoder body gives the
last hidden states, and the output embedding (vocabulary projection, the costliest matmul of a
small LM on CPU) is applied only where a label is, not to every position of the batch.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn

from tuneforge.errors import ConfigError, DataError
from tuneforge.tasks.base import Task, TaskConfig, print_warnings, register_task, with_options
from tuneforge.tasks.chat_data import (
    IGNORE,
    NOT_CHAT_KEYS,
    ChatDataset,
    chat_format,
    json_rows,
    load_chats,
    tokenize_chats,
)
from tuneforge.tasks.chat_packing import pack, pack_labels, packed_batches
from tuneforge.training.job import TrainJob


class ChatConfig(TaskConfig):
    loss_on: Literal["assistant", "all", "text"] = "assistant"
    truncate: bool = False  # cut rows longer than --max-length (with a warning), not an error
    # pack short training rows into --max-length windows (block-diagonal attention), no padding
    packing: bool = False


class CausalLM(nn.Module):
    """A Hugging Face causal LM as a task model: `.encoder` is the LM (LoRA wraps it, the runtime
    saves it), `.head` is empty; forward gives the last hidden states, not logits."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder, self.head = encoder, nn.Identity()

    @property
    def hf_model(self) -> nn.Module:
        """The `*ForCausalLM` under any PEFT wrapper (what `generate` runs)."""
        lm = self.encoder
        return lm.get_base_model() if hasattr(lm, "get_base_model") else lm

    def body(self) -> nn.Module:
        lm = self.hf_model
        return getattr(lm, lm.base_model_prefix)

    def project(self, hidden: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits of some hidden states (the LM's output embedding)."""
        return self.hf_model.get_output_embeddings()(hidden)

    def forward(self, input_ids, attention_mask=None, position_ids=None, **extra) -> torch.Tensor:
        # no KV cache: it is of no use here, and with one the decoder would not see packing
        return self.body()(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=False,
        ).last_hidden_state

    def top_layers_module(self, layers: nn.ModuleList) -> TopDecoder:
        """What `partial` trains: these top layers on cached states (methods/partial.py)."""
        return TopDecoder(self, layers)

    def outputs(self, input_ids, attention_mask, **extra) -> dict[str, torch.Tensor]:
        """The next-token `logits` after each row's last token, and the mean `embedding`."""
        from tuneforge.models.classifier import mean_pool

        states = self(input_ids, attention_mask)
        last = attention_mask.sum(1) - 1
        logits = self.project(states[torch.arange(len(states)), last])
        return {"logits": logits, "embedding": mean_pool(states, attention_mask)}


class TopDecoder(nn.Module):
    """The decoder's top layers on cached hidden states. The LM body itself runs, with only
    these layers in place, so the causal (or packed) mask, rotary positions and final norm are
    exactly those of a whole pass; its output is the last hidden states, like `CausalLM`'s."""

    def __init__(self, lm: CausalLM, layers: nn.ModuleList) -> None:
        super().__init__()
        self.layers = layers
        self._lm = (lm,)  # a tuple, so the frozen model is no submodule of what trains

    def forward(self, hidden, attention_mask=None, position_ids=None) -> torch.Tensor:
        body = self._lm[0].body()
        every = body.layers
        body.layers = self.layers
        try:
            return body(
                inputs_embeds=hidden,
                attention_mask=attention_mask,
                position_ids=position_ids,
                use_cache=False,
            ).last_hidden_state
        finally:
            body.layers = every

    def project(self, hidden: torch.Tensor) -> torch.Tensor:
        return self._lm[0].project(hidden)


def next_token_loss(
    model: CausalLM, hidden: torch.Tensor, labels: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """Cross-entropy of each labelled token given the states before it; the vocabulary
    projection runs only at those positions."""
    states, targets = hidden[:, :-1], labels[:, 1:].to(hidden.device)
    scored = targets != IGNORE
    if not scored.any():
        return hidden.sum() * 0.0  # keeps the graph: a batch without labels adds nothing
    logits = model.project(states[scored]).float()
    return nn.functional.cross_entropy(logits, targets[scored], reduction=reduction)


@register_task
class Chat(Task):
    name = "chat"
    summary = "supervised fine-tuning of a causal LM on conversations"
    Config = ChatConfig
    # the loop maximizes its metric: the negated validation loss (per labelled token)
    metrics = ("neg_loss",)
    default_metric = "neg_loss"
    # "generated", not "text": `predict --file` adds it beside the rows' own text column
    v2_outputs: ClassVar[dict[str, str]] = {"generated": "BYTES"}
    # lora / full: common SFT recipes for ~100M-1B models, LoRA r=16/alpha=32 at 1e-4..1e-3 and
    # full fine-tuning at 2e-5..5e-5, taken at the small-model end of each (lora 5e-4 matched
    # TRL's validation loss within 0.023 in bench_chat; full is not measured)
    # partial: measured on SmolLM2 support answers (benchmarks/bench_chat.py), validation loss
    # 2.60 / 1.88 / 1.31 / 0.71 at 2e-4 / 5e-4 / 1e-3 / 2e-3 (top 4 layers, 2 epochs); 1e-3 is
    # the default, a step short of the best on that one small task
    default_lrs: ClassVar[dict[str, float]] = {"lora": 5e-4, "full": 5e-5, "partial": 1e-3}
    # a 30-layer decoder keeps ~80 KB of activations per token and layer for the backward pass:
    # SmolLM2 LoRA at the default batch of 32 rows of ~180 tokens ran out of 24 GB; 8 peaked at
    # 6.5 GB. Conversations are longer than the classifier's 128-token texts.
    default_config: ClassVar[dict[str, Any]] = {"batch_size": 8, "max_length": 512}

    def __init__(self, options: dict | None = None) -> None:
        self.options = ChatConfig(**(options or {}))

    def configured(self, options: dict) -> Chat:
        return with_options(self, options)

    # ---- data --------------------------------------------------------------------------------
    @classmethod
    def recognizes(cls, path: Path) -> bool:
        # plain `text` rows could as well be unlabelled text for a classifier: --task chat
        if chat_format(path) in (None, "text"):
            return False
        first = next(json_rows(Path(path)), None)
        return first is not None and not NOT_CHAT_KEYS & set(first[1])

    def load(self, path, text_col=None, label_col=None, require_labels=True) -> ChatDataset:
        ds = load_chats(path, require_target=require_labels)
        print_warnings(ds.warnings)
        return ds

    def check_trainable(self, ds: ChatDataset) -> None:
        if len(ds) < 2:
            raise DataError(
                f"{ds.source}: {len(ds)} conversation; at least 2 are needed (one is held out "
                "for validation)."
            )

    def split(self, ds: ChatDataset, fraction: float, seed: int):
        order = np.random.default_rng(seed).permutation(len(ds))
        n_val = min(max(1, round(fraction * len(ds))), len(ds) - 1)
        return ds.subset(sorted(order[n_val:].tolist())), ds.subset(sorted(order[:n_val].tolist()))

    def choose_method(self, train, max_minutes, base, model_scale):
        return "lora", f"{len(train)} conversations: LoRA adapters on every linear layer"

    def label_names(self, ds) -> list[str]:
        return []  # a generative model has no output classes

    def inputs(self, ds: ChatDataset) -> list:
        """The tokenized rows once `prepare` ran, else the conversations."""
        return getattr(ds, "tokenized", None) or ds.conversations

    def token_ids(self, ctx, inputs: list) -> list[list[int]]:
        if inputs and isinstance(inputs[0], dict) and "input_ids" in inputs[0]:
            return [row["input_ids"] for row in inputs]
        ds = ChatDataset([list(c) for c in inputs], "messages")
        return [r["input_ids"] for r in self._tokenize(ctx.load_tokenizer(), ds, ctx.max_length)]

    def _tokenize(self, tokenizer, ds: ChatDataset, max_length: int):
        rows = tokenize_chats(
            tokenizer, ds, max_length, self.options.loss_on, self.options.truncate
        )
        print_warnings(rows.warnings)
        return rows

    def prepare(self, ctx, ds: ChatDataset, split: str) -> ChatDataset:
        """Tokenize once per split; the rows keep their labels for the job's targets."""
        out = ds.subset(list(range(len(ds))))
        out.tokenized = self._tokenize(ctx.load_tokenizer(), ds, ctx.max_length)
        return out

    def stats(self, ds: ChatDataset, ctx) -> dict:
        return {"conversations": len(ds), "format": ds.format, "source": ds.source}

    # ---- model -------------------------------------------------------------------------------
    def new_model(self, ctx, encoder: nn.Module, **head) -> CausalLM:
        if not hasattr(encoder, "get_output_embeddings") or encoder.get_output_embeddings() is None:
            raise ConfigError(
                f"Base '{ctx.config.base}' is not a causal LM; the chat task needs one (e.g. "
                "--base smollm2, or a local *ForCausalLM directory)."
            )
        model = CausalLM(encoder)
        model.spec = {"head": "lm", "dim": encoder.config.hidden_size, "text_prefix": ""}
        return model

    def load_model(self, encoder: nn.Module, config) -> CausalLM:
        return CausalLM(encoder)

    def task_config(self, model, ctx) -> dict:
        return self.options.model_dump()

    # ---- training ----------------------------------------------------------------------------
    def job(self, ctx, module: nn.Module, features: dict, collate_one, lengths) -> TrainJob:
        rows = {split: self.inputs(ds) for split, ds in ctx.splits().items()}
        packed = self.options.packing  # training batches only: scores need each row's outputs
        window, pad = ctx.max_length, ctx.load_tokenizer().pad_token_id or 0

        def collate(split: str, ix: list[int]) -> dict[str, torch.Tensor]:
            if packed and split == "train":
                return pack([features[split][i] for i in ix], window, pad)
            return collate_one([features[split][i] for i in ix])

        def targets(split: str, ix: list[int]) -> torch.Tensor:
            if packed and split == "train":
                return pack_labels([rows[split][i]["labels"] for i in ix], window)
            width = max(len(rows[split][i]["labels"]) for i in ix)
            out = torch.full((len(ix), width), IGNORE, dtype=torch.long)
            for r, i in enumerate(ix):
                labels = rows[split][i]["labels"]
                out[r, : len(labels)] = torch.tensor(labels)
            return out

        def score(split: str, outputs: list[torch.Tensor]) -> dict[str, float]:
            states, targets = [], []  # every row's scored positions, projected in chunks below
            for row, hidden in zip(rows[split], outputs, strict=True):
                labels = torch.tensor(row["labels"][1:])
                keep = labels != IGNORE
                states.append(hidden[: len(labels)][keep])
                targets.append(labels[keep])
            states, targets = torch.cat(states), torch.cat(targets)
            total = 0.0
            with torch.no_grad():
                for at in range(0, len(targets), 2048):  # 2048 x 49k logits: 0.4 GB at most
                    logits = module.project(states[at : at + 2048]).float()
                    total += float(nn.functional.cross_entropy(
                        logits, targets[at : at + 2048], reduction="sum"))  # fmt: skip
            loss = total / max(len(targets), 1)
            return {"neg_loss": -loss, "eval_loss": loss, "perplexity": _perplexity(loss)}

        sizes = {split: [lengths(f) for f in feats] for split, feats in features.items()}
        batches = None
        if packed:
            cfg = ctx.config

            def batches(epoch: int) -> list[list[int]]:
                return packed_batches(sizes["train"], window, cfg.batch_size, cfg.seed + epoch)

        return TrainJob(
            module=module,
            collate=collate,
            lengths=sizes,
            batches=batches,
            targets=targets,
            loss=lambda hidden, labels: next_token_loss(module, hidden, labels),
            score=score,
            metric=ctx.config.metric or self.default_metric,
        )

    # ---- inference ---------------------------------------------------------------------------
    def load_for(self, model, data, text_col=None, label_col=None) -> ChatDataset:
        return data if isinstance(data, ChatDataset) else self.load(data)

    def predict(self, model, inputs, batch_size: int = 8, **options) -> list:
        """A `Generation` per prompt (a string) or conversation ([{role, content}]); options
        are `GenerationOptions` fields (max_new_tokens, temperature, stop, ...)."""
        from tuneforge.generation import GenerationOptions, generate

        opts = options.pop("options", None) or GenerationOptions.build(**options)
        if isinstance(inputs, str) or (inputs and isinstance(inputs[0], dict)):
            inputs = [inputs]
        lm = hf_model_of(model)
        return generate(lm, model.tokenizer, list(inputs), opts, batch_size=min(batch_size, 8))

    def prediction_columns(self, model, texts: list[str], batch_size: int = 8) -> dict:
        return self.v2_columns(self.predict(model, texts, batch_size))

    def v2_columns(self, predictions: list) -> dict[str, list]:
        return {"generated": [p.text for p in predictions]}

    def evaluate(self, model, ds: ChatDataset, batch_size: int = 8):
        from tuneforge.tasks.chat_eval import evaluate_chat

        opts = ChatConfig(**model.config.task_config)
        rows = tokenize_chats(model.tokenizer, ds, model.config.max_length, opts.loss_on, True)
        return evaluate_chat(model, ds, rows, batch_size)


def hf_model_of(model) -> nn.Module:
    """The Hugging Face causal LM inside a TunedModel's torch runtime."""
    found = getattr(getattr(model, "runtime", None), "classifier", None)
    if not isinstance(found, CausalLM):
        raise ConfigError(
            f"Generation needs the model's PyTorch weights; {model.config.runtime} runtimes "
            "cannot generate. Use the artifact `tuneforge train` wrote."
        )
    return found.hf_model.eval()


def _perplexity(loss: float) -> float:
    return math.exp(min(loss, 50.0))  # capped: an untrained model's would overflow
