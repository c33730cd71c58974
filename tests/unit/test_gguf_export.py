"""GGUF / HF export of a chat model: a tiny random Llama artifact goes to a .gguf file that
transformers loads back with the same tokens and logits; the file carries llama.cpp's metadata;
bad inputs and a failed check write nothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tuneforge
from chat_fakes import tiny_chat_run
from tuneforge.errors import ConfigError
from tuneforge.export import gguf_export
from tuneforge.export.exporter import AccuracyGateError
from tuneforge.export.gguf_export import export_gguf
from tuneforge.export.hf_export import export_hf

CHATS = [("What is the capital of France?", "Paris."), ("Translate hello into French.", "Bonjour.")]
TEXTS = ["What is the capital of Italy? Rome.", "Café 2024 🚀\n\tend", "<|im_start|>user\nhi"]
# float32 is the same numbers: only the order of the additions may differ
F32_ATOL = 1e-5


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A 1-epoch chat run on a tiny random Llama (untied lm_head; GQA: 4 heads, 2 kv)."""
    return tiny_chat_run(tmp_path_factory.mktemp("gguf"), CHATS * 2)


@pytest.fixture(scope="module")
def source(run_dir):
    model = tuneforge.TunedModel.load(run_dir)
    return model.runtime.classifier.hf_model.eval(), model.tokenizer


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    return {
        q: export_gguf(run_dir, out / f"m-{q}.gguf", quantize=q) for q in ("f32", "f16", "q8_0")
    }


def load_back(path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    lm = AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32
    )
    return lm.eval(), AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


def logits(lm, tok, text):
    ids = torch.tensor([tok.encode(text)])
    with torch.no_grad():
        return lm(input_ids=ids).logits[0].numpy()


def test_f32_round_trips_the_logits_and_the_tokenizer(exported, source):
    from pathlib import Path

    lm, tok = source
    report = exported["f32"]
    assert report.parity["passed"] and report.parity["tokenizer_ids_match"]
    assert report.parity["max_abs_logit_diff"] <= F32_ATOL
    back, back_tok = load_back(Path(report.path))
    chat = tok.apply_chat_template(
        [{"role": "user", "content": CHATS[0][0]}], add_generation_prompt=True, tokenize=False
    )
    for text in [*TEXTS, chat]:
        ids = tok.encode(text)
        assert back_tok.encode(text) == ids, text
        assert back_tok.decode(ids) == tok.decode(ids)
        np.testing.assert_allclose(
            logits(back, back_tok, text), logits(lm, tok, text), atol=F32_ATOL
        )
    assert back_tok.chat_template == tok.chat_template
    assert back_tok.eos_token == "<|im_end|>"


def test_f16_and_q8_0_are_smaller_and_close(exported, source):
    from pathlib import Path

    lm, tok = source
    sizes = {q: Path(r.path).stat().st_size for q, r in exported.items()}
    assert sizes["q8_0"] < sizes["f16"] < 0.6 * sizes["f32"]
    for quantize, rel_tol in (("f16", 2e-3), ("q8_0", 3e-2)):
        back, back_tok = load_back(Path(exported[quantize].path))
        for text in TEXTS:
            ours, theirs = logits(lm, tok, text), logits(back, back_tok, text)
            scale = np.abs(ours).max()
            assert np.abs(ours - theirs).max() <= rel_tol * scale, (quantize, text)
        assert exported[quantize].parity["argmax_agreement"] >= 0.95


