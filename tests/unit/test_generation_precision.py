"""Generation in bf16 / int8: cached copies of the decoder, the fp32 model left as it was."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from chat_fakes import chatml_tokenizer, tiny_llama
from tuneforge.errors import ConfigError
from tuneforge.generation import GenerationOptions, generate
from tuneforge.generation import precision as prec


@pytest.fixture(scope="module")
def tok():
    return chatml_tokenizer()


@pytest.fixture()
def lm(tok):
    return tiny_llama(tok)


PROMPT = [{"role": "user", "content": "What is the capital of France?"}]


def test_int8_quantizes_all_but_the_outlier_readers_and_leaves_fp32_alone(lm, tok):
    before = {n: p.clone() for n, p in lm.state_dict().items()}
    q = prec.for_generation(lm, "int8")
    assert q is not lm and prec.for_generation(lm, "int8") is q  # made once, then cached
    from torch.ao.nn.quantized.dynamic import Linear as Int8Linear

    quantized = {n for n, m in q.named_modules() if isinstance(m, Int8Linear)}
    assert quantized and not any(n.endswith("down_proj") for n in quantized)
    assert any(n.endswith("up_proj") for n in quantized) and "lm_head" not in quantized
    out = generate(lm, tok, PROMPT, GenerationOptions(max_new_tokens=5, precision="int8"))[0]
    assert out.tokens >= 1 and out.finish_reason in ("stop", "length")
    assert all(torch.equal(p, before[n]) for n, p in lm.state_dict().items())
    assert all(isinstance(m, nn.Linear) for n, m in lm.named_modules() if n.endswith("proj"))


def test_bf16_runs_in_bf16_where_the_cpu_can_and_is_refused_where_not(lm, tok, monkeypatch):
    if prec.bf16_supported():
        copy = prec.for_generation(lm, "bf16")
        assert next(copy.parameters()).dtype == torch.bfloat16
        assert next(lm.parameters()).dtype == torch.float32
        opts = GenerationOptions(max_new_tokens=4, precision="bf16")
        assert generate(lm, tok, [PROMPT, PROMPT], opts, batch_size=2)[0].tokens >= 1
    monkeypatch.setattr(prec, "bf16_supported", lambda: False)
    other = tiny_llama(tok, seed=1)
    with pytest.raises(ConfigError, match="no bf16 matrix instructions"):
        generate(other, tok, PROMPT, GenerationOptions(max_new_tokens=2, precision="bf16"))


def test_fp32_is_the_model_itself_and_unknown_precisions_are_refused(lm):
    assert prec.for_generation(lm, "fp32") is lm
    with pytest.raises(ConfigError, match=r"precision.*fp32.*bf16.*int8"):
        GenerationOptions.build(precision="fp8")
