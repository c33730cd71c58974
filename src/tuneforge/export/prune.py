"""Layer pruning with a short distillation: drop the top encoder layers of a tuned classifier,
then train the smaller student to reproduce the original's logits and embeddings.

Fewer layers is a near-linear speed-up on CPU; distillation (no labels needed) recovers most of
what the dropped layers contributed. The accuracy gate of the export decides if it is enough.
"""

from __future__ import annotations

import copy
import time

import numpy as np

from tuneforge.errors import ConfigError


def _layer_owner(encoder):
    """The module holding the transformer blocks as a ModuleList (`encoder.layer` in BERTs)."""
    from torch import nn

    for module in encoder.modules():
        for name in ("layer", "layers"):
            child = getattr(module, name, None)
            if isinstance(child, nn.ModuleList) and len(child) > 1:
                return module, name
    raise ConfigError(
        f"Cannot find the transformer layers of {type(encoder).__name__}; "
        "--prune-layers supports BERT-family encoders (BERT, MiniLM, RoBERTa, XLM-R, E5)."
    )


def prune_top_layers(classifier, k: int):
    """A copy of `classifier` whose encoder keeps all but its top `k` layers."""
    from torch import nn

    student = copy.deepcopy(classifier)
    owner, name = _layer_owner(student.encoder)
    layers = list(getattr(owner, name))
    if k >= len(layers):
        raise ConfigError(
            f"--prune-layers {k} would remove every layer (the encoder has {len(layers)}); "
            f"use at most {len(layers) - 1}."
        )
    setattr(owner, name, nn.ModuleList(layers[: len(layers) - k]))
    student.encoder.config.num_hidden_layers = len(layers) - k
    return student.eval()


def distil(
    student,
    teacher,
    texts: list[str],
    *,
    max_seconds: float = 120.0,
    epochs: int = 3,
    lr: float = 5e-5,
    batch_size: int = 32,
    max_texts: int = 4000,
    temperature: float = 2.0,
    seed: int = 0,
) -> dict:
    """Train `student` (a TextClassifier) to match `teacher` (a TunedModel) on `texts`.

    Loss: KL between temperature-softened distributions (sigmoid MSE when multi-label) plus
    MSE between pooled embeddings. Stops after `epochs` or `max_seconds`, whichever is first.
    """
    import torch

    from tuneforge.models.encode import token_batches

    rng = np.random.default_rng(seed)
    if len(texts) > max_texts:
        texts = [texts[i] for i in rng.choice(len(texts), max_texts, replace=False)]
    t_logits = torch.as_tensor(teacher.logits(texts))
    t_embed = torch.as_tensor(teacher.embed(texts))
    multi, cfg = teacher.config.multi_label, teacher.config
    opt = torch.optim.AdamW(student.parameters(), lr=lr)
    student.train()
    start, steps, losses = time.monotonic(), 0, []
    batches = list(token_batches(teacher.tokenizer, texts, cfg.max_length, batch_size))
    for _ in range(epochs):
        for i in rng.permutation(len(batches)):
            rows, batch = batches[i]
            emb = student.embed(batch["input_ids"], batch["attention_mask"])
            logits = student.head(emb)
            loss = _kd_loss(logits, t_logits[rows], temperature, multi)
            loss = loss + torch.nn.functional.mse_loss(emb, t_embed[rows])
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
            losses.append(loss.item())
            if time.monotonic() - start > max_seconds:
                break
        if time.monotonic() - start > max_seconds:
            break
    student.eval()
    return {
        "texts": len(texts),
        "steps": steps,
        "seconds": round(time.monotonic() - start, 1),
        "loss_first": round(float(np.mean(losses[:10])), 5) if losses else None,
        "loss_last": round(float(np.mean(losses[-10:])), 5) if losses else None,
    }


def _kd_loss(student_logits, teacher_logits, temperature: float, multi_label: bool):
    import torch.nn.functional as F

    if multi_label:
        return F.mse_loss(student_logits.sigmoid(), teacher_logits.sigmoid())
    t = temperature
    return F.kl_div(
        F.log_softmax(student_logits / t, -1),
        F.softmax(teacher_logits / t, -1),
        reduction="batchmean",
    ) * (t * t)
