"""Constrained decoding: the output is exactly one of a list of choices, or JSON for a schema.

Both are token filters (`allowed(generated_ids, row)`: ids or a mask) behind one `LogitsProcessor`,
which sets every other score to -inf before temperature, top-k and top-p, so greedy decoding and
sampling alike stay inside the constraint, however random the weights.

- `ChoiceConstraint`: a trie of each choice's token ids, each path closed by the end-of-sequence
  token, so the text is one whole choice (never a prefix of a longer one) and the path names it.
- `JsonSchemaConstraint`: llguidance's JSON Schema grammar (a Rust matcher over the tokenizer's
  bytes), one matcher per batch row, behind the same interface.

`score_choices` ranks choices by their whole-sequence log-probability instead (one forward pass).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch
from transformers import LogitsProcessor

from tuneforge.errors import ConfigError


class TokenFilter(Protocol):
    def allowed(self, generated: Sequence[int], row: int = 0) -> list[int] | torch.Tensor:
        """The tokens allowed next (ids, or a bool mask over the vocabulary), given the ids that
        batch row `row` generated so far (prompt excluded)."""


class ConstrainedLogits(LogitsProcessor):
    """Masks each row's scores to its filter's allowed tokens; rows that ended are left alone."""

    def __init__(self, token_filter: TokenFilter, prompt_length: int, eos_ids: Sequence[int]):
        self.token_filter = token_filter
        self.prompt_length = prompt_length  # left padding: every row's prompt ends here
        self.eos_ids = set(eos_ids)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        mask = torch.full_like(scores, float("-inf"))
        for row, ids in enumerate(input_ids[:, self.prompt_length :].tolist()):
            if self.eos_ids.intersection(ids):  # finished: generate replaces its token by pad
                mask[row] = 0
                continue
            allowed = self.token_filter.allowed(ids, row)
            if isinstance(allowed, torch.Tensor):  # a mask: may be shorter than padded logits
                width = min(len(allowed), scores.shape[-1])
                mask[row, :width].masked_fill_(allowed[:width], 0)
            else:
                mask[row, [t for t in allowed if t < scores.shape[-1]]] = 0
        return scores + mask


# ---- one of a list ------------------------------------------------------------------------------
class ChoiceConstraint:
    """The output is exactly one of `choices`: their token paths (+ EOS) as a trie."""

    def __init__(self, tokenizer: Any, choices: Sequence[str], eos_id: int):
        self.choices = list(choices)
        self.eos_id = eos_id
        self.paths: dict[tuple[int, ...], str] = {}
        self.next_tokens: dict[tuple[int, ...], set[int]] = {}
        for choice in self.choices:
            # the choice as it would follow the prompt: no BOS, tokenized on its own
            path = (*tokenizer.encode(choice, add_special_tokens=False), eos_id)
            if path in self.paths:
                raise ConfigError(
                    f"Choices {self.paths[path]!r} and {choice!r} are the same tokens for this "
                    "tokenizer; make them differ by more than case or spacing."
                )
            self.paths[path] = choice
            for i in range(len(path)):
                self.next_tokens.setdefault(path[:i], set()).add(path[i])

    @property
    def max_tokens(self) -> int:
        return max(len(path) for path in self.paths)

    def allowed(self, generated: Sequence[int], row: int = 0) -> list[int]:
        # off the trie only after EOS (the processor skips those rows); EOS keeps it safe anyway
        return sorted(self.next_tokens.get(tuple(generated), {self.eos_id}))

    def choice_of(self, generated: Sequence[int]) -> str | None:
        """The choice that a generated path spells (None if it was cut short)."""
        return self.paths.get(tuple(generated))


def score_choices(
    model: Any, tokenizer: Any, prompt: str, choices: Sequence[str]
) -> dict[str, float]:
    """Each choice's log-probability after `prompt` (its tokens and EOS), best first.

    Greedy constrained decoding commits to the likeliest first token; this ranks whole choices.
    `prompt` is the text as the model sees it (a rendered chat template, for chat models).
    """
    eos_id = end_token_ids(model, tokenizer)[0]
    prompt_ids = tokenizer.encode(prompt, add_special_tokens=not starts_with_bos(tokenizer, prompt))
    paths = [[*tokenizer.encode(c, add_special_tokens=False), eos_id] for c in choices]
    width = len(prompt_ids) + max(len(p) for p in paths)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_id
    ids = torch.full((len(paths), width), pad, dtype=torch.long)
    attention = torch.zeros_like(ids)
    for row, path in enumerate(paths):  # right padding: positions stay those of one-by-one
        seq = prompt_ids + path
        ids[row, : len(seq)] = torch.tensor(seq)
        attention[row, : len(seq)] = 1
    with torch.no_grad():
        logprobs = model(input_ids=ids, attention_mask=attention).logits.log_softmax(-1)
    scores = {}
    for row, (choice, path) in enumerate(zip(choices, paths, strict=True)):
        at = torch.arange(len(prompt_ids) - 1, len(prompt_ids) - 1 + len(path))
        scores[choice] = logprobs[row, at, torch.tensor(path)].sum().item()
    return dict(sorted(scores.items(), key=lambda kv: -kv[1]))


# ---- JSON Schema --------------------------------------------------------------------------------
class JsonSchemaConstraint:
    """The output is JSON that validates against `schema` (llguidance's JSON compiler), laid out
    as Python's `json.dumps` does by default (`", "` and `": "`, no newlines).

    llguidance (Rust, no dependencies) works on the tokenizer's bytes, so byte-level tokens and
    multi-byte characters are exact; it covers most of JSON Schema (types, enum/const, required
    and optional properties, nested objects, arrays with min/maxItems, string length, pattern,
    format, anyOf/oneOf, $ref). A schema it cannot compile is a ConfigError naming the part.
    """

    def __init__(self, tokenizer: Any, schema: dict[str, Any], eos_ids: Sequence[int]):
        import llguidance

        self.llg_tokenizer = _llg_tokenizer(tokenizer, tuple(eos_ids))
        # No free whitespace (a weak model cannot wander off in blank lines), but the separators
        # of json.dumps, the JSON most fine-tuning targets are written with: forced into compact
        # JSON it never saw, SmolLM2 tuned on SkillSpan extraction fell from span F1 0.20
        # (unconstrained) to 0.07 (benchmarks/bench_chat_extract.py).
        self.grammar = llguidance.LLMatcher.grammar_from_json_schema(
            schema,
            defaults={"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "},
        )
        self._matcher()  # a schema it cannot compile fails here, before any decoding
        self.rows: dict[int, tuple[Any, int]] = {}  # batch row -> (matcher, tokens consumed)

    def _matcher(self) -> Any:
        import llguidance

        matcher = llguidance.LLMatcher(self.llg_tokenizer, self.grammar, log_level=0)
        if matcher.is_error():
            raise ConfigError(f"json_schema cannot be used for decoding: {matcher.get_error()}")
        return matcher

    def allowed(self, generated: Sequence[int], row: int = 0) -> torch.Tensor:
        matcher, consumed = self.rows.get(row) or (self._matcher(), 0)
        if not matcher.consume_tokens(list(generated[consumed:])):
            raise RuntimeError(f"JSON constraint out of step: {matcher.get_error()}")
        self.rows[row] = (matcher, len(generated))
        bits = np.frombuffer(matcher.compute_bitmask(), dtype=np.uint8)
        return torch.from_numpy(np.unpackbits(bits, bitorder="little").astype(bool))


# building llguidance's view of a vocabulary takes ~1 s for real tokenizers: once per tokenizer
_LLG_TOKENIZERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _llg_tokenizer(tokenizer: Any, eos_ids: tuple[int, ...]) -> Any:
    import llguidance.hf

    cached = _LLG_TOKENIZERS.setdefault(tokenizer, {})
    if eos_ids not in cached:
        eos: int | list[int] = list(eos_ids) if len(eos_ids) > 1 else eos_ids[0]
        try:
            cached[eos_ids] = llguidance.hf.from_tokenizer(tokenizer, eos_token=eos)
        except ValueError as exc:
            raise ConfigError(
                f"JSON constraints need a fast (Rust) tokenizer: {exc}. Load it with "
                "AutoTokenizer.from_pretrained(..., use_fast=True)."
            ) from None
    return cached[eos_ids]


# ---- shared -------------------------------------------------------------------------------------
def end_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """The ids that end a generation: the model's generation config's, else the tokenizer's."""
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    if eos is None:
        raise ConfigError("The tokenizer has no eos_token; set one (e.g. tokenizer.eos_token).")
    return list(eos) if isinstance(eos, list | tuple) else [int(eos)]


def starts_with_bos(tokenizer: Any, text: str) -> bool:
    """Whether `text` already starts with the BOS token (a rendered chat template often does)."""
    return bool(tokenizer.bos_token) and text.startswith(tokenizer.bos_token)


def build_constraint(
    tokenizer: Any, options: Any, eos_ids: Sequence[int]
) -> ChoiceConstraint | JsonSchemaConstraint | None:
    """The token filter that `options` (a GenerationOptions) asks for, or None."""
    if options.choices is not None:
        return ChoiceConstraint(tokenizer, options.choices, eos_ids[0])
    if options.json_schema is not None:
        return JsonSchemaConstraint(tokenizer, options.json_schema, eos_ids)
    return None
