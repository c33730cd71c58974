"""`image-classification`: one picture in, one label out.

A sibling of text classification: the same labels, metrics, calibration, decisions and
predictions (it subclasses `TextClassification`), with images where the texts were. Rows are
image paths; the pre-processing at inference is exactly the evaluation transform of training,
stored in the artifact (`task_config.transform`). Training augments the pictures (random
resized crop, flip, TrivialAugment, optional mixup/cutmix); `partial` caches the lower blocks'
outputs of several augmented views per image and trains the top blocks on a random view each
step (augmentation before the cache, so the frozen part still sees varied pictures).
"""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path
from statistics import median
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from tuneforge.errors import ConfigError, DataError
from tuneforge.images.transforms import (
    AugmentConfig,
    ImageTransformConfig,
    eval_batch,
    mix_batch,
    prepare_for_cache,
    train_transform,
)
from tuneforge.tasks.base import Task, TaskConfig, register_task, with_options
from tuneforge.tasks.text_classification import TextClassification
from tuneforge.training.progress import console

PROCESSOR_FILE = "preprocess.json"
DEFAULT_BASE = "efficientnet-lite0"
HEAD_MAX_PER_CLASS = 30  # fewer labelled images per class: a frozen backbone + logistic regression
HEAD_MAX_MINUTES = 3


class ImageClassificationConfig(TaskConfig):
    image_size: int | None = Field(None, ge=16, le=1024)  # input side; default: the base's
    # the share of the resized picture the centre crop keeps; None: the base's (0.875), or
    # 1.0 (no crop) when most training pictures are smaller than the input and get upscaled:
    # on CIFAR-10 (32 px) cropping cost 5 points of validation accuracy (head, Lite0, 224 px)
    crop_fraction: float | None = Field(None, gt=0, le=1)
    transform: ImageTransformConfig | None = None  # recorded: the evaluation transform
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    cache_views: int = Field(4, ge=1, le=32)  # partial: augmented views cached per image
    head: Literal["linear", "mlp"] = "linear"
    head_hidden: int = 0
    max_pixels: int = 40_000_000  # decompression-bomb guard when decoding
    # bf16 autocast for the backbone's passes without gradients (cached blocks, embeddings,
    # inference); "auto": bf16 where the CPU has bf16 matrix instructions (~3.4x Lite0's fp32
    # inference here), else fp32. Recorded: inference runs as the cached features were made.
    precision: Literal["auto", "bf16", "fp32"] = "auto"


_RECORDED = ("transform",)


class ImageProcessor:
    """An artifact's pre-processing: pictures (paths, bytes or PIL images) → `pixel_values`."""

    def __init__(self, transform: ImageTransformConfig, max_pixels: int = 40_000_000) -> None:
        self.transform, self.max_pixels = transform, max_pixels

    def open(self, item, name: str | None = None):
        from PIL import Image

        from tuneforge.images.decode import open_image

        if isinstance(item, Image.Image):
            return item.convert("RGB")
        return open_image(item, name=name, max_pixels=self.max_pixels)

    def __call__(self, images: list) -> dict[str, torch.Tensor]:
        return {"pixel_values": eval_batch([self.open(i) for i in images], self.transform)}

    def save_pretrained(self, directory: str | Path) -> None:
        Path(directory).mkdir(parents=True, exist_ok=True)
        body = {"transform": self.transform.model_dump(mode="json"), "max_pixels": self.max_pixels}
        (Path(directory) / PROCESSOR_FILE).write_text(json.dumps(body, indent=1))


def resolve_precision(precision: str) -> str:
    if precision != "auto":
        return precision
    from tuneforge.generation.precision import bf16_supported

    return "bf16" if bf16_supported() else "fp32"


