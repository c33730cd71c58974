"""`TextClassifier`: a Hugging Face encoder, pooling and a linear/MLP head — the one shape every
method trains and every downstream tool (eval, export, serve) reads."""

from __future__ import annotations

import torch
from torch import nn


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average of token vectors, ignoring padding (sentence-transformers' pooling)."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


class Pooler(nn.Module):
    """Mean or CLS pooling, optionally L2-normalized (the sentence-embedding space).

    `segments`: widths of encoders side by side (a base pair); each part is normalized on its
    own, then the whole scaled back to unit length, so every encoder weighs the same.
    """

    def __init__(
        self, mode: str = "mean", normalize: bool = False, segments: list[int] | None = None
    ) -> None:
        super().__init__()
        if mode not in ("mean", "cls"):
            raise ValueError(f"pooling must be 'mean' or 'cls', got {mode!r}")
        self.mode, self.normalize, self.segments = mode, normalize, list(segments or [])

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        pooled = mean_pool(hidden, mask) if self.mode == "mean" else hidden[:, 0]
        if not self.normalize:
            return pooled
        if len(self.segments) < 2:
            return nn.functional.normalize(pooled, dim=-1)
        parts = torch.split(pooled, self.segments, dim=-1)
        joined = torch.cat([nn.functional.normalize(p, dim=-1) for p in parts], dim=-1)
        return joined / len(parts) ** 0.5


def build_head(
    dim: int, n_labels: int, kind: str = "linear", hidden: int = 0, dropout: float = 0.1
) -> nn.Module:
    if kind == "linear":
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, n_labels))
    if kind == "mlp":
        width = hidden or dim
        return nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(dim, width),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(width, n_labels),
        )
    raise ValueError(f"head kind must be 'linear' or 'mlp', got {kind!r}")


class TextClassifier(nn.Module):
    """encoder → pooler → head. `forward` returns logits; `embed` returns pooled vectors."""

    def __init__(self, encoder: nn.Module, head: nn.Module, pooler: Pooler) -> None:
        super().__init__()
        self.encoder, self.head, self.pooler = encoder, head, pooler

    def readout(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Logits from the encoder's last hidden states (what a method with cached layers
        runs after its top layers)."""
        return self.head(self.pooler(hidden, attention_mask))

    def embed(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **extra: torch.Tensor
    ) -> torch.Tensor:
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **extra)
        return self.pooler(out.last_hidden_state, attention_mask)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **extra: torch.Tensor
    ) -> torch.Tensor:
        return self.head(self.embed(input_ids, attention_mask, **extra))

    def outputs(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **extra: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Every output of one encoder pass: `logits` and the pooled `embedding`."""
        embedding = self.embed(input_ids, attention_mask, **extra)
        return {"logits": self.head(embedding), "embedding": embedding}
