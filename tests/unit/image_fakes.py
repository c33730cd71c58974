"""Tiny image fixtures made in the test: learnable coloured pictures and a random 2-layer ViT."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

CLASSES = {"red": (200, 40, 40), "green": (40, 180, 60), "blue": (40, 60, 210)}


def picture(colour: tuple[int, int, int], rng: np.random.Generator, size: int | None = None):
    """A noisy picture of one dominant colour with a random brighter square."""
    from PIL import Image

    w = int(size or rng.integers(20, 49))
    h = int(size or rng.integers(20, 49))
    base = np.asarray(colour, dtype=np.float32)
    pixels = base + rng.normal(0, 25, size=(h, w, 3))
    x, y = rng.integers(0, w // 2), rng.integers(0, h // 2)
    pixels[y : y + h // 3, x : x + w // 3] += 40
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def make_image_folder(root: Path, per_class: int, seed: int = 0) -> Path:
    """root/<class>/<i>.png|jpg: `per_class` pictures of each class, mixed formats."""
    rng = np.random.default_rng(seed)
    for name, colour in CLASSES.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            suffix = ".png" if i % 2 else ".jpg"
            picture(colour, rng).save(root / name / f"{seed}_{i}{suffix}")
    return root


def tiny_vit_dir(path: Path, seed: int = 0) -> Path:
    """A random 2-layer, 32-dim ViT for 32 px pictures, saved as a Hugging Face directory."""
    import torch
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(seed)
    config = ViTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=32,
        patch_size=8,
        architectures=["ViTForImageClassification"],
    )
    ViTModel(config, add_pooling_layer=False).save_pretrained(path)
    (path / "preprocessor_config.json").write_text(
        json.dumps({"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "resample": 2})
    )
    return path


def train_and_test_pictures(root: Path) -> dict[str, Path]:
    """{"train": 12 pictures per class, "test": 6 per class}, from different seeds."""
    return {
        "train": make_image_folder(root / "train", 12, seed=0),
        "test": make_image_folder(root / "test", 6, seed=1),
    }
