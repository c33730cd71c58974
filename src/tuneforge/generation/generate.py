"""`generate`: prompts or chat conversations in, `Generation`s out, batched, on `model.generate`.

transformers does the decoding (its KV cache, repetition penalty, temperature / top-k / top-p
warpers, `stop_strings` criteria); this module renders chat messages with the tokenizer's own
template, left-pads batches by hand (so the tokenizer's padding_side does not matter, and greedy
results equal one-by-one generation), trims stop strings and tells why each generation ended.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from transformers import GenerationConfig, LogitsProcessorList

from tuneforge.errors import ConfigError
from tuneforge.generation.constrained import (
    ChoiceConstraint,
    ConstrainedLogits,
    JsonSchemaConstraint,
    build_constraint,
    end_token_ids,
    starts_with_bos,
)
from tuneforge.generation.options import GenerationOptions
from tuneforge.generation.precision import for_generation

Messages = list[dict[str, str]]
Prompt = str | Messages


@dataclass
class Generation:
    """One prompt's output; `value` is the chosen label (choices) or parsed JSON (json_schema)."""

    text: str
    tokens: int  # tokens generated, the one that ended it included
    prompt_tokens: int
    finish_reason: Literal["stop", "length"]  # stop: EOS or a stop string; length: max_new_tokens
    value: Any = None


def generate(
    model: Any,
    tokenizer: Any,
    prompts: Prompt | Sequence[Prompt],
    options: GenerationOptions | None = None,
    *,
    batch_size: int = 8,
) -> list[Generation]:
    """Generate for one prompt, one conversation, or a list of either; one Generation each.

    A string is used as is (plus the tokenizer's BOS); a conversation (`[{"role", "content"}]`)
    is rendered with the tokenizer's chat template and an assistant generation prompt. Prompts of
    similar length are batched together (`batch_size` at a time); results come in input order.
    With a seed, sampling is reproducible for the same prompts and batch_size.
    """
    options = options or GenerationOptions()
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1 (got {batch_size}).")
    model = for_generation(model, options.precision)
    encoded = [encode_prompt(tokenizer, p) for p in as_prompt_list(prompts)]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))  # less padding
    eos_ids = end_token_ids(model, tokenizer)
    results: list[Generation | None] = [None] * len(encoded)
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        input_ids, attention_mask = left_pad([encoded[i] for i in batch], pad_id(model, tokenizer))
        kwargs, constraint = generation_kwargs(model, tokenizer, options, input_ids.shape[1])
        seed = None if options.seed is None else options.seed + start // batch_size
        with seeded(seed), torch.no_grad():
            out = model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        for row, index in enumerate(batch):
            new_ids = out[row, input_ids.shape[1] :].tolist()
            results[index] = finish(
                tokenizer, new_ids, len(encoded[index]), options, constraint, eos_ids
            )
    return results  # type: ignore[return-value]


# ---- prompts ------------------------------------------------------------------------------------
def as_prompt_list(prompts: Prompt | Sequence[Prompt]) -> list[Prompt]:
    if isinstance(prompts, str) or (
        isinstance(prompts, list) and prompts and isinstance(prompts[0], dict)
    ):
        return [prompts]  # type: ignore[list-item]
    prompts = list(prompts)  # type: ignore[arg-type]
    if not prompts:
        raise ConfigError("No prompts to generate for; pass a string, a conversation or a list.")
    return prompts


def render_prompt(tokenizer: Any, prompt: Prompt) -> str:
    """The text the model sees: a string as is, messages through the tokenizer's chat template."""
    if isinstance(prompt, str):
        return prompt
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(
            "This tokenizer has no chat template, so messages cannot be rendered; pass plain "
            "prompt strings, or use an instruction-tuned model (its tokenizer ships a template)."
        )
    return tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)


def encode_prompt(tokenizer: Any, prompt: Prompt) -> list[int]:
    text = render_prompt(tokenizer, prompt)
    # a rendered template carries its own special tokens; a raw string gets the tokenizer's BOS
    add_special = isinstance(prompt, str) and not starts_with_bos(tokenizer, text)
    ids = tokenizer.encode(text, add_special_tokens=add_special)
    if not ids:
        raise ConfigError("A prompt is empty after tokenization; give the model some text.")
    return ids


