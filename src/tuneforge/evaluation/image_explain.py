"""Pixel attributions for an image model (which parts of the picture made it choose its label),
drawn as a heatmap over the picture.

Integrated gradients (captum's IntegratedGradients on the normalized pixel input) for PyTorch
models: one batched pass of `n_steps` forward + backward passes, one weight per pixel; occlusion
(captum's Occlusion: grey out a sliding square, see how the score drops) for runtimes without
gradients, e.g. an exported ONNX model. Both compare with the same baseline, an all-zero
normalized input, i.e. every pixel at the training statistics' mean colour (mid grey): regions
that look like the baseline get no credit, so a flat background stays dark.

On a quick look (a tiny ViT told apart grey pictures by the colour of one square), both put the
mass inside the square; integrated gradients did so at pixel resolution and in ~n_steps passes,
while occlusion gave blocks of its window size and cost (size / stride)² passes (225 at 224 px
with a 28 px window), so integrated gradients is the default where gradients exist.

The weights are summed over the three channels; > 0 pushed towards the explained label.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

METHODS = ("integrated_gradients", "occlusion")
PIXEL_BUDGET = 500_000  # pixels per internal batch of integrated gradients (memory stays small)


@dataclass
class ImageExplanation:
    source: str  # the file (or "the uploaded image")
    label: str  # the explained class
    score: float  # its (calibrated) probability
    predicted: str  # the model's own top class
    weights: np.ndarray  # (H, W) at the model's input size, summed over channels
    picture: np.ndarray  # (H, W, 3) uint8: the model's input, un-normalized
    original: object  # the decoded picture (PIL), before the evaluation transform
    method: str

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the model's input."""
        return self.picture.shape[1], self.picture.shape[0]

    def to_dict(self) -> dict:
        h, w = self.weights.shape
        peak = np.unravel_index(int(np.argmax(self.weights)), self.weights.shape)
        return {
            "image": self.source,
            "label": self.label,
            "score": round(self.score, 6),
            "predicted": self.predicted,
            "method": self.method,
            "input_size": [w, h],
            "peak": {"x": int(peak[1]), "y": int(peak[0])},
            "positive_share": float(_positive_share(self.weights)),
        }


def _positive_share(weights: np.ndarray) -> float:
    total = float(np.abs(weights).sum())
    return float(np.clip(weights, 0, None).sum() / total) if total else 0.0


def supports_gradients(model) -> bool:
    """A PyTorch image classifier (backbone + head) and captum installed (`report` extra)."""
    from importlib.util import find_spec

    classifier = getattr(model.runtime, "classifier", None)
    return (
        classifier is not None
        and hasattr(classifier, "encoder")
        and hasattr(classifier, "head")
        and find_spec("captum") is not None
    )


def _picture(pixels, transform) -> np.ndarray:
    """The normalized (3, H, W) input back to uint8 pixels."""
    mean = np.asarray(transform.mean, dtype=np.float32).reshape(3, 1, 1)
    std = np.asarray(transform.std, dtype=np.float32).reshape(3, 1, 1)
    rgb = (pixels.detach().numpy() * std + mean) * 255.0
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8).transpose(1, 2, 0)


