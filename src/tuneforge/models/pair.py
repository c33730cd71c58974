"""A base pair, `--base mpnet+minilm`: two encoders read one tokenization, their sentence
embeddings side by side.

Two pre-trained encoders err differently: on banking77 10-shot a logistic regression on the
frozen MiniLM and mpnet embeddings together scored 86.9% against 86.3% for mpnet alone, and
with `fewshot` tuning mpnet and MiniLM left untuned, more again (README, few-shot benchmark).

The pair runs as one encoder module so everything downstream (artifact, ONNX export, serving,
occlusion explanations) sees one model with one tokenizer, the first member's. The other
members get the same tokens through a vocabulary bridge (token id -> their id for the same
token string; special tokens by role), which is exact when their tokenizers split text alike:
mpnet's vocabulary is MiniLM's (BERT uncased) plus four special tokens. That is checked on the
training texts; encoders that split text differently cannot be paired.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from tuneforge.errors import ConfigError

PAIR_FILE, BRIDGES_FILE = "pair.json", "pair_bridges.safetensors"
SPECIAL_ROLES = ("cls_token", "sep_token", "pad_token", "unk_token", "mask_token")
MIN_SAME_TOKENIZATION = 0.99  # share of texts tokenized identically for a pair to be accepted
PROBE_TEXTS = [  # when there are no training texts (zero-shot)
    "I still haven't received my new card, can you check where it is?",
    "Résumé of the naïve café's Q3 earnings: +12.5% (€3,400) vs. last year!",
    "Why was I charged twice for the same transaction on 2024-01-05?",
]


def vocab_bridge(primary, member) -> torch.Tensor:
    """primary-tokenizer id -> member-tokenizer id of the same token (its unk if none)."""
    vocab, ours = member.get_vocab(), primary.get_vocab()
    size = max(len(primary), max(ours.values()) + 1)  # ids may skip (duplicate vocab lines)
    bridge = torch.full((size,), member.unk_token_id, dtype=torch.long)
    for token, i in ours.items():
        if token in vocab:
            bridge[i] = vocab[token]
    for role in SPECIAL_ROLES:  # <s> is [CLS], </s> is [SEP]: same role, other spelling
        our_id, their_id = getattr(primary, f"{role}_id", None), getattr(member, f"{role}_id", None)
        if our_id is not None and their_id is not None:
            bridge[our_id] = their_id
    return bridge


def check_same_tokenization(primary, member, bridge: torch.Tensor, texts, names) -> None:
    """Raise if `member` splits the sample texts differently from what the bridge gives it."""
    sample = list(texts)[:500] or PROBE_TEXTS
    ours = primary(sample, truncation=True, max_length=128)["input_ids"]
    theirs = member(sample, truncation=True, max_length=128)["input_ids"]
    differ = [
        i
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True))
        if not _same_tokens(a, b, bridge, primary.unk_token_id, member.unk_token_id)
    ]
    if len(differ) > (1 - MIN_SAME_TOKENIZATION) * len(sample):
        raise ConfigError(
            f"Base models '{names[0]}' and '{names[1]}' split text into different tokens "
            f"({len(differ)} of {len(sample)} texts, e.g. {sample[differ[0]]!r}), so they "
            "cannot share one tokenizer as a base pair. Pair encoders with one vocabulary, "
            "such as mpnet+minilm."
        )


def _same_tokens(ours: list[int], theirs: list[int], bridge, our_unk, their_unk) -> bool:
    """The member reads the same tokens, and knows them (a token it lacks becomes its unk)."""
    mapped = bridge[ours].tolist()
    unknown = any(m == their_unk and o != our_unk for m, o in zip(mapped, ours, strict=True))
    return mapped == theirs and not unknown


@dataclass
class PairConfig:
    """What code reading `encoder.config` needs: the joint width, and each member's."""

    sizes: list[int]
    names: list[str]

    @property
    def hidden_size(self) -> int:
        return sum(self.sizes)


