"""Image pre-processing and augmentation (tuneforge.images.transforms): PIL and torch only."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from pydantic import ValidationError

from tuneforge.images.transforms import (
    EFFICIENTNET_LITE_STATS,
    TRIVIAL_AUGMENT_OPS,
    TRIVIAL_AUGMENT_SPACE,
    AugmentConfig,
    ImageTransformConfig,
    apply_op,
    eval_batch,
    eval_transform,
    mix_batch,
    prepare_for_cache,
    random_resized_crop_box,
    train_batch,
    train_transform,
    trivial_augment,
)

SMALL = ImageTransformConfig(size=32, resize=36)


def noise(w: int, h: int, seed: int = 0, lo: int = 0, hi: int = 256) -> Image.Image:
    pixels = np.random.RandomState(seed).randint(lo, hi, (h, w, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


# ---------------------------------------------------------------------------------- configs


def test_configs_round_trip_through_model_dump_and_yaml():
    cfg = ImageTransformConfig(
        size=260,
        resize=300,
        mean=EFFICIENTNET_LITE_STATS[0],
        std=EFFICIENTNET_LITE_STATS[1],
        interpolation="bilinear",
    )
    aug = AugmentConfig(crop_scale=(0.5, 1.0), mixup=0.2, cutmix=1.0, mix_prob=0.5)
    for c in (cfg, aug, ImageTransformConfig(), AugmentConfig()):
        text = yaml.safe_dump(c.model_dump())  # python-mode dump: tuples come out as lists
        assert type(c)(**yaml.safe_load(text)) == c
        assert type(c).model_validate(c.model_dump(mode="json")) == c
    assert ImageTransformConfig().resize_to == 256  # round(224 / 0.875)
    assert cfg.resize_to == 300


@pytest.mark.parametrize(
    ("cls", "values"),
    [
        (ImageTransformConfig, {"sise": 224}),
        (ImageTransformConfig, {"size": 224, "resize": 200}),  # smaller than the crop
        (ImageTransformConfig, {"std": (0.2, 0.0, 0.2)}),
        (ImageTransformConfig, {"interpolation": "nearest"}),
        (AugmentConfig, {"trivial_augmentation": True}),
        (AugmentConfig, {"crop_scale": (0.8, 0.5)}),
        (AugmentConfig, {"mix_prob": 1.5}),
    ],
)
def test_configs_reject_unknown_keys_and_bad_values(cls, values):
    with pytest.raises(ValidationError):
        cls(**values)


# ------------------------------------------------------------------------------- evaluation


def test_eval_transform_shape_dtype_and_constant_colour_is_exact():
    colour = (10, 200, 77)
    out = eval_transform(Image.new("RGB", (37, 23), colour), ImageTransformConfig())
    assert out.shape == (3, 224, 224) and out.dtype == torch.float32
    cfg = ImageTransformConfig()
    for c, value, m, s in zip(range(3), colour, cfg.mean, cfg.std, strict=True):
        expected = torch.full((224, 224), (value / 255 - m) / s)
        torch.testing.assert_close(out[c], expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("transpose", [False, True])
def test_eval_transform_keeps_the_aspect_ratio_before_the_center_crop(transpose):
    # 200x100: red on the left 60%, blue on the right 40%. The shorter side goes to 40 (80x40),
    # the centre 40 columns are source columns 50..150: 70% red. A squash to 40x40 would be 60%.
    pixels = np.zeros((100, 200, 3), dtype=np.uint8)
    pixels[:, :120, 0] = 255
    pixels[:, 120:, 2] = 255
    img = Image.fromarray(pixels)
    if transpose:  # the same on a tall image
        img = img.transpose(Image.Transpose.TRANSPOSE)
    out = eval_transform(img, ImageTransformConfig(size=40, resize=40))
    if transpose:
        out = out.transpose(1, 2)
    red_columns = (out[0] > out[2]).all(dim=0)  # a column is red top to bottom
    assert red_columns[:27].all() and not red_columns[29:].any()
    assert int(red_columns.sum()) in (27, 28, 29)
    assert (out[0] > out[2]).all(dim=1).sum() == 0  # no row is all red: both colours kept


def test_eval_transform_upscales_small_images():
    pixels = np.zeros((16, 16, 3), dtype=np.uint8)
    pixels[:, :8] = (255, 255, 255)  # white left half, black right half
    out = eval_transform(Image.fromarray(pixels), ImageTransformConfig())
    assert out.shape == (3, 224, 224)
    white = out[0] > 0
    assert white[:, :100].all() and not white[:, 124:].any()


def test_eval_transform_is_deterministic_and_matches_eval_batch():
    images = [noise(50, 40, 1), noise(31, 77, 2), noise(32, 32, 3).convert("L")]
    singles = [eval_transform(img, SMALL) for img in images]
    assert torch.equal(singles[0], eval_transform(images[0], SMALL))
    batch = eval_batch(images, SMALL)
    assert batch.shape == (3, 3, 32, 32) and batch.dtype == torch.float32
    assert torch.equal(batch, torch.stack(singles))
    assert eval_batch([], SMALL).shape == (0, 3, 32, 32)


def test_prepare_for_cache_bounds_the_shorter_side_and_never_upscales():
    cfg = ImageTransformConfig()  # resize 256 -> bound int(256 * 1.15) = 294
    wide = prepare_for_cache(noise(1000, 600), cfg)
    assert wide.size == (490, 294)
    tall = prepare_for_cache(noise(300, 2000), cfg)
    assert tall.size == (294, 1960)
    small = noise(100, 50)
    kept = prepare_for_cache(small, cfg)
    assert kept.size == (100, 50) and kept is not small
    assert np.array_equal(np.asarray(kept), np.asarray(small))
    assert prepare_for_cache(noise(40, 30).convert("RGBA"), cfg).mode == "RGB"
    big = ImageTransformConfig(size=384, resize=None)  # bound follows max(resize, size)
    assert min(prepare_for_cache(noise(1000, 600), big).size) == int(round(384 / 0.875) * 1.15)


# --------------------------------------------------------------------------------- training


def test_train_transform_is_deterministic_per_seed_and_differs_across_seeds():
    img, aug = noise(60, 45), AugmentConfig()
    a = train_transform(img, SMALL, aug, random.Random(7))
    assert a.shape == (3, 32, 32) and a.dtype == torch.float32
    assert torch.equal(a, train_transform(img, SMALL, aug, random.Random(7)))
    assert not torch.equal(a, train_transform(img, SMALL, aug, random.Random(8)))


def test_train_transform_hflip_mirrors_the_image():
    img = noise(32, 32, 5)
    aug = AugmentConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), trivial_augment=False)
    plain = eval_transform(img, ImageTransformConfig(size=32, resize=32))  # the image itself
    flipped = plain.flip(-1)
    assert not torch.equal(plain, flipped)
    seen = {"plain": 0, "flipped": 0}
    for seed in range(20):
        out = train_transform(img, ImageTransformConfig(size=32), aug, random.Random(seed))
        if torch.equal(out, plain):
            seen["plain"] += 1
        else:
            assert torch.equal(out, flipped), seed
            seen["flipped"] += 1
    assert seen["plain"] > 0 and seen["flipped"] > 0
    no_flip = aug.model_copy(update={"hflip": False})
    for seed in range(5):
        out = train_transform(img, ImageTransformConfig(size=32), no_flip, random.Random(seed))
        assert torch.equal(out, plain)


def test_random_resized_crop_box_samples_within_bounds_and_falls_back_to_a_center_crop():
    rng = random.Random(0)
    for _ in range(200):
        left, top, right, bottom = random_resized_crop_box(
            500, 375, (0.35, 1.0), (3 / 4, 4 / 3), rng
        )
        assert 0 <= left < right <= 500 and 0 <= top < bottom <= 375
        area = (right - left) * (bottom - top) / (500 * 375)
        assert 0.33 < area <= 1.0
    # no 10:1 box fits a square: the centre strip at the nearest ratio
    assert random_resized_crop_box(100, 100, (0.5, 1.0), (10.0, 20.0), rng) == (0, 45, 100, 55)
    assert random_resized_crop_box(100, 100, (0.5, 1.0), (0.05, 0.1), rng) == (45, 0, 55, 100)


def test_trivial_augment_space_matches_torchvision():
    assert len(TRIVIAL_AUGMENT_OPS) == 14
    ranges = {n: (m[0], m[-1], len(m)) for n, (m, _) in TRIVIAL_AUGMENT_SPACE.items() if m}
    assert ranges["ShearX"] == (0.0, 0.99, 31) and ranges["Rotate"] == (0.0, 135.0, 31)
    assert ranges["TranslateY"] == (0.0, 32.0, 31) and ranges["Sharpness"] == (0.0, 0.99, 31)
    assert ranges["Posterize"] == (8.0, 2.0, 31) and ranges["Solarize"] == (255.0, 0.0, 31)
    signed = {n for n, (_, s) in TRIVIAL_AUGMENT_SPACE.items() if s}
    assert signed == {"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"} | {
        "Brightness",
        "Color",
        "Contrast",
        "Sharpness",
    }


@pytest.mark.parametrize("op", TRIVIAL_AUGMENT_OPS)
def test_each_trivial_augment_op_keeps_the_size_of_odd_rgb_images(op):
    magnitudes, signed = TRIVIAL_AUGMENT_SPACE[op]
    chosen = [magnitudes[0], magnitudes[15], magnitudes[-1]] if magnitudes else [0.0]
    if signed:
        chosen += [-m for m in chosen]
    for size in [(1, 1), (5, 3), (37, 23)]:
        img = noise(*size, lo=50, hi=150)
        for m in chosen:
            out = apply_op(img, op, m)
            assert out.size == size and out.mode == "RGB", (op, size, m)
    img = noise(37, 23, lo=50, hi=150)  # low contrast, so AutoContrast/Equalize act too
    strongest = apply_op(img, op, magnitudes[-1] if magnitudes else 0.0)
    assert np.array_equal(np.asarray(strongest), np.asarray(img)) == (op == "Identity")


def test_trivial_augment_draws_every_op():
    rng, img = random.Random(0), noise(33, 17)
    outs = [trivial_augment(img, rng) for _ in range(300)]
    assert all(o.size == (33, 17) for o in outs)
    assert sum(np.array_equal(np.asarray(o), np.asarray(img)) for o in outs) < 60


def test_train_batch_stacks_train_transform_and_passes_labels_without_mixing():
    images = [noise(40, 30, i) for i in range(4)]
    labels = torch.tensor([0, 2, 1, 2])
    aug = AugmentConfig()
    x, y = train_batch(images, labels, SMALL, aug, random.Random(3), n_classes=3)
    rng = random.Random(3)
    assert torch.equal(x, torch.stack([train_transform(i, SMALL, aug, rng) for i in images]))
    assert y is labels
    mixing = aug.model_copy(update={"mixup": 0.4})
    x, y = train_batch(images, labels, SMALL, mixing, random.Random(3), n_classes=3)
    assert x.shape == (4, 3, 32, 32) and y.shape == (4, 3) and y.dtype == torch.float32


# ------------------------------------------------------------------------------ mixup, cutmix


def constant_batch(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Image k is the constant k, its label is k: a pixel's value names the image it came from."""
    return torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, 16, 20).clone(), (
        torch.arange(n)
    )