def _ig(model, x, target: int, n_steps: int):
    import torch
    from captum.attr import IntegratedGradients

    classifier = model.runtime.classifier

    def forward(pixel_values):  # fp32 throughout: bf16 gradients are too coarse to read
        return classifier.head(classifier.encoder(pixel_values).float())

    side = x.shape[-1] * x.shape[-2]
    with torch.enable_grad():
        attr = IntegratedGradients(forward).attribute(
            x,
            baselines=torch.zeros_like(x),
            target=target,
            n_steps=n_steps,
            internal_batch_size=max(1, min(n_steps, PIXEL_BUDGET // side)),
        )
    return attr[0].sum(0).detach().float().numpy()


def _occlusion(model, x, target: int, window: int | None = None):
    import torch
    from captum.attr import Occlusion

    def forward(pixel_values):  # any runtime: forward passes only
        logits = model.runtime.forward({"pixel_values": pixel_values.numpy()})["logits"]
        return torch.softmax(torch.as_tensor(np.asarray(logits)).float(), dim=1)

    side = window or max(2, x.shape[-1] // 8)
    stride = max(1, side // 2)
    with torch.no_grad():
        attr = Occlusion(forward).attribute(
            x,
            sliding_window_shapes=(3, side, side),
            strides=(3, stride, stride),
            baselines=0.0,
            target=target,
            perturbations_per_eval=16,
        )
    return attr[0].sum(0).float().numpy()


def explain_image(
    model,
    item,
    method: str = "auto",
    n_steps: int = 32,
    target: str | None = None,
    name: str | None = None,
) -> ImageExplanation:
    """Attribute the prediction for one picture (a path, bytes or a PIL image), or for class
    `target`, to its pixels at the model's input size."""
    from tuneforge.errors import ConfigError

    if method == "auto":
        method = "integrated_gradients" if supports_gradients(model) else "occlusion"
    if method not in METHODS:
        raise ConfigError(f"Unknown method {method!r}: use integrated_gradients or occlusion.")
    if method == "integrated_gradients" and not supports_gradients(model):
        raise ConfigError(
            "Integrated gradients need a PyTorch image model and captum (pip install "
            f"'tuneforge[report]'); runtime is '{model.config.runtime}'. Use --method occlusion."
        )
    if target is not None and target not in model.labels:
        raise ConfigError(f"Unknown label {target!r}; the model's labels: {model.labels}")
    processor = model.tokenizer
    source = name or (str(item) if isinstance(item, str | Path) else "the uploaded image")
    original = processor.open(str(item) if isinstance(item, Path) else item, name=name)
    x = processor([original])["pixel_values"]
    logits = np.asarray(model.runtime.forward({"pixel_values": x})["logits"])
    p = model.probabilities(logits)[0]
    idx = int(p.argmax()) if target is None else model.labels.index(target)
    if method == "integrated_gradients":
        weights = _ig(model, x, idx, n_steps)
    else:
        weights = _occlusion(model, x, idx)
    return ImageExplanation(
        source=source,
        label=model.labels[idx],
        score=float(p[idx]),
        predicted=model.labels[int(p.argmax())],
        weights=weights,
        picture=_picture(x[0], processor.transform),
        original=original,
        method=method,
    )


# ---- display -------------------------------------------------------------------------------
def heat(weights: np.ndarray, smooth: float | None = None) -> np.ndarray:
    """Positive evidence in [0, 1]: lightly smoothed (pixel gradients are speckled), scaled by
    the 99th percentile so one hot pixel does not wash out the rest."""
    from scipy.ndimage import gaussian_filter

    sigma = smooth if smooth is not None else max(0.5, weights.shape[0] / 112)
    v = gaussian_filter(np.clip(weights, 0, None).astype(np.float64), sigma)
    top = float(np.percentile(v, 99)) or float(v.max()) or 1.0
    return np.clip(v / top, 0, 1)


def overlay(exp: ImageExplanation, cmap: str = "inferno", strength: float = 0.85):
    """The heatmap blended over the model's input picture (PIL, the input's size): the picture
    in grey where the evidence is weak (so its own colours never read as heat), the colour map
    where it is strong."""
    import matplotlib
    from PIL import Image

    v = heat(exp.weights)
    colours = matplotlib.colormaps[cmap](v)[..., :3] * 255.0
    grey = exp.picture.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    base = np.repeat((40 + 0.6 * grey)[..., None], 3, axis=2)  # dimmed: the heat stands out
    alpha = (strength * np.sqrt(v))[..., None]  # faint evidence still tints
    out = base * (1 - alpha) + colours * alpha
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8), "RGB")


def side_by_side(exp: ImageExplanation, gap: int = 4):
    """The original picture (scaled to the heatmap's height) beside the heatmap."""
    from PIL import Image

    heatmap = overlay(exp)
    w, h = exp.original.size
    left = exp.original.resize((max(1, round(w * heatmap.height / h)), heatmap.height))
    canvas = Image.new("RGB", (left.width + gap + heatmap.width, heatmap.height), "white")
    canvas.paste(left, (0, 0))
    canvas.paste(heatmap, (left.width + gap, 0))
    return canvas


def save_heatmap(exp: ImageExplanation, path: str | Path, with_original: bool = False) -> Path:
    """Write the heatmap (beside the original with `with_original`) as a PNG, atomically."""
    image = side_by_side(exp) if with_original else overlay(exp)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(buf.getvalue())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
