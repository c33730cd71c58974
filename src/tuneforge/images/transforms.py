"""Image pre-processing and training augmentation with PIL and torch only (no torchvision).

Evaluation: resize the shorter side to `resize`, center crop `size`, normalize. Training:
RandomResizedCrop straight to `size`, a horizontal flip, one TrivialAugmentWide op, normalize;
then optionally mixup / cutmix on the batch. Each image's crop-and-resize is ONE PIL
`resize(..., box=...)` pass; each image goes (np.asarray) straight into its slot of the batch
tensor, normalized there in place.

The algorithms follow torchvision (`RandomResizedCrop.get_params`, `TrivialAugmentWide` and its
`_apply_op`) and timm / torchvision's mixup and cutmix, drawing from a `random.Random` so that a
seeded run is reproducible (and independent of torch's global generator).

Measured on this 2-core machine (shared with other jobs, load ~5), size 224, bicubic,
TrivialAugment on, best of 3 runs of 200 calls, 1 or 2 torch threads alike: train_transform takes
~1.0-1.15 ms per image from a 32x32 image (a 10,000-image CIFAR epoch: ~11 s of one core) and
~1.8-2.0 ms from a 500x375 one; train_batch the same per image; eval_transform ~0.8 / ~1.7-2.3 ms.
About 0.2 ms of that is the tensor conversion, up to 1.3 ms the op (Sharpness is the dearest).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import Annotated, Literal, Self

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageOps
from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, model_validator

# tuples dump as lists even in model_dump()'s python mode, so yaml.safe_dump takes the dump as-is
_Triple = Annotated[tuple[float, float, float], PlainSerializer(list)]
_Pair = Annotated[tuple[float, float], PlainSerializer(list)]

IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
# TF EfficientNet-Lite preprocessing, (x - 127) / 128, as a mean/std over x/255
EFFICIENTNET_LITE_STATS = ((0.498, 0.498, 0.498), (0.502, 0.502, 0.502))

_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}
# geometric TrivialAugment ops fill uncovered pixels with mid grey: ~0 after either normalization
# (torchvision fills black by default; timm fills with the mean pixel)
_FILL = (128, 128, 128)
_NUM_BINS = 31  # TrivialAugmentWide's magnitude bins


class ImageTransformConfig(BaseModel):
    """How an image becomes the model's input tensor; stored in the model artifact."""

    model_config = ConfigDict(extra="forbid")

    size: int = Field(224, ge=8, description="square input side")
    resize: int | None = Field(
        None, ge=8, description="shorter side before the center crop; None = size / crop_fraction"
    )
    crop_fraction: float = Field(0.875, gt=0, le=1)
    mean: _Triple = IMAGENET_STATS[0]
    std: _Triple = IMAGENET_STATS[1]
    interpolation: Literal["bilinear", "bicubic"] = "bicubic"

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.resize is not None and self.resize < self.size:
            raise ValueError(f"resize ({self.resize}) must be at least size ({self.size})")
        if min(self.std) <= 0:
            raise ValueError(f"std values must be positive, got {self.std}")
        return self

    @property
    def resize_to(self) -> int:
        """The shorter side before the center crop."""
        return self.resize if self.resize is not None else round(self.size / self.crop_fraction)


class AugmentConfig(BaseModel):
    """Training-time augmentation (never applied at evaluation)."""

    model_config = ConfigDict(extra="forbid")

    crop_scale: _Pair = (0.35, 1.0)  # RandomResizedCrop: fraction of the image area
    crop_ratio: _Pair = (3 / 4, 4 / 3)  # RandomResizedCrop: aspect ratio w/h
    hflip: bool = True
    trivial_augment: bool = True  # one random op at a random magnitude per image
    mixup: float = Field(0.0, ge=0, description="Beta(alpha, alpha); 0 = off")
    cutmix: float = Field(0.0, ge=0, description="Beta(alpha, alpha); 0 = off")
    mix_prob: float = Field(1.0, ge=0, le=1, description="chance a batch is mixed")

    @model_validator(mode="after")
    def _check(self) -> Self:
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale}")
        lo, hi = self.crop_ratio
        if not 0 < lo <= hi:
            raise ValueError(f"crop_ratio must satisfy 0 < low <= high, got {self.crop_ratio}")
        return self

    @property
    def mixes(self) -> bool:
        return self.mix_prob > 0 and (self.mixup > 0 or self.cutmix > 0)


