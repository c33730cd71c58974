"""Text generation for causal LMs (the `chat` task, serving, `predict --file`).

- `options`: `GenerationOptions`, the decoding settings (greedy by default), validated, to YAML.
- `generate`: `generate(model, tokenizer, prompts, options)`, batched with left padding, on
  transformers' `model.generate` (KV cache, logits processors, stop strings).
- `streaming`: `stream(model, tokenizer, prompt, options)`, the same text piece by piece.
- `constrained`: output exactly one of a list of choices (a token trie), or JSON that validates
  against a JSON Schema (llguidance); `score_choices` ranks choices by log-probability.
"""

from tuneforge.generation.constrained import score_choices
from tuneforge.generation.generate import Generation, generate, render_prompt
from tuneforge.generation.options import GenerationOptions
from tuneforge.generation.streaming import stream

__all__ = [
    "Generation",
    "GenerationOptions",
    "generate",
    "render_prompt",
    "score_choices",
    "stream",
]