class EncoderPair(nn.Module):
    """Members' token states side by side: [batch, tokens, sum of widths].

    Mean pooling of the joint states is each member's mean pooling side by side; `Pooler`
    normalizes each member's part on its own (`segments`), so neither dominates by scale.
    """

    def __init__(self, encoders: list[nn.Module], bridges: list[torch.Tensor], names) -> None:
        super().__init__()
        if len(bridges) != len(encoders) - 1:
            raise ValueError("one vocabulary bridge per member after the first")
        self.encoders = nn.ModuleList(encoders)
        for i, bridge in enumerate(bridges, 1):
            self.register_buffer(f"bridge_{i}", bridge)
        sizes = [e.config.hidden_size for e in encoders]
        self.config = PairConfig(sizes, list(names))

    def bridge(self, i: int) -> torch.Tensor:
        return getattr(self, f"bridge_{i}")

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **extra):
        from transformers.modeling_outputs import BaseModelOutput

        first = self.encoders[0](input_ids=input_ids, attention_mask=attention_mask, **extra)
        states = [first.last_hidden_state]
        for i, encoder in enumerate(self.encoders[1:], 1):
            ids = self.bridge(i)[input_ids]
            states.append(encoder(input_ids=ids, attention_mask=attention_mask).last_hidden_state)
        return BaseModelOutput(last_hidden_state=torch.cat(states, dim=-1))

    def save_pretrained(self, directory: Path) -> None:
        """The first member as a plain HF model in `directory`, the others in sub-folders."""
        from safetensors.torch import save_file

        directory = Path(directory)
        self.encoders[0].save_pretrained(directory)
        for i, encoder in enumerate(self.encoders[1:], 1):
            encoder.save_pretrained(directory / f"member_{i}")
        bridges = {f"bridge_{i}": self.bridge(i) for i in range(1, len(self.encoders))}
        save_file(bridges, directory / BRIDGES_FILE)
        info = {"members": len(self.encoders), "names": self.config.names}
        (directory / PAIR_FILE).write_text(json.dumps(info, indent=1))

    @classmethod
    def from_pretrained(cls, directory: Path) -> EncoderPair:
        from safetensors.torch import load_file
        from transformers import AutoModel

        directory = Path(directory)
        info = json.loads((directory / PAIR_FILE).read_text())
        encoders = [AutoModel.from_pretrained(str(directory))]
        encoders += [
            AutoModel.from_pretrained(str(directory / f"member_{i}"))
            for i in range(1, info["members"])
        ]
        bridges = load_file(directory / BRIDGES_FILE)
        ordered = [bridges[f"bridge_{i}"] for i in range(1, info["members"])]
        return cls(encoders, ordered, info["names"])


def member_widths(encoder: nn.Module) -> list[int] | None:
    """Each member's width for a base pair (the `Pooler` segments); None for one encoder."""
    return encoder.config.sizes if isinstance(encoder, EncoderPair) else None


def load_encoder_dir(directory: Path) -> nn.Module:
    """An artifact's encoder folder: a plain Hugging Face model (a causal LM with its LM head
    when its config says *ForCausalLM), or a base pair."""
    from transformers import AutoModel, AutoModelForCausalLM

    if (Path(directory) / PAIR_FILE).exists():
        return EncoderPair.from_pretrained(directory)
    config = Path(directory) / "config.json"
    heads = (json.loads(config.read_text()).get("architectures") or []) if config.exists() else []
    if any(str(a).endswith("ForCausalLM") for a in heads):
        return AutoModelForCausalLM.from_pretrained(str(directory))
    return AutoModel.from_pretrained(str(directory))


def build_pair(bases, tokenizers, encoders, texts) -> EncoderPair:
    """Join loaded members (first one's tokenizer reads for all) after checking tokenization."""
    names = [b.name for b in bases]
    bridges = []
    for tokenizer, name in zip(tokenizers[1:], names[1:], strict=True):
        bridge = vocab_bridge(tokenizers[0], tokenizer)
        check_same_tokenization(tokenizers[0], tokenizer, bridge, texts, [names[0], name])
        bridges.append(bridge)
    return EncoderPair(list(encoders), bridges, names)
