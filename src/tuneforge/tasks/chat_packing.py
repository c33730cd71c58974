"""Packing: several short training rows share one window, without attention across rows.

A packed window holds rows back to back; each row's position ids restart at 0, and the attention
mask is left out, so the Hugging Face decoder builds a block-diagonal causal mask from the
positions (`masking_utils.find_packed_sequence_indices`, with PyTorch SDPA). A row's loss is the
same packed or padded: its first token is never a target (the state before it belongs to
another row), just as a padded row's first token is not.

Rows are packed first-fit-decreasing into windows of `window` tokens; a batch is about
`windows` windows' worth of rows. Which window a row lands in changes nothing but the shapes,
so `collate` and `targets` pack the rows they are given again, the same way.
"""

from __future__ import annotations

import numpy as np
import torch

from tuneforge.tasks.chat_data import IGNORE


def first_fit(lengths: list[int], window: int) -> list[list[int]]:
    """Positions into `lengths`, grouped into windows of at most `window` tokens (a row longer
    than the window gets one of its own); first-fit-decreasing, deterministic."""
    bins: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        n = lengths[i]
        for b, free in enumerate(room):
            if n <= free:
                bins[b].append(i)
                room[b] -= n
                break
        else:
            bins.append([i])
            room.append(window - n)
    return bins


def packed_batches(lengths: list[int], window: int, windows: int, seed: int) -> list[list[int]]:
    """One epoch's batches of row indices, each about `windows` full windows of tokens, in a
    random order that depends only on `seed` (a resumed run sees the same batches)."""
    order = np.random.default_rng(seed).permutation(len(lengths)).tolist()
    bins = [[order[i] for i in b] for b in first_fit([lengths[i] for i in order], window)]
    np.random.default_rng(seed + 1).shuffle(bins)
    return [[i for b in bins[at : at + windows] for i in b] for at in range(0, len(bins), windows)]


def pack(features: list, window: int, pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Rows (token id lists, or cached (length, dim) hidden states) packed into windows:
    `input_ids` or `hidden`, and `position_ids` restarting at every row (padding at a
    window's end is a row of its own, which no target reads)."""
    lengths = [len(f) for f in features]
    bins = first_fit(lengths, window)
    width = max(sum(lengths[i] for i in b) for b in bins)
    positions = torch.zeros((len(bins), width), dtype=torch.long)
    hidden = isinstance(features[0], torch.Tensor)
    if hidden:
        out = torch.zeros((len(bins), width, features[0].shape[1]), dtype=torch.float32)
    else:
        out = torch.full((len(bins), width), pad_id, dtype=torch.long)
    for row, b in enumerate(bins):
        at = 0
        for i in b:
            n = lengths[i]
            out[row, at : at + n] = features[i].float() if hidden else torch.tensor(features[i])
            positions[row, at : at + n] = torch.arange(n)
            at += n
        positions[row, at:] = torch.arange(width - at)
    return {"hidden" if hidden else "input_ids": out, "position_ids": positions}


def pack_labels(labels: list[list[int]], window: int) -> torch.Tensor:
    """The rows' labels laid out as `pack` lays out their tokens, each row's first token
    unscored."""
    bins = first_fit([len(x) for x in labels], window)
    width = max(sum(len(labels[i]) for i in b) for b in bins)
    out = torch.full((len(bins), width), IGNORE, dtype=torch.long)
    for row, b in enumerate(bins):
        at = 0
        for i in b:
            n = len(labels[i])
            out[row, at : at + n] = torch.tensor(labels[i])
            out[row, at] = IGNORE
            at += n
    return out
