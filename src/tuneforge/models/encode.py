"""Batched, length-sorted inference over texts, returning results in input order."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from tuneforge.training.batching import pad_token_batch, sorted_batches

# Padded tokens per batch (inference, and few-shot training steps): small enough that a long
# text does not make a batch of short ones pay for its length, large enough to keep matrix
# products efficient (best of 64–512 on banking77, int8 ONNX and fp32; see `sorted_batches`).
MAX_PADDED_TOKENS = 256


def token_batches(
    tokenizer,
    texts: list[str],
    max_length: int,
    batch_size: int,
    prefix: str = "",
    max_tokens: int | None = None,
) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
    """Yield (row indices, padded batch) with similar lengths together (less padding, faster)."""
    ids = tokenizer([prefix + t for t in texts], truncation=True, max_length=max_length)[
        "input_ids"
    ]
    pad = tokenizer.pad_token_id or 0
    for batch in sorted_batches([len(x) for x in ids], batch_size, max_tokens):
        yield batch, pad_token_batch([ids[i] for i in batch], pad)


@torch.inference_mode()
def map_batches(
    fn: Callable[[dict[str, torch.Tensor]], list],
    tokenizer,
    texts: list[str],
    max_length: int,
    batch_size: int = 64,
    prefix: str = "",
    progress: str | None = None,
) -> list:
    """Apply `fn` (a padded batch -> one result per row) to all texts; results in input order."""
    ids = tokenizer([prefix + t for t in texts], truncation=True, max_length=max_length)
    return map_id_batches(fn, ids["input_ids"], tokenizer.pad_token_id or 0, batch_size, progress)


@torch.inference_mode()
def map_id_batches(
    fn: Callable[[dict[str, torch.Tensor]], list],
    ids: list[list[int]],
    pad_id: int,
    batch_size: int = 64,
    progress: str | None = None,
) -> list:
    """`map_batches` over rows already tokenized (a task's own tokenization, e.g. of words)."""
    out: list = [None] * len(ids)
    batches = sorted_batches([len(x) for x in ids], batch_size, MAX_PADDED_TOKENS)
    for rows in _maybe_progress(batches, progress):
        batch = pad_token_batch([ids[i] for i in rows], pad_id)
        for row, result in zip(rows, fn(batch), strict=True):
            out[row] = result
    return out


def _maybe_progress(items: list, label: str | None):
    if not label or len(items) < 20:
        return items
    from rich.progress import track

    from tuneforge.training.progress import console

    return track(items, description=label, console=console, transient=True)
