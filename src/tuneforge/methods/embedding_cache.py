"""Sentence embeddings of a frozen encoder, cached on disk by model fingerprint + texts hash."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from tuneforge.paths import cache_dir


def model_fingerprint(path: Path) -> str:
    """Cheap identity of a model directory: its config plus the size and head of its weights."""
    digest = hashlib.sha256()
    if path.is_file():  # a weights file (EfficientNet-Lite's .pth)
        digest.update(f"{path.name}{path.stat().st_size}".encode())
        with open(path, "rb") as fh:
            digest.update(fh.read(1 << 20))
        return digest.hexdigest()[:16]
    for name in sorted(os.listdir(path)):
        file = path / name
        if file.suffix in (".json", ".safetensors", ".bin") and file.is_file():
            digest.update(name.encode())
            digest.update(str(file.stat().st_size).encode())
            with open(file, "rb") as fh:
                digest.update(fh.read(1 << 20))
    return digest.hexdigest()[:16]


def texts_key(texts: list[str], *settings: object) -> str:
    digest = hashlib.sha256(repr(settings).encode())
    for t in texts:
        digest.update(t.encode("utf-8", "surrogatepass") + b"\0")
    return digest.hexdigest()[:24]


def cached_embeddings(model, ctx, texts: list[str], use_cache: bool = True) -> np.ndarray:
    """Pooled embeddings from `model.embed` (frozen encoder); reuses the on-disk copy if any."""
    max_len = min(ctx.config.max_length, ctx.base.max_length)
    spec = model.spec
    settings = [max_len, ctx.base.text_prefix, spec["pooling"], spec["normalize"]]
    key = texts_key(texts, *settings, *([spec["input_key"]] if "input_key" in spec else []))
    fingerprint = "-".join(model_fingerprint(b.path) for b in ctx.base.members())
    file = cache_dir("embeddings", fingerprint) / f"{key}.npy"
    if use_cache and file.exists():
        return np.load(file)
    emb = embed_texts(model, ctx, texts, progress="embedding")
    if use_cache:
        tmp = file.with_name(f"{file.stem}.{os.getpid()}.tmp.npy")
        np.save(tmp, emb)
        os.replace(tmp, file)
    return emb


def embed_texts(model, ctx, texts: list[str], progress: str | None = None) -> np.ndarray:
    """Pooled embeddings of `texts` (a task's rows) by the model's current encoder (no cache)."""
    return ctx.task.embed_rows(ctx, model, texts, progress)