@pytest.mark.parametrize("seed", range(6))
def test_mixup_mixes_images_and_targets_with_the_same_lambda(seed):
    x, y = constant_batch(8)
    aug = AugmentConfig(mixup=0.4)
    mixed, targets = mix_batch(x.clone(), y, 10, aug, random.Random(seed))
    assert targets.shape == (8, 10) and targets.dtype == torch.float32
    torch.testing.assert_close(targets.sum(1), torch.ones(8))
    assert (targets[:, 8:] == 0).all()
    classes = torch.arange(10, dtype=torch.float32)
    # every image is lambda * a + (1 - lambda) * b, and its target says so
    torch.testing.assert_close(mixed[:, 0, 0, 0], targets @ classes)
    assert (mixed == mixed[:, :1, :1, :1]).all()  # mixup mixes whole images
    top = targets.max(1).values  # max(lambda, 1 - lambda), or 1 for an image paired with itself
    mixed_rows = top[top < 1 - 1e-6]
    assert len(mixed_rows) > 0 and torch.allclose(mixed_rows, mixed_rows[0].expand_as(mixed_rows))


@pytest.mark.parametrize("seed", range(6))
def test_cutmix_box_area_matches_lambda(seed):
    x, y = constant_batch(8)
    mixed, targets = mix_batch(x.clone(), y, 8, AugmentConfig(cutmix=1.0), random.Random(seed))
    torch.testing.assert_close(targets.sum(1), torch.ones(8))
    for i in range(8):  # the share of pixels from image c is target[i, c]
        counts = torch.bincount(mixed[i].flatten().long(), minlength=8).float()
        torch.testing.assert_close(counts / mixed[i].numel(), targets[i])
    pasted = (mixed != x).any(1)  # (n, h, w): one box, the same in every image
    box = pasted.any(0)
    assert torch.equal(box, box.any(1, keepdim=True) & box.any(0, keepdim=True))  # a rectangle
    assert all(not p.any() or torch.equal(p, box) for p in pasted)


def test_mix_batch_picks_both_kinds_and_honours_mix_prob():
    x, y = constant_batch(6)
    both = AugmentConfig(mixup=0.4, cutmix=1.0)
    kinds = set()
    for seed in range(30):
        mixed, _ = mix_batch(x.clone(), y, 6, both, random.Random(seed))
        whole = (mixed == mixed[:, :1, :1, :1]).all()
        kinds.add("mixup" if whole and not torch.equal(mixed, x) else "cutmix")
    assert kinds == {"mixup", "cutmix"}
    never = both.model_copy(update={"mix_prob": 0.0})
    mixed, targets = mix_batch(x.clone(), y, 6, never, random.Random(0))
    assert torch.equal(mixed, x) and torch.equal(targets, torch.eye(6))


def test_mix_batch_off_returns_targets_unchanged():
    x, y = constant_batch(4)
    mixed, targets = mix_batch(x.clone(), y, 4, AugmentConfig(), random.Random(0))
    assert torch.equal(mixed, x) and targets is y
