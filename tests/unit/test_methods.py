"""One table for every method: it trains, and save/load gives identical predictions."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import tuneforge
from tuneforge.methods import METHODS

CASES = {
    "head": ("head", {}),
    "head-mlp": ("head", {"classifier": "mlp", "hidden": 32}),
    "full": ("full", {}),
    "lora": ("lora", {"r": 4, "alpha": 8}),
    "ia3": ("lora", {"variant": "ia3"}),
    "partial": ("partial", {"top_layers": 1}),
    "fewshot": ("fewshot", {"classes_per_batch": 3, "per_class": 4, "top_layers": 1}),
    "prompt": ("prompt", {"num_virtual_tokens": 4}),
    "p-tuning": ("prompt", {"variant": "p_tuning", "num_virtual_tokens": 4}),
}
FAST = dict(epochs=6, batch_size=8, early_stopping=0, progress=False)


def train(tiny_bert, tiny_data, method, options, out=None, **extra):
    lr = {"head": 1e-2, "lora": 1e-2, "partial": 3e-3, "full": 3e-3}.get(method)
    lr = lr or {"fewshot": 3e-3, "prompt": 3e-2}[method]
    kw = {**FAST, "lr": lr, **extra}
    return tuneforge.tune(
        tiny_data["train"],
        tiny_data["test"],
        base=str(tiny_bert),
        method=method,
        method_options=options,
        out=out,
        **kw,
    )


@pytest.mark.parametrize("case", CASES)
def test_method_trains_and_round_trips(case, tiny_bert, tiny_data, tmp_path):
    method, options = CASES[case]
    model = train(tiny_bert, tiny_data, method, options, out=tmp_path / "m")
    assert model.metrics["eval"]["accuracy"] > 0.6, model.metrics["eval"]
    losses = [r["loss"] for r in model.log if "loss" in r]
    if losses:  # gradient-trained methods: the loss falls
        assert np.mean(losses[-5:]) < np.mean(losses[:5])
    loaded = tuneforge.TunedModel.load(tmp_path / "m")
    texts = ["my card has not arrived", "refund my money please", "send a bank transfer"]
    np.testing.assert_allclose(loaded.predict_proba(texts), model.predict_proba(texts), atol=1e-5)
    assert loaded.config.method == method
    assert (tmp_path / "m" / "README.md").read_text().count(method) >= 1


def test_every_registered_method_is_in_the_table():
    assert {m for m, _ in CASES.values()} >= set(METHODS) - {"zeroshot"}


def test_lora_is_merged_into_plain_weights(tiny_bert, tiny_data, tmp_path):
    model = train(tiny_bert, tiny_data, "lora", {"r": 4}, out=tmp_path / "m", epochs=1)
    names = [n for n, _ in model.runtime.classifier.encoder.named_parameters()]
    assert not any("lora" in n for n in names)
    assert type(model.runtime.classifier.encoder).__name__ == "BertModel"


def test_multi_label_trains_with_sigmoid_head(tiny_bert, tmp_path):
    import sys

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parents[1]))
    from conftest import make_texts, write_csv

    rows = [(t, lab if i % 3 else f"{lab}|urgent") for i, (t, lab) in enumerate(make_texts(40))]
    path = write_csv(tmp_path / "ml.csv", rows)
    model = tuneforge.tune(path, base=str(tiny_bert), method="full", lr=3e-3, **FAST)
    assert model.config.multi_label
    assert "urgent" in model.labels
    pred = model.predict(["card arrived post"])[0]
    assert isinstance(pred.label, list)


def test_partial_caches_lower_layers(tiny_bert, tiny_data, monkeypatch):
    """Lower layers run once per text (during caching), never during the epochs."""
    from tuneforge.methods import partial

    calls = {"n": 0}
    original = partial.lower_states

    def counting(*args, **kw):
        calls["n"] += 1
        return original(*args, **kw)

    monkeypatch.setattr(partial, "lower_states", counting)
    train(tiny_bert, tiny_data, "partial", {"top_layers": 1}, epochs=3)
    assert calls["n"] == 2  # train and validation, once each, whatever the epoch count


@pytest.mark.parametrize("arch", ["bert", "mpnet"])
def test_top_layers_on_cached_states_match_the_full_encoder(arch):
    """What `partial` and `fewshot` train is what inference runs, MPNet's relative position
    bias included (without it the top layers trained on states inference never produces)."""
    import torch
    from transformers import BertConfig, BertModel, MPNetConfig, MPNetModel

    from tuneforge.methods.partial import TopLayers, encoder_layers
    from tuneforge.models.classifier import Pooler

    torch.manual_seed(0)
    size = dict(vocab_size=50, hidden_size=32, num_hidden_layers=3, num_attention_heads=2)
    size.update(intermediate_size=64, max_position_embeddings=66)
    encoder = BertModel(BertConfig(**size)) if arch == "bert" else MPNetModel(MPNetConfig(**size))
    encoder.eval()
    ids = torch.randint(5, 50, (3, 12))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    pooler = Pooler("mean", normalize=True)
    with torch.no_grad():
        out = encoder(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        trained = encoder_layers(encoder)[1:]
        shell = SimpleNamespace(encoder=encoder, head=torch.nn.Identity(), readout=None)
        top = TopLayers(shell, trained, readout=pooler)
        cached = top(out.hidden_states[1], mask)
    torch.testing.assert_close(cached, pooler(out.last_hidden_state, mask))
    # the frozen encoder is not a submodule: an optimizer over top.parameters() moves no more
    assert {id(p) for p in top.parameters()} == {id(p) for p in trained.parameters()}