def test_the_file_carries_llama_cpp_metadata(exported, source):
    from gguf import GGUFReader

    lm, tok = source
    reader = GGUFReader(exported["f16"].path)
    field = {k: f.contents() for k, f in reader.fields.items()}
    config = lm.config
    assert field["general.architecture"] == "llama"
    assert field["llama.context_length"] == config.max_position_embeddings
    assert field["llama.embedding_length"] == config.hidden_size
    assert field["llama.block_count"] == config.num_hidden_layers
    assert field["llama.feed_forward_length"] == config.intermediate_size
    assert field["llama.attention.head_count"] == 4
    assert field["llama.attention.head_count_kv"] == 2
    assert field["llama.rope.freq_base"] == pytest.approx(gguf_export._rope_theta(config))
    assert field["llama.attention.layer_norm_rms_epsilon"] == pytest.approx(config.rms_norm_eps)
    assert field["llama.vocab_size"] == config.vocab_size
    assert field["general.file_type"] == 1  # MOSTLY_F16
    assert field["tokenizer.ggml.model"] == "gpt2"
    assert field["tokenizer.ggml.pre"] == "gpt-2"
    assert len(field["tokenizer.ggml.tokens"]) == config.vocab_size
    assert field["tokenizer.ggml.tokens"][tok.eos_token_id] == "<|im_end|>"
    types = field["tokenizer.ggml.token_type"]
    assert types[tok.eos_token_id] == 3 and types[tok.convert_tokens_to_ids("Ġthe")] == 1
    assert field["tokenizer.ggml.merges"][0].count(" ") == 1
    assert field["tokenizer.ggml.eos_token_id"] == tok.eos_token_id
    assert field["tokenizer.ggml.bos_token_id"] == tok.bos_token_id
    assert field["tokenizer.ggml.padding_token_id"] == tok.pad_token_id
    assert field["tokenizer.ggml.add_bos_token"] is False
    assert field["tokenizer.chat_template"] == tok.chat_template
    names = {t.name: t for t in reader.tensors}
    assert "output.weight" in names  # the tiny Llama's lm_head is not tied
    assert names["blk.0.attn_norm.weight"].tensor_type.name == "F32"  # 1-D stays float32
    assert names["blk.0.attn_q.weight"].tensor_type.name == "F16"
    q8 = {t.name: t.tensor_type.name for t in GGUFReader(exported["q8_0"].path).tensors}
    assert q8["blk.1.ffn_down.weight"] == "Q8_0" and q8["token_embd.weight"] == "Q8_0"


def _rope_hf(x, pos, base):
    """transformers' rotary embedding: dimension i pairs with i + d/2."""
    half = x.shape[-1] // 2
    angle = pos * base ** (-np.arange(half) * 2 / x.shape[-1])
    cos, sin = np.cos(np.r_[angle, angle]), np.sin(np.r_[angle, angle])
    return x * cos + np.r_[-x[half:], x[:half]] * sin