# ---------------------------------------------------------------------------- pixels -> tensor


def normalize_params(
    mean: Sequence[float], std: Sequence[float]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift), shaped (3, 1, 1), with (x / 255 - mean) / std == x * scale + shift."""
    m = torch.tensor(mean, dtype=torch.float64)
    s = torch.tensor(std, dtype=torch.float64)
    scale, shift = 1.0 / (255.0 * s), -m / s
    return scale.float().view(3, 1, 1), shift.float().view(3, 1, 1)


def _rgb(image: Image.Image) -> Image.Image:
    return image if image.mode == "RGB" else image.convert("RGB")


def _to_batch(images: Sequence[Image.Image], cfg: ImageTransformConfig) -> torch.Tensor:
    """Stack RGB images of one size into a normalized (n, 3, h, w) float32 tensor.

    Each image goes uint8 HWC -> normalized float CHW in two numpy passes straight into its slot
    of the batch tensor (while its pixels are in cache). numpy, not torch ops: torch's intra-op
    thread pool wakes on every op, and on 2 busy cores one image took 24 ms that way (0.2 ms here).
    """
    w, h = images[0].size
    out = torch.empty((len(images), 3, h, w), dtype=torch.float32)
    scale, shift = (t.numpy() for t in normalize_params(cfg.mean, cfg.std))
    slots = out.numpy()
    for img, slot in zip(images, slots, strict=True):
        np.multiply(np.asarray(img).transpose(2, 0, 1), scale, out=slot)
        np.add(slot, shift, out=slot)
    return out


# -------------------------------------------------------------------------------- evaluation


def prepare_for_cache(image: Image.Image, cfg: ImageTransformConfig) -> Image.Image:
    """An RGB copy whose shorter side is at most max(resize, size) * 1.15 (never upscaled): what
    the trainer keeps in memory per image, enough for both transforms at full quality."""
    img = _rgb(image)
    bound = int(max(cfg.resize_to, cfg.size) * 1.15)
    w, h = img.size
    short = min(w, h)
    if short <= bound:
        return img.copy() if img is image else img
    f = bound / short
    new = (bound, max(1, round(h * f))) if w <= h else (max(1, round(w * f)), bound)
    return img.resize(new, Image.Resampling.BICUBIC, reducing_gap=3.0)


def _center_box(width: int, height: int, cfg: ImageTransformConfig) -> tuple[float, ...]:
    """The source box that "resize the shorter side, then center crop `size`" keeps."""
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = cfg.resize_to, int(cfg.resize_to * long / short)  # as torchvision
    new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
    left = round((new_w - cfg.size) / 2.0)
    top = round((new_h - cfg.size) / 2.0)
    fx, fy = width / new_w, height / new_h
    return (left * fx, top * fy, (left + cfg.size) * fx, (top + cfg.size) * fy)


def _eval_pil(image: Image.Image, cfg: ImageTransformConfig) -> Image.Image:
    img = _rgb(image)
    box = _center_box(*img.size, cfg)
    return img.resize((cfg.size, cfg.size), _RESAMPLE[cfg.interpolation], box=box)


def eval_transform(image: Image.Image, cfg: ImageTransformConfig) -> torch.Tensor:
    """Resize the shorter side to `resize` (small images are upscaled), center crop `size`:
    a normalized float32 (3, size, size) tensor."""
    return _to_batch([_eval_pil(image, cfg)], cfg)[0]


def eval_batch(images: Sequence[Image.Image], cfg: ImageTransformConfig) -> torch.Tensor:
    """eval_transform over a list: (n, 3, size, size) float32."""
    if not images:
        return torch.empty((0, 3, cfg.size, cfg.size))
    return _to_batch([_eval_pil(img, cfg) for img in images], cfg)


# ---------------------------------------------------------------------------------- training


def random_resized_crop_box(
    width: int,
    height: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    rng: random.Random,
) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop.get_params as a PIL box (left, top, right, bottom):
    10 tries of (area, log-ratio) sampling, then a center crop clamped to `ratio`."""
    area = width * height
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = rng.randint(0, height - h)
            left = rng.randint(0, width - w)
            return left, top, left + w, top + h
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        w, h = round(height * max(ratio)), height
    else:
        w, h = width, height
    top, left = (height - h) // 2, (width - w) // 2
    return left, top, left + w, top + h