class ImageClassifier(nn.Module):
    """backbone → pooled vector → head; `outputs` gives logits and the embedding of one pass."""

    def __init__(self, encoder: nn.Module, head: nn.Module, precision: str = "fp32") -> None:
        super().__init__()
        self.encoder, self.head, self.precision = encoder, head, precision

    def autocast(self):
        """bf16 autocast for passes without gradients (caching, embedding, inference) when the
        precision says so. Training stays fp32: bf16's backward ran slower here (top 6 Lite0
        blocks at 224 px: 50 img/s in bf16, 62 in fp32), and fp32 keeps the optimizer exact."""
        bf16 = self.precision == "bf16" and not torch.is_grad_enabled()
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)

    def embed(self, pixel_values: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            return self.encoder(pixel_values).float()

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(pixel_values))

    def outputs(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        embedding = self.embed(pixel_values)
        return {"logits": self.head(embedding), "embedding": embedding}

    def top_layers_module(self, top: nn.ModuleList) -> nn.Module:
        return ImageTop(self, len(self.encoder.layers) - len(top))


class ImageTop(nn.Module):
    """`partial`'s trainable part: the top blocks, the backbone's finisher and the head, on
    cached lower-block outputs."""

    def __init__(self, model: ImageClassifier, start: int) -> None:
        super().__init__()
        backbone = model.encoder
        self.layers = nn.ModuleList(backbone.layers[start:])
        self.finisher, self.head, self.start = backbone.finisher, model.head, start
        self.finisher.requires_grad_(True)
        # in a list: the frozen backbone is no submodule of what trains
        self._run, self._autocast = [backbone.run_layer], [model.autocast]

    def forward(self, hidden: torch.Tensor, **_) -> torch.Tensor:
        with self._autocast[0]():
            for i in range(len(self.layers)):
                hidden = self._run[0](self.start + i, hidden)
            pooled = self.finisher(hidden)
        return self.head(pooled.float())


@register_task
class ImageClassification(TextClassification):
    name = "image-classification"
    summary = "a label per image (folders of pictures, or a CSV/JSONL of image paths)"
    Config = ImageClassificationConfig
    recognizes_dirs = True
    default_config: ClassVar[dict[str, Any]] = {"base": DEFAULT_BASE, "batch_size": 32}
    default_lrs: ClassVar[dict[str, float]] = {"full": 3e-4, "partial": 1e-3, "lora": 1e-3}
    # pooled CNN activations are not unit vectors: logistic regression on standardized ones
    default_method_options: ClassVar[dict[str, dict]] = {
        "partial": {"top_layers": 6},
        "head": {"standardize": True},
    }

    # ONNX export: int8 is static (convolutions run as int8 kernels only with calibrated
    # activation ranges; the exporter calibrates on pictures through `map_inputs`)
    onnx_int8: ClassVar[str] = "static"

    def __init__(self, options: dict | None = None) -> None:
        self.options = ImageClassificationConfig(**(options or {}))

    def onnx_inputs(self, config) -> dict[str, tuple[torch.Tensor, dict[int, str]]]:
        """The ONNX graph's input: `pixel_values` (batch, 3, s, s) at the evaluation
        transform's side; an example batch to trace and the dynamic (batch) axis."""
        side = self.Config(**config.task_config).transform.size
        example = torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(0))
        return {"pixel_values": (example, {0: "batch"})}

    def configured(self, options: dict) -> ImageClassification:
        return with_options(self, options, _RECORDED)

    # ---- data --------------------------------------------------------------------------------
    @classmethod
    def recognizes(cls, path: Path) -> bool:
        from tuneforge.images.dataset import recognizes_images

        return recognizes_images(Path(path))

    def load(self, path, text_col=None, label_col=None, require_labels=True):
        from tuneforge.images.dataset import load_images

        return load_images(path, text_col, label_col, require_labels=require_labels)

    load_for = Task.load_for  # the task's own loader (text classification's reads texts)

    def check_trainable(self, ds) -> None:
        if ds.labels is None:
            raise DataError(f"{ds.source}: no labels to train on (use class folders).")
        if len(set(ds.labels)) < 2:
            raise DataError(
                f"{ds.source}: only one class ({ds.labels[0]!r}); image classification needs "
                "at least two class folders."
            )

    def choose_method(self, train, max_minutes, base, model_scale):
        per_class = median(train.class_counts().values())
        if max_minutes is not None and max_minutes < HEAD_MAX_MINUTES:
            return "head", f"a time budget under {HEAD_MAX_MINUTES} minutes"
        if per_class < HEAD_MAX_PER_CLASS:
            return "head", (
                f"{per_class:g} images per class (median): frozen features + logistic "
                f"regression beat tuning the backbone under {HEAD_MAX_PER_CLASS}"
            )
        return "partial", (
            f"{per_class:g} images per class: tune the top blocks on cached lower-block "
            "outputs of augmented views"
        )

    def inputs(self, ds) -> list[str]:
        return ds.texts

    def token_ids(self, ctx, inputs):
        raise ConfigError("image models read pixels, not tokens")

    def warnings(self, train, eval_ds, ctx) -> list[str]:
        from tuneforge.images.dataset import overlap_warning, validate_images

        found = list(train.warnings) + validate_images(train, self.options.max_pixels, True)
        if eval_ds is not None:
            found += validate_images(eval_ds, self.options.max_pixels, True)
            overlap = overlap_warning(train, eval_ds)
            found += [overlap] if overlap else []
        return found

    def stats(self, ds, ctx) -> dict:
        from tuneforge.images.dataset import image_stats

        return image_stats(ds)

    # ---- model -------------------------------------------------------------------------------
    def transform_for(self, backbone, train=None) -> ImageTransformConfig:
        """The evaluation transform: the recorded one, else the base's size and statistics
        (no centre crop when the training pictures are mostly smaller than the input)."""
        if self.options.transform is not None:
            return self.options.transform
        c = backbone.config
        size = self.options.image_size or c.image_size
        crop = self.options.crop_fraction
        if crop is None:
            small = train is not None and _median_short_side(train.texts) < size
            crop = 1.0 if small else c.crop_fraction
        return ImageTransformConfig(
            size=size,
            crop_fraction=crop,
            mean=tuple(c.mean),
            std=tuple(c.std),
            interpolation=c.interpolation,
        )

    def new_model(self, ctx, encoder: nn.Module, head: str = "", normalize=False, hidden=0):
        from tuneforge.models.classifier import build_head

        torch.manual_seed(ctx.config.seed)
        kind = head or self.options.head
        width = hidden or self.options.head_hidden
        dim = encoder.config.hidden_size
        head_module = build_head(dim, len(ctx.label_names), kind, width)
        model = ImageClassifier(encoder, head_module, resolve_precision(self.options.precision))
        transform = self.transform_for(encoder, ctx.train)
        model.spec = {
            "head": kind,
            "hidden": width,
            "dim": dim,
            "pooling": "mean",
            "normalize": False,
            "transform": transform,
            "input_key": transform.model_dump_json(),
        }
        return model

    def load_model(self, encoder: nn.Module, config) -> ImageClassifier:
        from tuneforge.models.classifier import build_head

        opts = self.Config(**config.task_config)
        dim = encoder.config.hidden_size
        head = build_head(dim, len(config.labels), opts.head, opts.head_hidden)
        # "auto" was resolved and recorded at training; an old artifact runs in fp32
        precision = "fp32" if opts.precision == "auto" else opts.precision
        return ImageClassifier(encoder, head, precision)

    def load_encoder(self, directory: Path) -> nn.Module:
        from tuneforge.models.vision import load_vision_dir

        return load_vision_dir(directory)

    def task_config(self, model, ctx) -> dict:
        spec = model.spec
        return self.options.model_copy(
            update={
                "transform": spec["transform"],
                "head": spec["head"],
                "head_hidden": spec["hidden"],
                "precision": model.precision,
            }
        ).model_dump(mode="json")

    def processor(self, ctx, model=None) -> ImageProcessor:
        transform = model.spec["transform"] if model is not None else self.options.transform
        return ImageProcessor(transform, self.options.max_pixels)

    def load_processor(self, directory: Path, config) -> ImageProcessor:
        opts = self.Config(**config.task_config)
        return ImageProcessor(opts.transform, opts.max_pixels)

    def map_inputs(self, model, fn, inputs: list, batch_size: int, progress: str | None) -> list:
        """`fn` over batches of pictures (paths, bytes or PIL images), decoded one batch at a
        time (constant memory), with the artifact's evaluation transform."""
        processor, out = model.tokenizer, []
        batches = range(0, len(inputs), batch_size)
        with torch.inference_mode():
            for start in _progress(batches, progress, len(batches)):
                out += list(fn(processor(inputs[start : start + batch_size])))
        return out

    # ---- pictures ----------------------------------------------------------------------------
    def pictures(self, ctx, paths: list[str]) -> list:
        """Decoded, downscaled copies of the pictures, decoded once per run."""
        from tuneforge.images.decode import open_image

        memo = ctx.__dict__.setdefault("_pictures", {})
        transform = self._transform(ctx)
        missing = [p for p in dict.fromkeys(paths) if p not in memo]
        for path in _progress(missing, "decoding images"):
            memo[path] = prepare_for_cache(
                open_image(path, max_pixels=self.options.max_pixels), transform
            )
        return [memo[p] for p in paths]

    def _transform(self, ctx) -> ImageTransformConfig:
        """The run's evaluation transform, set by whichever hook first saw the model."""
        found = ctx.__dict__.get("_transform")
        if found is None:
            raise ConfigError("the image task's transform is set when the model is built")
        return found

    def embed_rows(self, ctx, model, inputs: list, progress: str | None = None) -> np.ndarray:
        """Pooled vectors of pictures by the model's current backbone (evaluation transform)."""
        transform = model.spec["transform"]
        ctx._transform = transform
        model.eval()
        out = []
        pictures = self.pictures(ctx, inputs)
        with torch.inference_mode():
            batches = range(0, len(pictures), 64)
            for start in _progress(batches, progress, len(batches)):
                x = eval_batch(pictures[start : start + 64], transform)
                out.append(model.embed(x).float().numpy())
        return np.concatenate(out) if out else np.zeros((0, model.spec["dim"]), np.float32)

    def lower_states(self, ctx, model, inputs, layer: int, split: str, dtype) -> list:
        """Each picture's state after backbone layer `layer`: for training rows, the clean view
        and `cache_views - 1` augmented ones (a list per row); else the evaluation view."""
        transform = ctx._transform = model.spec["transform"]
        pictures, views = self.pictures(ctx, inputs), self.options.cache_views
        backbone = model.encoder.eval()
        if model.precision == "bf16":
            dtype = torch.bfloat16  # what the top layers read anyway: half the memory
        rows: list = []
        label = {"eval": "validation"}.get(split, split)
        with torch.inference_mode(), model.autocast():
            batches = range(0, len(pictures), 32)
            for start in _progress(batches, f"caching {label} blocks", len(batches)):
                batch = pictures[start : start + 32]
                if split != "train" or views == 1:
                    states = backbone.lower(eval_batch(batch, transform), layer).to(dtype)
                    rows += list(states.clone())
                    continue
                per_view = [backbone.lower(eval_batch(batch, transform), layer).to(dtype)]
                for v in range(1, views):
                    rng = random.Random(ctx.config.seed * 100_003 + start * 31 + v)
                    x = torch.stack(
                        [train_transform(p, transform, self.options.augment, rng) for p in batch]
                    )
                    per_view.append(backbone.lower(x, layer).to(dtype))
                rows += [[s[i].clone() for s in per_view] for i in range(len(batch))]
        return rows

    # ---- training ----------------------------------------------------------------------------
    def input_job(self, ctx, module: nn.Module):
        """The job whose features are the pictures themselves (`full`, `lora`)."""
        ctx._transform = module.spec["transform"]
        return ctx.job(module, lambda inputs, split: self.pictures(ctx, inputs), None)

    def job(self, ctx, module, features: dict, collate_one, lengths):
        job = super().job(ctx, module, features, collate_one, lambda _: 1)
        transform, augment = self._transform(ctx), self.options.augment
        n_classes, seed = len(ctx.label_names), ctx.config.seed

        def rng_for(ix: list[int]) -> random.Random:  # the same batch, the same draw: resumable
            return random.Random(hash((seed, *ix)))

        def collate(split: str, ix: list[int]) -> dict[str, torch.Tensor]:
            rows = [features[split][i] for i in ix]
            rng = rng_for(ix)
            if isinstance(rows[0], torch.Tensor | list):
                rows = [r[rng.randrange(len(r))] if isinstance(r, list) else r for r in rows]
                key = "input" if rows[0].ndim == 1 else "hidden"
                return {key: torch.stack(rows).float()}
            if split == "train":
                x = torch.stack([train_transform(p, transform, augment, rng) for p in rows])
                return {"pixel_values": x}
            return {"pixel_values": eval_batch(rows, transform)}

        mixing = augment.mixup > 0 or augment.cutmix > 0
        step = None
        if mixing:

            def step(forward, ix: list[int]) -> torch.Tensor:
                batch = collate("train", ix)
                key, x = next(iter(batch.items()))
                x, soft = mix_batch(x, job.targets("train", ix), n_classes, augment, rng_for(ix))
                return job.loss(forward(**{key: x}).float(), soft)

        return replace(job, collate=collate, step=step)


def _median_short_side(paths: list[str], sample: int = 200) -> float:
    """The median shorter side of (up to `sample` evenly spread) pictures, from their headers."""
    from PIL import Image

    step = max(1, len(paths) // sample)
    sides = []
    for path in paths[::step][:sample]:
        try:
            with Image.open(path) as image:
                sides.append(min(image.size))
        except OSError:
            continue  # the data check reports unreadable files
    return float(median(sides)) if sides else float("inf")


def _progress(items, label: str | None, total: int | None = None):
    """A transient progress bar over `items` (none for short lists or without a label)."""
    total = total if total is not None else len(items)
    if not label or total < 3:
        return items
    from rich.progress import track

    return track(items, description=label, total=total, console=console, transient=True)
