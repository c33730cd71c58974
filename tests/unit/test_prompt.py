"""prompt: PEFT soft prompts train, merge exactly into vocabulary rows, and round-trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tuneforge

FAST = dict(epochs=6, batch_size=8, early_stopping=0, progress=False)


@pytest.mark.parametrize("variant", ["prompt_tuning", "p_tuning"])
def test_prompt_trains_merges_and_round_trips(variant, tiny_bert, tiny_data, tmp_path):
    model = tuneforge.tune(
        tiny_data["train"],
        tiny_data["test"],
        base=str(tiny_bert),
        method="prompt",
        lr=3e-2,
        method_options={"variant": variant, "num_virtual_tokens": 4},
        out=tmp_path / "m",
        **FAST,
    )
    losses = [r["loss"] for r in model.log if "loss" in r]
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    assert model.metrics["eval"]["accuracy"] > 0.5, model.metrics["eval"]
    assert model.config.text_prefix.startswith("<tf_prompt_0><tf_prompt_1>")
    loaded = tuneforge.TunedModel.load(tmp_path / "m")
    assert type(loaded.runtime.classifier.encoder).__name__ == "BertModel"
    texts = ["card arrived post", "refund money back", "send bank transfer"]
    np.testing.assert_allclose(loaded.predict_proba(texts), model.predict_proba(texts), atol=1e-5)


def test_only_the_prompt_and_head_change(tiny_bert, tiny_data, tmp_path):
    from transformers import AutoModel

    model = tuneforge.tune(
        tiny_data["train"],
        base=str(tiny_bert),
        method="prompt",
        lr=3e-2,
        method_options={"num_virtual_tokens": 2},
        **{**FAST, "epochs": 1},
    )
    original = AutoModel.from_pretrained(str(tiny_bert)).state_dict()
    tuned = model.runtime.classifier.encoder.state_dict()
    prompt_ids = model.tokenizer.convert_tokens_to_ids(["<tf_prompt_0>", "<tf_prompt_1>"])
    for name, weight in original.items():
        if name == "embeddings.word_embeddings.weight":
            keep = [i for i in range(weight.shape[0]) if i not in prompt_ids]
            assert torch.equal(tuned[name][keep], weight[keep])
            assert not torch.equal(tuned[name][prompt_ids], weight[prompt_ids])
        else:
            assert torch.equal(tuned[name], weight), name
