"""Token attributions (which tokens pushed the model to its prediction) and a faithfulness check.

Integrated gradients (captum's LayerIntegratedGradients on the encoder's input embeddings) for
PyTorch models; token occlusion (delete one token, see how the score drops) for runtimes without
gradients, e.g. an exported ONNX model. Both work on the tokenizer's tokens, so one weight per
token, special tokens and the base model's text prefix excluded.

Faithfulness: if the attributions are right, deleting the k most important tokens must hurt the
predicted class more than deleting k random tokens.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

import numpy as np

from tuneforge.training.batching import pad_token_batch


@dataclass
class Explanation:
    text: str
    label: str
    score: float
    tokens: list[str]
    weights: list[float]  # one per token: > 0 supports `label`, < 0 speaks against it
    method: str

    def to_dict(self) -> dict:
        return asdict(self)

    def top(self, k: int = 5) -> list[tuple[str, float]]:
        order = np.argsort(-np.asarray(self.weights))[:k]
        return [(self.tokens[i], self.weights[i]) for i in order]


@dataclass
class _Encoded:
    ids: list[int]  # the full model input, special tokens and prefix included
    content: list[int]  # positions in `ids` that are the user's text


def _encode(model, text: str) -> _Encoded:
    prefix = model.config.text_prefix
    enc = model.tokenizer(
        prefix + text,
        truncation=True,
        max_length=model.config.max_length,
        return_offsets_mapping=True,
        return_special_tokens_mask=True,
    )
    content = [
        i
        for i, (special, (start, end)) in enumerate(
            zip(enc["special_tokens_mask"], enc["offset_mapping"], strict=True)
        )
        if not special and end > start and start >= len(prefix)
    ]
    return _Encoded(list(enc["input_ids"]), content)


def _probs(model, id_lists: list[list[int]]) -> np.ndarray:
    """Calibrated class probabilities for token-id sequences, through any runtime."""
    from scipy.special import softmax

    pad = model.tokenizer.pad_token_id or 0
    out = []
    for start in range(0, len(id_lists), 64):
        logits = model.runtime.forward(pad_token_batch(id_lists[start : start + 64], pad))["logits"]
        out.append(softmax(np.asarray(logits) / model.config.calibration.temperature, axis=1))
    return np.concatenate(out)


def supports_gradients(model) -> bool:
    """A PyTorch runtime of one encoder (a base pair has two embedding layers to attribute
    through), and captum installed (the `report` extra)."""
    from importlib.util import find_spec

    classifier = getattr(model.runtime, "classifier", None)
    return (
        hasattr(getattr(classifier, "encoder", None), "get_input_embeddings")
        and find_spec("captum") is not None
    )


def _ig_weights(model, enc: _Encoded, target: int, n_steps: int) -> np.ndarray:
    import torch
    from captum.attr import LayerIntegratedGradients

    classifier = model.runtime.classifier
    ids = torch.tensor([enc.ids])
    mask = torch.ones_like(ids)
    baseline = ids.clone()  # keep special and prefix tokens; blank out the user's text
    baseline[0, enc.content] = model.tokenizer.pad_token_id or 0

    def forward(input_ids, attention_mask):
        return classifier(input_ids=input_ids, attention_mask=attention_mask)

    lig = LayerIntegratedGradients(forward, classifier.encoder.get_input_embeddings())
    with torch.enable_grad():
        attr = lig.attribute(
            ids,
            baselines=baseline,
            target=target,
            additional_forward_args=(mask,),
            n_steps=n_steps,
            internal_batch_size=n_steps,
        )
    return attr.sum(-1)[0, enc.content].detach().numpy()


def _occlusion_weights(model, enc: _Encoded, target: int) -> np.ndarray:
    """Score drop when each token is deleted on its own (needs forward passes only)."""
    variants = [enc.ids] + [[t for j, t in enumerate(enc.ids) if j != i] for i in enc.content]
    p = _probs(model, variants)[:, target]
    return p[0] - p[1:]


def explain(
    model, text: str, method: str = "auto", n_steps: int = 32, target: str | None = None
) -> Explanation:
    """Attribute the prediction for `text` (or for class `target`) to its tokens."""
    from tuneforge.errors import ConfigError

    if method == "auto":
        method = "integrated_gradients" if supports_gradients(model) else "occlusion"
    if method == "integrated_gradients" and not supports_gradients(model):
        raise ConfigError(
            f"Integrated gradients need a PyTorch model of one encoder and captum (pip install "
            f"'tuneforge[report]'); runtime is '{model.config.runtime}'. Use --method occlusion."
        )
    if method not in ("integrated_gradients", "occlusion"):
        raise ConfigError(f"Unknown method {method!r}: use integrated_gradients or occlusion.")
    enc = _encode(model, text)
    p = _probs(model, [enc.ids])[0]
    idx = int(p.argmax()) if target is None else model.labels.index(target)
    if not enc.content:
        weights = np.zeros(0)
    elif method == "integrated_gradients":
        weights = _ig_weights(model, enc, idx, n_steps)
    else:
        weights = _occlusion_weights(model, enc, idx)
    tokens = model.tokenizer.convert_ids_to_tokens([enc.ids[i] for i in enc.content])
    return Explanation(
        text=text,
        label=model.labels[idx],
        score=float(p[idx]),
        tokens=list(tokens),
        weights=[float(w) for w in weights],
        method=method,
    )


@dataclass
class Faithfulness:
    k: int
    n: int
    drop_top_k: float  # mean fall of the predicted class's probability
    drop_random: float
    win_rate: float  # share of texts where deleting the top-k hurt more than random
    method: str

    @property
    def passed(self) -> bool:
        return self.drop_top_k > self.drop_random

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def faithfulness(
    model,
    texts: list[str],
    k: int = 3,
    method: str = "auto",
    random_draws: int = 5,
    seed: int = 0,
    explanations: list[Explanation] | None = None,
    n_steps: int = 32,
) -> Faithfulness:
    """Deletion test: probability drop after removing the top-k attributed vs k random tokens."""
    rng = random.Random(seed)
    exps = explanations or [explain(model, t, method, n_steps) for t in texts]
    top_drops, rand_drops, wins, used = [], [], 0, 0
    for text, exp in zip(texts, exps, strict=True):
        enc = _encode(model, text)
        n_content = len(enc.content)
        if n_content < 2:
            continue  # deleting every token tells nothing about which ones matter
        kk = min(k, n_content - 1)
        target = model.labels.index(exp.label)
        top = list(np.argsort(-np.asarray(exp.weights))[:kk])
        rand = [rng.sample(range(n_content), kk) for _ in range(random_draws)]
        variants = [enc.ids] + [_delete(enc, sel) for sel in [top, *rand]]
        p = _probs(model, variants)[:, target]
        top_drop, rand_drop = p[0] - p[1], float(np.mean(p[0] - p[2:]))
        top_drops.append(top_drop)
        rand_drops.append(rand_drop)
        wins += top_drop > rand_drop
        used += 1
    return Faithfulness(
        k=k,
        n=used,
        drop_top_k=float(np.mean(top_drops)) if used else 0.0,
        drop_random=float(np.mean(rand_drops)) if used else 0.0,
        win_rate=wins / used if used else 0.0,
        method=exps[0].method if exps else method,
    )


def _delete(enc: _Encoded, content_positions: list[int]) -> list[int]:
    drop = {enc.content[i] for i in content_positions}
    return [t for j, t in enumerate(enc.ids) if j not in drop]


# ---- display -------------------------------------------------------------------------------
def _scale(weights: list[float]) -> list[float]:
    peak = max((abs(w) for w in weights), default=0.0) or 1.0
    return [w / peak for w in weights]


def to_rich_text(exp: Explanation):
    """Green for tokens that support the label, red for tokens against it; stronger = deeper."""
    from rich.text import Text

    out = Text()
    for token, w in zip(exp.tokens, _scale(exp.weights), strict=True):
        piece = token[2:] if token.startswith("##") else (" " if out else "") + token.lstrip("▁Ġ")
        level = int(55 + 200 * abs(w))
        colour = f"rgb(0,{level},0)" if w >= 0 else f"rgb({level},0,0)"
        out.append(piece, style=f"bold white on {colour}" if abs(w) > 0.15 else "")
    return out


def to_html(exp: Explanation) -> str:
    import html

    spans = []
    for token, w in zip(exp.tokens, _scale(exp.weights), strict=True):
        rgb = "46,160,67" if w >= 0 else "218,54,51"
        glue = "" if token.startswith("##") else " "
        text = html.escape(token[2:] if token.startswith("##") else token.lstrip("▁Ġ"))
        spans.append(
            f'{glue}<span class="tok" style="background:rgba({rgb},{abs(w):.2f})" '
            f'title="{w:+.3f}">{text}</span>'
        )
    return "".join(spans).strip()
