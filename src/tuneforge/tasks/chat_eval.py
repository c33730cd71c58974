"""The chat task's evaluation: loss and perplexity on the labelled tokens, and greedy answers
to each conversation's last user turn scored against its assistant turn (exact match, token F1).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from tuneforge.tasks.chat_data import IGNORE, ChatDataset
from tuneforge.training.batching import pad_token_batch, sorted_batches


@dataclass
class ChatEvalResult:
    eval_loss: float  # mean next-token cross-entropy per labelled token
    perplexity: float
    exact_match: float | None  # None when no conversation ends with an assistant turn
    token_f1: float | None
    n: int  # conversations
    tokens: int  # labelled tokens the loss is over
    answered: int  # conversations whose last assistant turn was generated and scored
    examples: list[dict] = field(default_factory=list)  # up to 20 misses

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path: str | Path) -> Path:
        from tuneforge.paths import write_text_atomically

        return write_text_atomically(path, json.dumps(self.to_dict(), indent=1))

    def summary(self) -> dict:
        keys = ("eval_loss", "perplexity", "exact_match", "token_f1", "n")
        return {k: getattr(self, k) for k in keys}

    def summary_line(self) -> str:
        line = f"loss {self.eval_loss:.4f} · perplexity {self.perplexity:.2f}"
        if self.exact_match is not None:
            line += f" · exact match {self.exact_match:.4f} · token F1 {self.token_f1:.4f}"
        return line + f" · n={self.n} conversations"

    def table(self, title: str = "Evaluation"):
        from rich.table import Table

        table = Table(title=title, caption=self.summary_line())
        for col in ("expected", "generated"):
            table.add_column(col)
        for example in self.examples[:10]:
            table.add_row(example["expected"], example["generated"])
        return table


def normalize(text: str) -> str:
    """Trimmed, case-folded, whitespace runs as one space."""
    return " ".join(text.casefold().split())


def token_f1(generated: str, expected: str) -> float:
    """F1 of the shared whitespace tokens of the normalized texts (SQuAD's, without its
    English-specific article and punctuation stripping)."""
    pred, gold = normalize(generated).split(), normalize(expected).split()
    if not pred or not gold:
        return float(pred == gold)
    common = sum((Counter(pred) & Counter(gold)).values())
    if not common:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


@torch.inference_mode()
def labelled_loss(lm, rows: list[dict], pad_id: int, batch_size: int) -> tuple[float, int]:
    """(summed next-token cross-entropy, labelled tokens) over tokenized rows."""
    from tuneforge.tasks.chat import next_token_loss

    total, count = 0.0, 0
    for batch in sorted_batches([len(r["input_ids"]) for r in rows], batch_size):
        inputs = pad_token_batch([rows[i]["input_ids"] for i in batch], pad_id)
        width = inputs["input_ids"].shape[1]
        labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
        for r, i in enumerate(batch):
            labels[r, : len(rows[i]["labels"])] = torch.tensor(rows[i]["labels"])
        n = int((labels[:, 1:] != IGNORE).sum())
        if n:
            hidden = lm(**inputs)
            total += float(next_token_loss(lm, hidden, labels, reduction="sum"))
            count += n
    return total, count


def evaluate_chat(model, ds: ChatDataset, rows, batch_size: int = 8) -> ChatEvalResult:
    from tuneforge.generation import GenerationOptions, generate
    from tuneforge.tasks.chat import _perplexity, hf_model_of

    hf_model_of(model)  # a clear error for runtimes that cannot generate
    lm, tokenizer = model.runtime.classifier.eval(), model.tokenizer
    total, count = labelled_loss(lm, list(rows), tokenizer.pad_token_id or 0, batch_size)
    loss = total / max(count, 1)
    asked = [c for c in ds.conversations if len(c) > 1 and c[-1]["role"] == "assistant"]
    em = f1 = None
    examples = []
    if asked:
        expected = [c[-1]["content"] for c in asked]
        longest = max(len(tokenizer(e, add_special_tokens=False)["input_ids"]) for e in expected)
        # greedy, and no longer than the longest reference (+ room for the end of turn)
        opts = GenerationOptions(max_new_tokens=min(longest + 8, 512))
        found = generate(lm.hf_model, tokenizer, [c[:-1] for c in asked], opts, batch_size=8)
        hits = [normalize(g.text) == normalize(e) for g, e in zip(found, expected, strict=True)]
        f1s = [token_f1(g.text, e) for g, e in zip(found, expected, strict=True)]
        em, f1 = sum(hits) / len(hits), sum(f1s) / len(f1s)
        examples = [
            {"expected": e, "generated": g.text}
            for g, e, hit in zip(found, expected, hits, strict=True)
            if not hit
        ][:20]
    return ChatEvalResult(
        eval_loss=loss,
        perplexity=_perplexity(loss) if count else math.nan,
        exact_match=em,
        token_f1=f1,
        n=len(ds),
        tokens=count,
        answered=len(asked),
        examples=examples,
    )