def _affine(img: Image.Image, data: tuple[float, ...]) -> Image.Image:
    return img.transform(
        img.size, Image.Transform.AFFINE, data, Image.Resampling.NEAREST, fillcolor=_FILL
    )


# TrivialAugmentWide's ops, each (image, magnitude) -> image, as torchvision's _apply_op does them
# on PIL images (nearest-neighbour resampling, shears about the top-left corner).
_OPS: dict[str, Callable[[Image.Image, float], Image.Image]] = {
    "Identity": lambda img, m: img,
    "ShearX": lambda img, m: _affine(img, (1.0, m, 0.0, 0.0, 1.0, 0.0)),
    "ShearY": lambda img, m: _affine(img, (1.0, 0.0, 0.0, m, 1.0, 0.0)),
    "TranslateX": lambda img, m: _affine(img, (1.0, 0.0, -int(m), 0.0, 1.0, 0.0)),
    "TranslateY": lambda img, m: _affine(img, (1.0, 0.0, 0.0, 0.0, 1.0, -int(m))),
    "Rotate": lambda img, m: img.rotate(m, Image.Resampling.NEAREST, fillcolor=_FILL),
    "Brightness": lambda img, m: ImageEnhance.Brightness(img).enhance(1.0 + m),
    "Color": lambda img, m: ImageEnhance.Color(img).enhance(1.0 + m),
    "Contrast": lambda img, m: ImageEnhance.Contrast(img).enhance(1.0 + m),
    "Sharpness": lambda img, m: ImageEnhance.Sharpness(img).enhance(1.0 + m),
    "Posterize": lambda img, m: ImageOps.posterize(img, int(m)),
    "Solarize": lambda img, m: ImageOps.solarize(img, m),
    "AutoContrast": lambda img, m: ImageOps.autocontrast(img),
    "Equalize": lambda img, m: ImageOps.equalize(img),
}


def _linspace(lo: float, hi: float) -> tuple[float, ...]:
    return tuple(lo + (hi - lo) * i / (_NUM_BINS - 1) for i in range(_NUM_BINS))


# name -> (magnitude per bin, signed); an empty tuple = no magnitude. torchvision's ranges.
TRIVIAL_AUGMENT_SPACE: dict[str, tuple[tuple[float, ...], bool]] = {
    "Identity": ((), False),
    "ShearX": (_linspace(0.0, 0.99), True),
    "ShearY": (_linspace(0.0, 0.99), True),
    "TranslateX": (_linspace(0.0, 32.0), True),
    "TranslateY": (_linspace(0.0, 32.0), True),
    "Rotate": (_linspace(0.0, 135.0), True),
    "Brightness": (_linspace(0.0, 0.99), True),
    "Color": (_linspace(0.0, 0.99), True),
    "Contrast": (_linspace(0.0, 0.99), True),
    "Sharpness": (_linspace(0.0, 0.99), True),
    "Posterize": (
        tuple(float(8 - round(i / ((_NUM_BINS - 1) / 6))) for i in range(_NUM_BINS)),
        False,
    ),
    "Solarize": (_linspace(255.0, 0.0), False),
    "AutoContrast": ((), False),
    "Equalize": ((), False),
}
TRIVIAL_AUGMENT_OPS = tuple(TRIVIAL_AUGMENT_SPACE)


def apply_op(image: Image.Image, name: str, magnitude: float) -> Image.Image:
    """One TrivialAugment op on an RGB image; the size is kept."""
    return _OPS[name](image, magnitude)


