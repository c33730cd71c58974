"""GGUF export of a chat model: one file that llama.cpp, Ollama and transformers can run.

The file follows llama.cpp's `convert_hf_to_gguf.py` conventions for the `llama` architecture:
the hyper-parameters under `llama.*` keys, tensors renamed with gguf's `TensorNameMap`, the Q and
K projections permuted into the interleaved rotary layout llama.cpp's kernels expect (transformers
undoes it on load), 1-D tensors (norms) kept float32, and the tokenizer as a `gpt2` byte-level BPE
(tokens, token types, merges, special ids, the chat template).

Before the file is put in place it is loaded back with transformers (model and tokenizer) and
compared with the source on fixed prompts: the tokenizer must give the same ids, and the logits
must agree within the limits of the chosen type (`PARITY_LIMITS`), else nothing is written
(unless forced), like the ONNX exporter's accuracy gate.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from tuneforge.errors import ConfigError

log = logging.getLogger(__name__)

SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM",)
GGUF_TYPES = ("f32", "f16", "q8_0")
DEFAULT_GGUF_TYPE = "f16"
# (largest |logit difference| relative to the largest |logit|, smallest argmax agreement) of the
# reloaded file against the source, over every position of the check prompts. float32 is the same
# numbers; measured on SmolLM2-135M (a 1-epoch LoRA): f16 0.0015 / 1.0, q8_0 0.028 / 0.995. A
# missing Q/K permutation costs even a tiny random Llama 0.0056, over the f16 limit.
PARITY_LIMITS = {"f32": (1e-4, 1.0), "f16": (5e-3, 0.99), "q8_0": (0.06, 0.95)}
# check prompts: chats through the model's template, plus raw text (digits, accents, emoji)
CHECK_CHATS = (
    "Hello! Who are you?",
    "What is the capital of France?",
    "Write a short poem about the sea.",
    "How do I reset my password?",
)
CHECK_TEXTS = (
    "The year 2024 had 366 days; 12 + 35 = 47.",
    "Café naïve – 日本語 🚀 <b>ok</b>\n\tend",
)


@dataclass
class ChatExportReport:
    """What `export_gguf` / `export_hf` wrote and how close it is to the source model."""

    path: str
    format: str
    quantize: str
    size_mb: float
    seconds: float
    pre_tokenizer: str
    parity: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def export_gguf(
    model, out: str | Path, *, quantize: str | None = None, check: bool = True, force: bool = False
) -> ChatExportReport:
    """Write `model` (a chat `TunedModel` or its directory) to the GGUF file `out`, atomically.

    quantize: "f32", "f16" (default) or "q8_0" for the 2-D weights. check: reload the file with
    transformers and compare tokens and logits with the source (refused beyond `PARITY_LIMITS`
    unless `force`).
    """
    from tuneforge.export.exporter import AccuracyGateError

    start = time.perf_counter()
    quantize = quantize or DEFAULT_GGUF_TYPE
    if quantize not in GGUF_TYPES:
        raise ConfigError(
            f"--quantize for GGUF must be one of {', '.join(GGUF_TYPES)} (got {quantize!r})."
        )
    lm, tokenizer, name = chat_lm(model, "gguf")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp-{os.getpid()}.gguf")  # transformers wants .gguf
    try:
        pre = write_gguf(lm, tokenizer, tmp, quantize, name=name)
        parity = gguf_parity(lm, tokenizer, tmp, quantize) if check else {}
        if parity and not parity["passed"] and not force:
            finer = {"q8_0": "--quantize f16 or f32, or ", "f16": "--quantize f32, or "}
            raise AccuracyGateError(
                f"The GGUF ({quantize}) does not match the model: {parity_line(parity)}. Nothing "
                f"was written. Export with {finer.get(quantize, '')}--force to write it anyway."
            )
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    size = round(out.stat().st_size / 2**20, 2)
    return ChatExportReport(
        str(out), "gguf", quantize, size, round(time.perf_counter() - start, 1), pre, parity
    )


def chat_lm(model, fmt: str):
    """(the merged HF causal LM, its tokenizer, a name) of a chat artifact; a ConfigError for
    any other kind of model."""
    from tuneforge.tasks.chat import CausalLM
    from tuneforge.tuned_model import TunedModel

    source = model if isinstance(model, TunedModel) else TunedModel.load(model)
    found = getattr(source.runtime, "classifier", None)
    if source.config.task != "chat" or not isinstance(found, CausalLM):
        raise ConfigError(
            f"--format {fmt} is for chat models (causal LMs trained with --task chat); this one "
            f"is a {source.config.task} model on the {source.config.runtime} runtime. Export it "
            "with --format onnx."
        )
    lm = found.hf_model.eval()
    arch = type(lm).__name__
    if fmt == "gguf" and arch not in SUPPORTED_ARCHITECTURES:
        raise ConfigError(
            f"GGUF export supports {', '.join(SUPPORTED_ARCHITECTURES)}; this model is {arch} "
            f"(base {source.config.base}). Export it with --format hf and convert that directory "
            "with llama.cpp's convert_hf_to_gguf.py."
        )
    name = Path(source.path).name if source.path is not None else source.config.base
    return lm, source.tokenizer, name


# ---- writing ------------------------------------------------------------------------------------
def write_gguf(lm, tokenizer, path: Path, quantize: str, name: str = "") -> str:
    """Write the GGUF file for a LlamaForCausalLM and its tokenizer; returns the pre-tokenizer
    name recorded for llama.cpp."""
    import gguf

    config = lm.config
    _check_llama_config(config)
    writer = gguf.GGUFWriter(path, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    try:
        _add_hparams(writer, config, quantize, name)
        pre = _add_tokenizer(writer, tokenizer, config.vocab_size)
        for gguf_name, data, raw_type in _tensors(lm, quantize):
            writer.add_tensor(gguf_name, data, raw_dtype=raw_type)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    return pre


def _rope_theta(config) -> float:
    params = getattr(config, "rope_parameters", None) or {}
    return float(params.get("rope_theta") or getattr(config, "rope_theta", None) or 10000.0)


def _check_llama_config(config) -> None:
    params = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    rope_type = params.get("rope_type") or params.get("type") or "default"
    if rope_type != "default":
        raise ConfigError(
            f"This model uses '{rope_type}' rope scaling, which the GGUF export does not write "
            "yet (plain rope only). Export it with --format hf and use llama.cpp's converter."
        )
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        raise ConfigError(
            "This Llama has attention or MLP biases, which the GGUF export does not write. "
            "Export it with --format hf and use llama.cpp's converter."
        )


def _head_dim(config) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def _add_hparams(writer, config, quantize: str, name: str) -> None:
    import gguf

    file_types = {
        "f32": gguf.LlamaFileType.ALL_F32,
        "f16": gguf.LlamaFileType.MOSTLY_F16,
        "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    }
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(name or "tuneforge chat model")
    writer.add_description("Fine-tuned with tuneforge (LoRA merged); exported by tuneforge.")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads or config.num_attention_heads)
    writer.add_rope_freq_base(_rope_theta(config))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    head_dim = _head_dim(config)
    writer.add_rope_dimension_count(head_dim)
    if head_dim != config.hidden_size // config.num_attention_heads:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    writer.add_file_type(file_types[quantize])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _tensors(lm, quantize: str):
    """(gguf name, numpy data, raw ggml type or None) for every weight, llama.cpp's layout."""
    import gguf
    import torch

    config = lm.config
    names = gguf.TensorNameMap(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    tied = bool(getattr(config, "tie_word_embeddings", False))
    for hf_name, tensor in lm.state_dict().items():
        if tied and hf_name == "lm_head.weight":
            continue  # no output.weight: llama.cpp (and transformers) reuse token_embd
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise ConfigError(f"The GGUF llama tensor map has no name for '{hf_name}'.")
        with torch.no_grad():
            data = tensor.detach().to(torch.float32).cpu().numpy()
        if hf_name.endswith("self_attn.q_proj.weight"):
            data = _permute(data, heads, heads)
        elif hf_name.endswith("self_attn.k_proj.weight"):
            data = _permute(data, heads, kv_heads)
        yield (gguf_name, *_encode(data, quantize))


def _permute(weights: np.ndarray, n_head: int, n_head_kv: int | None) -> np.ndarray:
    """HF's rotary layout (two halves per head) to llama.cpp's (interleaved pairs), as in
    convert_hf_to_gguf.py's LlamaModel.permute; K has n_head_kv heads under GQA."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    rows = weights.shape[0]
    return (
        weights.reshape(n_head, 2, rows // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def _encode(data: np.ndarray, quantize: str):
    import gguf

    if data.ndim < 2 or quantize == "f32":
        return np.ascontiguousarray(data, dtype=np.float32), None
    block = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_0][0]
    if quantize == "q8_0" and data.shape[-1] % block == 0:
        q8 = gguf.GGMLQuantizationType.Q8_0
        return gguf.quants.quantize(np.ascontiguousarray(data), q8), q8
    return np.ascontiguousarray(data, dtype=np.float16), None  # f16 (or a row q8_0 cannot cut)


# ---- tokenizer ----------------------------------------------------------------------------------
def _add_tokenizer(writer, tokenizer, vocab_size: int) -> str:
    """The tokenizer as llama.cpp's `gpt2` BPE; returns the pre-tokenizer name written."""
    import gguf

    spec = json.loads(tokenizer.backend_tokenizer.to_str()) if tokenizer.is_fast else {}
    model = spec.get("model") or {}
    if model.get("type") != "BPE" or not _is_byte_level(spec):
        raise ConfigError(
            "GGUF export writes byte-level BPE tokenizers (GPT-2 style, as SmolLM and Llama 3 "
            f"use); this one is {model.get('type') or type(tokenizer).__name__}."
        )
    vocab = tokenizer.get_vocab()
    if max(vocab.values()) >= vocab_size:
        raise ConfigError(
            f"The tokenizer has ids up to {max(vocab.values())} but the model only "
            f"{vocab_size} embeddings; resize the embeddings before exporting."
        )
    by_id = {i: t for t, i in vocab.items()}
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for i in range(vocab_size):
        token = by_id.get(i)
        if token is None:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif i in added:
            tokens.append(token)
            types.append(
                gguf.TokenType.CONTROL if added[i].special else gguf.TokenType.USER_DEFINED
            )
        else:
            tokens.append(token)
            types.append(gguf.TokenType.NORMAL)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    pre = _pre_tokenizer_name(spec.get("pre_tokenizer"))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for kind in ("bos", "eos", "unk", "pad"):
        token_id = getattr(tokenizer, f"{kind}_token_id", None)
        if token_id is not None:
            getattr(writer, f"add_{kind}_token_id")(token_id)
    probe = tokenizer.encode("a", add_special_tokens=True)
    bare = tokenizer.encode("a", add_special_tokens=False)
    writer.add_add_bos_token(len(probe) > len(bare) and probe[0] == tokenizer.bos_token_id)
    writer.add_add_eos_token(len(probe) > len(bare) and probe[-1] == tokenizer.eos_token_id)
    writer.add_add_space_prefix(False)
    if getattr(tokenizer, "chat_template", None):
        writer.add_chat_template(tokenizer.chat_template)
    return pre


def _is_byte_level(spec: dict) -> bool:
    return "ByteLevel" in json.dumps(spec.get("pre_tokenizer")) and "ByteLevel" in json.dumps(
        spec.get("decoder")
    )


def _pre_tokenizer_name(pre: dict | None) -> str:
    """llama.cpp's name for how text is split before BPE (`tokenizer.ggml.pre`)."""
    steps = (pre or {}).get("pretokenizers") if (pre or {}).get("type") == "Sequence" else [pre]
    kinds = [(s or {}).get("type") for s in steps or []]
    byte_level = next((s for s in steps or [] if (s or {}).get("type") == "ByteLevel"), {})
    if kinds == ["ByteLevel"] and byte_level.get("use_regex", True):
        return "gpt-2"  # GPT-2's split regex (what the smollm2 base's tokenizer does)
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits"):
        return "smollm"  # SmolLM's original tokenizer.json: digits one by one, then GPT-2's
    if kinds == ["Split", "ByteLevel"] and "\\p{N}{1,3}" in json.dumps(steps[0]):
        return "llama-bpe"  # Llama 3's split regex
    log.warning(
        "Unrecognized pre-tokenizer %s: writing 'default'; llama.cpp may split some text "
        "differently from transformers.",
        kinds,
    )
    return "default"


# ---- the check ----------------------------------------------------------------------------------
def gguf_parity(lm, tokenizer, path: Path, quantize: str) -> dict:
    """Load `path` back with transformers and compare it with (lm, tokenizer)."""
    from tuneforge.models.registry import quiet_hf
    from tuneforge.models.smollm2 import load_gguf

    quiet_hf()
    loaded, loaded_tok = load_gguf(path)
    return compare_models(lm, tokenizer, loaded.eval(), loaded_tok, PARITY_LIMITS[quantize])


def compare_models(lm, tokenizer, other, other_tokenizer, limits: tuple[float, float]) -> dict:
    """Token ids, chat template and the logits at every position of fixed prompts, of a model
    and its exported copy; `passed` within `limits` (relative logit diff, argmax agreement)."""
    import torch

    from tuneforge.generation.generate import encode_prompt

    prompts: list = list(CHECK_TEXTS)
    if getattr(tokenizer, "chat_template", None):
        prompts += [[{"role": "user", "content": c}] for c in CHECK_CHATS]
    else:
        prompts += list(CHECK_CHATS)
    mismatched = []
    worst, scale, same, positions = 0.0, 0.0, 0, 0
    for prompt in prompts:
        ids = encode_prompt(tokenizer, prompt)
        if encode_prompt(other_tokenizer, prompt) != ids:
            mismatched.append(prompt if isinstance(prompt, str) else prompt[-1]["content"])
        input_ids = torch.tensor([ids])
        with torch.no_grad():
            a = lm(input_ids=input_ids).logits[0].float()
            b = other(input_ids=input_ids).logits[0].float()
        worst = max(worst, float((a - b).abs().max()))
        scale = max(scale, float(a.abs().max()))
        same += int((a.argmax(-1) == b.argmax(-1)).sum())
        positions += len(ids)
    max_rel, min_agree = limits
    relative = worst / max(scale, 1e-12)
    agreement = same / positions
    template_same = getattr(other_tokenizer, "chat_template", None) == getattr(
        tokenizer, "chat_template", None
    )
    return {
        "prompts": len(prompts),
        "positions": positions,
        "max_abs_logit_diff": round(worst, 6),
        "max_abs_logit": round(scale, 4),
        "relative_logit_diff": round(relative, 6),
        "argmax_agreement": round(agreement, 5),
        "tokenizer_ids_match": not mismatched,
        "tokenizer_mismatches": mismatched,
        "chat_template_match": template_same,
        "limits": {"relative_logit_diff": max_rel, "argmax_agreement": min_agree},
        "passed": (
            relative <= max_rel and agreement >= min_agree and not mismatched and template_same
        ),
    }


def parity_line(parity: dict) -> str:
    limits = parity["limits"]
    line = (
        f"max |Δlogit| {parity['max_abs_logit_diff']:.2g} "
        f"({parity['relative_logit_diff']:.2g} of the largest logit; allowed "
        f"{limits['relative_logit_diff']:g}), argmax agreement {parity['argmax_agreement']:.4f} "
        f"(required {limits['argmax_agreement']:g}) over {parity['positions']} positions of "
        f"{parity['prompts']} prompts"
    )
    if not parity["tokenizer_ids_match"]:
        line += f"; the tokenizer splits differently: {parity['tokenizer_mismatches']}"
    if not parity["chat_template_match"]:
        line += "; the chat template differs"
    return line