def _rope_llama_cpp(x, pos, base):
    """llama.cpp's rope for the llama architecture (NORM): dimension 2i pairs with 2i + 1."""
    angle = pos * base ** (-np.arange(x.shape[-1] // 2) * 2 / x.shape[-1])
    even, odd = x[0::2], x[1::2]
    out = np.empty_like(x)
    out[0::2] = even * np.cos(angle) - odd * np.sin(angle)
    out[1::2] = even * np.sin(angle) + odd * np.cos(angle)
    return out


def test_the_q_k_permutation_keeps_llama_cpp_attention_scores(exported, source):
    """The file's Q/K, rotated the llama.cpp way, give the attention scores HF's give."""
    from gguf import GGUFReader

    lm, _ = source
    config = lm.config
    attn = lm.model.layers[0].self_attn
    wq, wk = attn.q_proj.weight.detach().numpy(), attn.k_proj.weight.detach().numpy()
    tensors = {t.name: t for t in GGUFReader(exported["f32"].path).tensors}
    fq = np.asarray(tensors["blk.0.attn_q.weight"].data).reshape(wq.shape)
    fk = np.asarray(tensors["blk.0.attn_k.weight"].data).reshape(wk.shape)
    assert not np.allclose(fq, wq)  # permuted, not copied
    d, base = gguf_export._head_dim(config), gguf_export._rope_theta(config)
    x, y = np.random.default_rng(0).normal(size=(2, config.hidden_size))
    group = config.num_attention_heads // config.num_key_value_heads
    for head in range(config.num_attention_heads):
        q, kv = slice(head * d, (head + 1) * d), slice(head // group * d, (head // group + 1) * d)
        hf = _rope_hf(wq[q] @ x, 7, base) @ _rope_hf(wk[kv] @ y, 3, base)
        cpp = _rope_llama_cpp(fq[q] @ x, 7, base) @ _rope_llama_cpp(fk[kv] @ y, 3, base)
        assert cpp == pytest.approx(hf, rel=1e-5)


def test_a_failed_check_writes_nothing_unless_forced(run_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(gguf_export.PARITY_LIMITS, "f16", (-1.0, 1.0))  # cannot be met
    with pytest.raises(AccuracyGateError, match="Nothing was written"):
        export_gguf(run_dir, tmp_path / "m.gguf", quantize="f16")
    assert list(tmp_path.iterdir()) == []  # no file, no temp file left behind
    forced = export_gguf(run_dir, tmp_path / "m.gguf", quantize="f16", force=True)
    assert not forced.parity["passed"] and (tmp_path / "m.gguf").stat().st_size > 0


def test_error_paths(run_dir, tiny_model_dir, tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    from tuneforge.tasks.chat import CausalLM

    with pytest.raises(ConfigError, match="for chat models"):
        export_gguf(tiny_model_dir, tmp_path / "x.gguf")
    with pytest.raises(ConfigError, match="f32, f16, q8_0"):
        export_gguf(run_dir, tmp_path / "x.gguf", quantize="int8")
    model = tuneforge.TunedModel.load(run_dir)
    gpt2 = GPT2LMHeadModel(
        GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=len(model.tokenizer))
    )
    model.runtime.classifier = CausalLM(gpt2)
    with pytest.raises(
        ConfigError, match="supports LlamaForCausalLM; this model is GPT2LMHeadModel"
    ):
        export_gguf(model, tmp_path / "x.gguf")
    scaled = tuneforge.TunedModel.load(run_dir)
    scaled.runtime.classifier.hf_model.config.rope_parameters = {
        "rope_type": "llama3",
        "factor": 8.0,
    }
    with pytest.raises(ConfigError, match="'llama3' rope scaling"):
        export_gguf(scaled, tmp_path / "x.gguf")
    assert not list(tmp_path.iterdir())


def test_hf_export_is_a_loadable_merged_directory(run_dir, source, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    lm, tok = source
    report = export_hf(run_dir, tmp_path / "hf")
    assert report.parity["passed"] and report.parity["max_abs_logit_diff"] <= F32_ATOL
    back = AutoModelForCausalLM.from_pretrained(str(tmp_path / "hf")).eval()
    back_tok = AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
    assert type(back).__name__ == "LlamaForCausalLM"
    assert back_tok.chat_template == tok.chat_template
    np.testing.assert_allclose(
        logits(back, back_tok, TEXTS[0]), logits(lm, tok, TEXTS[0]), atol=F32_ATOL
    )


def test_the_export_verb_writes_gguf_and_hf(run_dir, tmp_path):
    from typer.testing import CliRunner

    from tuneforge.cli.app import _register, app

    _register()
    runner = CliRunner()
    out = tmp_path / "support.gguf"
    found = runner.invoke(app, ["export", str(run_dir), "--format", "gguf", "--out", str(out),
                                "--quantize", "q8_0"])  # fmt: skip
    assert found.exit_code == 0, found.output
    assert "Check (gguf q8_0 reloaded)" in found.output and ": ok" in found.output
    assert out.is_file() and f"Wrote {out}" in found.output
    hf = runner.invoke(
        app, ["export", str(run_dir), "--format", "hf", "--out", str(tmp_path / "h")]
    )
    assert hf.exit_code == 0 and (tmp_path / "h" / "config.json").is_file(), hf.output
    wrong = runner.invoke(app, ["export", str(run_dir), "--format", "gguf", "--out",
                                str(tmp_path / "y.gguf"), "--val", "x.csv"])  # fmt: skip
    assert isinstance(wrong.exception, ConfigError) and "--val" in str(wrong.exception)
    assert not (tmp_path / "y.gguf").exists()
    onnx = runner.invoke(app, ["export", str(run_dir), "--out", str(tmp_path / "o"), "--skip-gate"])
    assert isinstance(onnx.exception, ConfigError) and "--format gguf" in str(onnx.exception)


def test_a_vocabulary_padded_past_the_tokenizer_round_trips(source, tmp_path):
    """Models often have more embeddings than tokens (Llama 3, Qwen): the extra ids are written
    as unused [PADn] tokens, and the tokenizer still splits text the same way."""
    import copy

    from gguf import GGUFReader

    lm, tok = source
    padded = copy.deepcopy(lm)
    padded.resize_token_embeddings(len(tok) + 5)
    path = tmp_path / "padded.gguf"
    gguf_export.write_gguf(padded, tok, path, "f32")
    field = {k: f.contents() for k, f in GGUFReader(path).fields.items()}
    assert field["tokenizer.ggml.tokens"][-1] == f"[PAD{len(tok) + 4}]"
    assert field["tokenizer.ggml.token_type"][-5:] == [5] * 5  # UNUSED
    parity = gguf_export.gguf_parity(padded, tok, path, "f32")
    assert parity["passed"] and parity["tokenizer_ids_match"], parity


@pytest.mark.parametrize(
    ("pre_tokenizer", "name"),
    [
        ({"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}, "gpt-2"),
        (
            {"type": "Sequence", "pretokenizers": [
                {"type": "Digits", "individual_digits": True},
                {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}]},
            "smollm",
        ),
        (
            {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": "(?i:'s|'t)|\\p{N}{1,3}| ?[^\\s]+"}},
                {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}]},
            "llama-bpe",
        ),
        ({"type": "Whitespace"}, "default"),
    ],
)  # fmt: skip
def test_the_pre_tokenizer_gets_llama_cpp_s_name(pre_tokenizer, name):
    assert gguf_export._pre_tokenizer_name(pre_tokenizer) == name
