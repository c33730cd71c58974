"""The chat task's evaluation: loss and perplexity on the labelled tokens, and greedy answers
to each conversation's last user turn scored against its assistant turn (exact match, token F1,
ROUGE-L; JSON validity and field F1 when the references are JSON objects: see
`evaluation/generative.py`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from tuneforge.evaluation.generative import GenerativeScores, score_generations
from tuneforge.tasks.chat_data import IGNORE, ChatDataset
from tuneforge.training.batching import pad_token_batch, sorted_batches

# prompts generated for at once: a batch's KV cache grows with it (SmolLM2-135M: ~46 KB a token,
# so 16 rows of 1,000 tokens take 0.7 GB), while beyond ~16 rows a CPU gains little per row
GENERATION_BATCH = 16
WORST_EXAMPLES = 20


@dataclass
class ChatEvalResult:
    loss: float  # mean next-token cross-entropy per labelled token
    perplexity: float
    exact_match: float | None  # None when no conversation ends with an assistant turn
    token_f1: float | None
    rouge_l: float | None
    n: int  # conversations
    tokens: int  # labelled tokens the loss is over
    answered: int  # conversations whose last assistant turn was generated and scored
    # when every reference answer is a JSON object: the share of answers that are one, and F1
    # over (field, value) pairs, micro and per field (precision, recall, f1, support)
    json_valid: float | None = None
    field_f1: float | None = None
    field_scores: dict[str, dict[str, float]] | None = None
    # up to 20 misses, worst ROUGE-L (then token F1) first: prompt, expected, generated, scores
    examples: list[dict] = field(default_factory=list)

    @property
    def eval_loss(self) -> float:
        return self.loss  # the name training's validation entries use

    def to_dict(self) -> dict:
        out = asdict(self)
        out["eval_loss"] = self.loss
        if self.json_valid is None:
            for key in ("json_valid", "field_f1", "field_scores"):
                del out[key]
        return out

    def save(self, path: str | Path) -> Path:
        from tuneforge.paths import write_text_atomically

        return write_text_atomically(path, json.dumps(self.to_dict(), indent=1))

    def summary(self) -> dict:
        keys = ("loss", "perplexity", "exact_match", "token_f1", "rouge_l", "n")
        if self.json_valid is not None:
            keys += ("json_valid", "field_f1")
        return {k: getattr(self, k) for k in keys}

    def summary_line(self) -> str:
        line = f"loss {self.loss:.4f} · perplexity {self.perplexity:.2f}"
        if self.exact_match is not None:
            line += (
                f" · exact match {self.exact_match:.4f} · token F1 {self.token_f1:.4f}"
                f" · ROUGE-L {self.rouge_l:.4f}"
            )
        if self.json_valid is not None:
            line += f" · valid JSON {self.json_valid:.4f} · field F1 {self.field_f1:.4f}"
        return line + f" · n={self.n} conversations"

    def table(self, title: str = "Evaluation"):
        """The worst answers beside their references (the summary line is printed apart)."""
        from rich.table import Table

        table = Table(title=title)
        for col in ("expected", "generated", "ROUGE-L"):
            table.add_column(col, justify="right" if col == "ROUGE-L" else "left")
        for example in self.examples[:10]:
            table.add_row(example["expected"], example["generated"], f"{example['rouge_l']:.3f}")
        return table


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


def evaluate_chat(
    model, ds: ChatDataset, rows, batch_size: int = 8, progress: bool = True
) -> ChatEvalResult:
    from tuneforge.generation import GenerationOptions
    from tuneforge.tasks.chat import _perplexity, hf_model_of

    hf_model_of(model)  # a clear error for runtimes that cannot generate
    lm, tokenizer = model.runtime.classifier.eval(), model.tokenizer
    total, count = labelled_loss(lm, list(rows), tokenizer.pad_token_id or 0, batch_size)
    loss = total / max(count, 1)
    asked = [c for c in ds.conversations if len(c) > 1 and c[-1]["role"] == "assistant"]
    scores, examples = None, []
    if asked:
        expected = [c[-1]["content"] for c in asked]
        longest = max(len(tokenizer(e, add_special_tokens=False)["input_ids"]) for e in expected)
        # greedy, and no longer than the longest reference (+ room for the end of turn)
        opts = GenerationOptions(max_new_tokens=min(longest + 8, 512))
        size = max(1, min(batch_size, GENERATION_BATCH))
        found = generate_all(lm.hf_model, tokenizer, [c[:-1] for c in asked], opts, size, progress)
        scores = score_generations([g.text for g in found], expected)
        examples = worst_examples(asked, [g.text for g in found], scores)
    json_scores = scores.json if scores else None
    return ChatEvalResult(
        loss=loss,
        perplexity=_perplexity(loss) if count else math.nan,
        exact_match=scores.exact_match if scores else None,
        token_f1=scores.token_f1 if scores else None,
        rouge_l=scores.rouge_l if scores else None,
        n=len(ds),
        tokens=count,
        answered=len(asked),
        json_valid=json_scores.valid if json_scores else None,
        field_f1=json_scores.f1 if json_scores else None,
        field_scores=json_scores.per_field if json_scores else None,
        examples=examples,
    )


def generate_all(lm, tokenizer, prompts: list, opts, batch_size: int, progress: bool) -> list:
    """`generate` over every prompt, `batch_size` at a time in order of length (less padding),
    with a progress bar (on stderr) when there is more than one batch; results in input order."""
    from tuneforge.generation import generate
    from tuneforge.generation.generate import encode_prompt

    lengths = [len(encode_prompt(tokenizer, p)) for p in prompts]
    order = sorted(range(len(prompts)), key=lengths.__getitem__)
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if progress and len(batches) > 1:
        from rich.progress import track

        from tuneforge.training.progress import console

        batches = track(batches, "generating answers", console=console, transient=True)
    out: list = [None] * len(prompts)
    for batch in batches:
        found = generate(lm, tokenizer, [prompts[i] for i in batch], opts, batch_size=batch_size)
        for i, generation in zip(batch, found, strict=True):
            out[i] = generation
    return out


def worst_examples(asked: list, generated: list[str], scores: GenerativeScores) -> list[dict]:
    """The missed answers, lowest ROUGE-L then token F1 first, with the turns before them."""
    missed = [i for i, row in enumerate(scores.rows) if not row["exact_match"]]
    missed.sort(key=lambda i: (scores.rows[i]["rouge_l"], scores.rows[i]["token_f1"]))
    return [
        {
            "prompt": "\n\n".join(f"{m['role']}: {m['content']}" for m in asked[i][:-1]),
            "expected": asked[i][-1]["content"],
            "generated": generated[i],
            "rouge_l": scores.rows[i]["rouge_l"],
            "token_f1": scores.rows[i]["token_f1"],
        }
        for i in missed[:WORST_EXAMPLES]
    ]