def trivial_augment(image: Image.Image, rng: random.Random) -> Image.Image:
    """TrivialAugmentWide: one uniformly chosen op at a uniformly chosen bin, random sign."""
    name = TRIVIAL_AUGMENT_OPS[rng.randrange(len(TRIVIAL_AUGMENT_OPS))]
    magnitudes, signed = TRIVIAL_AUGMENT_SPACE[name]
    magnitude = magnitudes[rng.randrange(len(magnitudes))] if magnitudes else 0.0
    if signed and rng.random() < 0.5:
        magnitude = -magnitude
    return apply_op(image, name, magnitude)


def _train_pil(
    image: Image.Image, cfg: ImageTransformConfig, augment: AugmentConfig, rng: random.Random
) -> Image.Image:
    img = _rgb(image)
    box = random_resized_crop_box(*img.size, augment.crop_scale, augment.crop_ratio, rng)
    img = img.resize((cfg.size, cfg.size), _RESAMPLE[cfg.interpolation], box=box)
    if augment.hflip and rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if augment.trivial_augment:
        img = trivial_augment(img, rng)
    return img


def train_transform(
    image: Image.Image, cfg: ImageTransformConfig, augment: AugmentConfig, rng: random.Random
) -> torch.Tensor:
    """RandomResizedCrop to `size`, hflip (p=0.5), one TrivialAugmentWide op, normalize:
    (3, size, size) float32, determined by `rng`'s state."""
    return _to_batch([_train_pil(image, cfg, augment, rng)], cfg)[0]


def train_batch(
    images: Sequence[Image.Image],
    labels: torch.Tensor,
    cfg: ImageTransformConfig,
    augment: AugmentConfig,
    rng: random.Random,
    n_classes: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """train_transform over a batch (same draws, in order), then mix_batch. The targets are soft
    (n, n_classes) float when mixup or cutmix is on, else `labels` unchanged."""
    x = _to_batch([_train_pil(img, cfg, augment, rng) for img in images], cfg)
    return mix_batch(x, labels, n_classes, augment, rng)


def one_hot(y: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Class ids (n,) -> float32 (n, n_classes); soft targets (n, n_classes) pass as float."""
    if y.ndim == 2:
        return y.float()
    return torch.zeros((len(y), n_classes)).scatter_(1, y.long().view(-1, 1), 1.0)


def cutmix_box(
    height: int, width: int, lam: float, rng: random.Random
) -> tuple[int, int, int, int]:
    """A (top, left, bottom, right) box of about (1 - lam) of the image, centred uniformly and
    clipped to the image (timm / torchvision's rand_bbox)."""
    cut = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * cut), int(width * cut)
    cy, cx = rng.randrange(height), rng.randrange(width)
    top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
    left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
    return top, left, bottom, right


def mix_batch(
    x: torch.Tensor,
    y: torch.Tensor,
    n_classes: int,
    augment: AugmentConfig,
    rng: random.Random,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup or cutmix (one at random when both are on), with probability `mix_prob`, pairing
    each image with another by a random permutation of the batch. `x` is mixed IN PLACE (and
    returned); class ids `y` become soft one-hot targets mixed with the same lambda (cutmix: the
    lambda of the clipped box's real area). With mixup = cutmix = 0, x and y come back as given."""
    if not (augment.mixup > 0 or augment.cutmix > 0):
        return x, y
    targets = one_hot(y, n_classes)
    if len(x) < 2 or rng.random() >= augment.mix_prob:
        return x, targets
    use_cutmix = augment.cutmix > 0 and (augment.mixup <= 0 or rng.random() < 0.5)
    alpha = augment.cutmix if use_cutmix else augment.mixup
    lam = rng.betavariate(alpha, alpha)
    order = list(range(len(x)))
    rng.shuffle(order)
    perm = torch.tensor(order)
    if use_cutmix:
        h, w = x.shape[-2:]
        top, left, bottom, right = cutmix_box(h, w, lam, rng)
        x[:, :, top:bottom, left:right] = x[perm, :, top:bottom, left:right]
        lam = 1.0 - (bottom - top) * (right - left) / (h * w)
    else:
        other = x[perm]
        x.mul_(lam).add_(other, alpha=1.0 - lam)
    other_targets = targets[perm]
    return x, targets.mul_(lam).add_(other_targets, alpha=1.0 - lam)
