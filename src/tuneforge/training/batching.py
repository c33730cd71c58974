"""Length-grouped batches and dynamic padding: padding costs CPU time, so batch similar lengths."""

from __future__ import annotations

import numpy as np
import torch


def length_grouped_batches(
    lengths: list[int], batch_size: int, seed: int, shuffle: bool = True, group_factor: int = 50
) -> list[list[int]]:
    """Batches of indices whose lengths are close, in a random order that depends only on `seed`.

    Indices are shuffled, cut into mega-chunks of `group_factor` batches, each chunk sorted by
    length and cut into batches; then the batch order is shuffled. Deterministic per seed, so a
    resumed run sees exactly the same batches as an uninterrupted one.
    """
    n = len(lengths)
    if not shuffle:
        return sorted_batches(lengths, batch_size)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    chunk = batch_size * group_factor
    batches = []
    for start in range(0, n, chunk):
        part = order[start : start + chunk]
        part = part[np.argsort(np.asarray(lengths)[part], kind="stable")[::-1]]
        batches += [part[i : i + batch_size].tolist() for i in range(0, len(part), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def sorted_batches(
    lengths: list[int], batch_size: int, max_tokens: int | None = None
) -> list[list[int]]:
    """Indices sorted by length, cut into batches of at most `batch_size` rows and, when
    `max_tokens` is set, at most that many padded tokens (rows × longest; never under one row).

    A padded-token budget matters on CPU: one long text in a batch of short ones makes every row
    pay for its length. Measured on banking77 (1 thread), random calls of 32 texts cut by a
    256-token budget ran 2.2× (int8 ONNX) and 2.2× (fp32 PyTorch) faster than one padded batch.
    """
    batches: list[list[int]] = []
    current: list[int] = []
    for i in np.argsort(np.asarray(lengths), kind="stable").tolist():
        width = lengths[i]  # sorted ascending: the newest row is the longest
        too_many = len(current) >= batch_size
        if current and (too_many or (max_tokens and (len(current) + 1) * width > max_tokens)):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def pad_token_batch(ids: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad token id lists to the longest in the batch.

    Built in numpy and shared with torch (no copy): at batch 1 the torch-op version cost
    ~0.35 ms, a twentieth of an int8 ONNX forward pass.
    """
    width = max(len(x) for x in ids)
    input_ids = np.full((len(ids), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(ids), width), dtype=np.int64)
    for row, seq in enumerate(ids):
        input_ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    return {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(mask)}


def pad_hidden_batch(states: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Right-pad cached (length, dim) hidden-state tensors into a batch with a mask."""
    width = max(s.shape[0] for s in states)
    dim = states[0].shape[1]
    hidden = torch.zeros((len(states), width, dim), dtype=torch.float32)
    mask = torch.zeros((len(states), width), dtype=torch.long)
    for row, s in enumerate(states):
        hidden[row, : s.shape[0]] = s.float()
        mask[row, : s.shape[0]] = 1
    return {"hidden": hidden, "attention_mask": mask}