def pad_id(model: Any, tokenizer: Any) -> int:
    return (
        tokenizer.pad_token_id
        if tokenizer.pad_token_id is not None
        else end_token_ids(model, tokenizer)[0]
    )


def left_pad(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left padding, so every row's next token comes right after its prompt."""
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, width - len(row) :] = torch.tensor(row)
        attention_mask[i, width - len(row) :] = 1
    return input_ids, attention_mask


# ---- decoding settings --------------------------------------------------------------------------
def generation_kwargs(
    model: Any, tokenizer: Any, options: GenerationOptions, prompt_length: int
) -> tuple[dict[str, Any], ChoiceConstraint | JsonSchemaConstraint | None]:
    """`model.generate` keywords for `options`; every knob explicit, so the model's own
    generation_config (a checkpoint's default temperature, say) cannot leak in."""
    eos_ids = end_token_ids(model, tokenizer)
    constraint = build_constraint(tokenizer, options, eos_ids)
    max_new_tokens = options.max_new_tokens
    if isinstance(constraint, ChoiceConstraint):  # the longest choice decides the length
        max_new_tokens = constraint.max_tokens
    sample = options.do_sample
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=sample,
        # greedy: transformers' neutral values, which it does not warn about
        temperature=options.temperature if sample else 1.0,
        top_p=options.top_p if sample else 1.0,
        top_k=options.top_k if sample else 50,
        repetition_penalty=options.repetition_penalty,
        num_beams=1,
        eos_token_id=eos_ids,
        pad_token_id=pad_id(model, tokenizer),
        # constrained output must stay whole (a stop string could cut a JSON object in two)
        stop_strings=(options.stop or None) if constraint is None else None,
        use_cache=True,
    )
    kwargs: dict[str, Any] = {"generation_config": config, "tokenizer": tokenizer}
    if constraint is not None:
        processor = ConstrainedLogits(constraint, prompt_length, eos_ids)
        kwargs["logits_processor"] = LogitsProcessorList([processor])
    return kwargs, constraint


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Seed torch's CPU generator for a block, and restore the caller's random state after."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


# ---- results ------------------------------------------------------------------------------------
def first_stop(text: str, stops: Sequence[str]) -> int:
    """Where the earliest stop string starts in `text`, or -1."""
    found = [i for s in stops if (i := text.find(s)) >= 0]
    return min(found, default=-1)


def finish(
    tokenizer: Any,
    new_ids: list[int],
    prompt_tokens: int,
    options: GenerationOptions,
    constraint: ChoiceConstraint | JsonSchemaConstraint | None,
    eos_ids: Sequence[int],
) -> Generation:
    """One row of `model.generate`'s output as a Generation: cut at EOS or the stop string."""
    eos = set(eos_ids)
    end = next((i for i, t in enumerate(new_ids) if t in eos), None)
    ids = new_ids if end is None else new_ids[:end]
    count = len(new_ids) if end is None else end + 1
    text = tokenizer.decode(ids, skip_special_tokens=True)
    stops = options.stop if constraint is None else []
    cut = first_stop(text, stops)
    if cut >= 0:
        text = text[:cut]
        count = _tokens_to_stop(tokenizer, ids, stops)
    reason: Literal["stop", "length"] = "stop" if end is not None or cut >= 0 else "length"
    value = None
    if isinstance(constraint, ChoiceConstraint) and end is not None:
        value = constraint.choice_of([*ids, new_ids[end]])
    elif isinstance(constraint, JsonSchemaConstraint) and reason == "stop":
        with contextlib.suppress(ValueError):  # the grammar guarantees JSON; None if it ever fails
            value = json.loads(text)
    return Generation(text, count, prompt_tokens, reason, value)


def _tokens_to_stop(tokenizer: Any, ids: list[int], stops: Sequence[str]) -> int:
    """The fewest tokens whose text holds a stop string: the ones generated before generation
    stopped (a batch's finished rows go on with padding, which must not count)."""
    low, high = 1, len(ids)
    while low < high:
        mid = (low + high) // 2
        if first_stop(tokenizer.decode(ids[:mid], skip_special_tokens=True), stops) >= 0:
            high = mid
        else:
            low = mid + 1
    return low
