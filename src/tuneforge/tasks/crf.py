"""A linear-chain CRF over a tagger's word scores, with BIO-constrained transitions.

Option `crf` of the token task. The tagger's per-token logits are the CRF's emissions; the
CRF adds learned scores for tag-to-tag transitions (and for a sentence's first and last tag)
and decodes a sentence's best tag sequence as a whole (Viterbi) instead of word by word.
Transitions BIO forbids (O -> I-x, B-x -> I-y, a sentence starting with I-x) are never
chosen. The module is an identity on the logits, so the exported graph (ONNX) is unchanged;
its scores are copied into the artifact's task config, where decoding reads them for every
runtime. Written here rather than taken from `pytorch-crf` for the constraints and for a
numpy Viterbi that runs without torch.

Training runs on windows of a sentence: a window may begin inside a span, so the loss never
applies the start constraint (decoding does, on whole sentences).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

FORBIDDEN = -1e4  # a score no path can make up for; finite, so sums stay finite


def allowed(names: list[str]) -> np.ndarray:
    """(from, to) -> may tag `to` follow tag `from` in BIO."""
    out = np.ones((len(names), len(names)), dtype=bool)
    for j, to in enumerate(names):
        if to.startswith("I-"):
            out[:, j] = [n in (f"B-{to[2:]}", to) for n in names]
    return out


def may_start(names: list[str]) -> np.ndarray:
    return np.array([not n.startswith("I-") for n in names])


class TagTransitions(nn.Module):
    """Learned transition, start and end scores; forward passes the emissions through."""

    def __init__(self, names: list[str]) -> None:
        super().__init__()
        n = len(names)
        self.transitions = nn.Parameter(torch.zeros(n, n))
        self.start = nn.Parameter(torch.zeros(n))
        self.end = nn.Parameter(torch.zeros(n))
        penalty = torch.where(torch.from_numpy(allowed(names)), 0.0, FORBIDDEN)
        self.register_buffer("penalty", penalty, persistent=False)

    def forward(self, emissions: torch.Tensor) -> torch.Tensor:
        return emissions

    def nll(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor):
        """Sum over sentences of -log p(tags | emissions): (B, T, n), (B, T), (B, T) with
        each row's mask a prefix of ones (rows with none are skipped)."""
        keep = mask[:, 0]
        emissions, tags, mask = emissions[keep], tags[keep], mask[keep]
        if not len(tags):
            return emissions.sum() * 0.0
        trans = self.transitions + self.penalty
        rows = torch.arange(len(tags))
        gold = self.start[tags[:, 0]] + emissions[rows, 0, tags[:, 0]]
        alpha = self.start + emissions[:, 0]
        for t in range(1, tags.shape[1]):
            on = mask[:, t]
            step = trans[tags[:, t - 1], tags[:, t]] + emissions[rows, t, tags[:, t]]
            gold = gold + step * on
            nxt = torch.logsumexp(alpha[:, :, None] + trans[None] + emissions[:, t, None, :], 1)
            alpha = torch.where(on[:, None], nxt, alpha)
        last = tags[rows, mask.sum(1) - 1]
        gold = gold + self.end[last]
        return (torch.logsumexp(alpha + self.end, 1) - gold).sum()

    def scores(self, names: list[str]) -> dict:
        """What decoding needs, as plain lists (the artifact's task config)."""
        return {
            "transitions": self.transitions.detach().tolist(),
            "start": self.start.detach().tolist(),
            "end": self.end.detach().tolist(),
            "names": list(names),
        }


def compact(outputs: torch.Tensor, target: torch.Tensor, ignore: int):
    """The scored positions of each row moved to its front: (emissions, tags, mask)."""
    valid = target != ignore
    order = torch.sort((~valid).to(torch.int8), dim=1, stable=True).indices
    width = max(int(valid.sum(1).max()), 1)
    order = order[:, :width]
    emissions = outputs.gather(1, order[..., None].expand(-1, -1, outputs.shape[-1]))
    tags = target.gather(1, order).clamp(min=0)
    return emissions, tags, valid.gather(1, order)


def viterbi(emissions: np.ndarray, scores: dict) -> list[int]:
    """The best allowed tag sequence of one sentence's (words, tags) emissions."""
    if not len(emissions):
        return []
    names = scores["names"]
    trans = np.asarray(scores["transitions"]) + np.where(allowed(names), 0.0, FORBIDDEN)
    first = np.asarray(scores["start"]) + np.where(may_start(names), 0.0, FORBIDDEN)
    best, back = first + emissions[0], []
    for row in emissions[1:]:
        total = best[:, None] + trans
        back.append(total.argmax(0))
        best = total.max(0) + row
    path = [int((best + np.asarray(scores["end"])).argmax())]
    for pointers in reversed(back):
        path.append(int(pointers[path[-1]]))
    return path[::-1]


def find(module: nn.Module) -> TagTransitions | None:
    return next((m for m in module.modules() if isinstance(m, TagTransitions)), None)
