"""Base pairs (`--base A+B`): one tokenizer for two encoders, embeddings side by side, and the
artifact, export and explanations that come with them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tuneforge
from tuneforge.errors import ConfigError, ModelNotFoundError
from tuneforge.models.classifier import Pooler
from tuneforge.models.pair import EncoderPair, check_same_tokenization, vocab_bridge
from tuneforge.models.registry import resolve_base

FAST = dict(epochs=2, batch_size=8, early_stopping=0, progress=False, lr=3e-3)
FEWSHOT = {"classes_per_batch": 3, "per_class": 4, "top_layers": 1, "min_steps": 4}
TEXTS = ["my card has not arrived", "refund my money please", "send a sepa transfer", "zzz"]


def tokenizers(*paths):
    from transformers import AutoTokenizer

    return [AutoTokenizer.from_pretrained(str(p)) for p in paths]


def test_the_bridge_gives_the_member_its_own_token_ids(tiny_mpnet, tiny_bert):
    mpnet, bert = tokenizers(tiny_mpnet, tiny_bert)
    bridge = vocab_bridge(mpnet, bert)
    for text in [*TEXTS, "", "i want a refund, why not?"]:
        assert bridge[mpnet(text)["input_ids"]].tolist() == bert(text)["input_ids"]
    # special tokens by role, whatever their spelling: <s> is [CLS], <pad> is [PAD]
    assert bridge[mpnet.cls_token_id] == bert.cls_token_id
    assert bridge[mpnet.pad_token_id] == bert.pad_token_id
    check_same_tokenization(mpnet, bert, bridge, TEXTS, ["a", "b"])  # no error


def test_encoders_that_split_text_differently_cannot_be_paired(tiny_bert, tmp_path):
    from transformers import BertTokenizerFast

    letters = [*"abcdefghijklmnopqrstuvwxyz"]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *letters, *(f"##{c}" for c in letters)]
    BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}).save_pretrained(tmp_path)
    words, chars = tokenizers(tiny_bert, tmp_path)
    bridge = vocab_bridge(words, chars)
    with pytest.raises(ConfigError, match=r"split text into different tokens.*mpnet\+minilm"):
        check_same_tokenization(words, chars, bridge, TEXTS, ["words", "chars"])


def test_the_pair_is_its_members_side_by_side(tiny_mpnet, tiny_bert):
    from transformers import AutoModel

    mpnet_tok, bert_tok = tokenizers(tiny_mpnet, tiny_bert)
    first, second = (AutoModel.from_pretrained(str(p)).eval() for p in (tiny_mpnet, tiny_bert))
    pair = EncoderPair([first, second], [vocab_bridge(mpnet_tok, bert_tok)], ["m", "b"]).eval()
    assert pair.config.hidden_size == 48 + 32
    a = mpnet_tok(TEXTS, padding=True, return_tensors="pt")
    b = bert_tok(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        joint = pair(**a).last_hidden_state
        torch.testing.assert_close(joint[..., :48], first(**a).last_hidden_state)
        torch.testing.assert_close(joint[..., 48:], second(**b).last_hidden_state)
    pooled = Pooler("mean", normalize=True, segments=[48, 32])(joint, a["attention_mask"])
    norms = [pooled[:, :48].norm(dim=1), pooled[:, 48:].norm(dim=1), pooled.norm(dim=1)]
    for norm, expected in zip(norms, [0.5**0.5, 0.5**0.5, 1.0], strict=True):
        torch.testing.assert_close(norm, torch.full_like(norm, expected))


def test_fewshot_on_a_pair_saves_loads_exports_and_explains(
    tiny_mpnet, tiny_bert, tiny_data, tmp_path
):
    from tuneforge.evaluation.explain import explain
    from tuneforge.export import export_model

    base = f"{tiny_mpnet}+{tiny_bert}"
    model = tuneforge.tune(
        tiny_data["train"], tiny_data["test"], base=base, method="fewshot",
        method_options=FEWSHOT, out=tmp_path / "m", **FAST,
    )  # fmt: skip
    assert model.config.base == base
    assert model.embed(TEXTS).shape == (4, 80)
    assert (tmp_path / "m" / "encoder" / "member_1" / "config.json").exists()
    loaded = tuneforge.TunedModel.load(tmp_path / "m")
    np.testing.assert_allclose(loaded.logits(TEXTS), model.logits(TEXTS), atol=1e-5)
    assert model.metrics["eval"]["accuracy"] > 0.6  # learnable keywords: far above 1/3 chance
    assert explain(loaded, "refund my money").method == "occlusion"
    export_model(tmp_path / "m", tmp_path / "onnx", val=tiny_data["test"])
    exported = tuneforge.TunedModel.load(tmp_path / "onnx")
    np.testing.assert_allclose(exported.logits(TEXTS), model.logits(TEXTS), atol=1e-4)
    with pytest.raises(ConfigError, match="pair"):
        export_model(tmp_path / "m", tmp_path / "p", prune_layers=1, distil_data="x", val="x")


def test_fewshot_tunes_the_first_member_as_on_its_own_and_the_second_with_tune_both(
    tiny_mpnet, tiny_bert, tiny_data
):
    """By default the pair's second half is its base untouched; with tune_both it is the
    member tuned alone (same steps, seeds and data), as the first half always is."""
    from transformers import AutoModel

    def encoders(base, **options):
        model = tuneforge.tune(
            tiny_data["train"], base=base, method="fewshot",
            method_options={**FEWSHOT, **options}, **FAST,
        )  # fmt: skip
        encoder = model.runtime.classifier.encoder
        parts = encoder.encoders if isinstance(encoder, EncoderPair) else [encoder]
        return [e.state_dict() for e in parts], model.config.method_details

    pair = f"{tiny_mpnet}+{tiny_bert}"
    (first, second), details = encoders(pair)
    torch.testing.assert_close(first, encoders(str(tiny_mpnet))[0][0])
    torch.testing.assert_close(second, AutoModel.from_pretrained(str(tiny_bert)).state_dict())
    assert details["tuned_members"] == [resolve_base(str(tiny_mpnet)).name]
    (first_too, second_tuned), details = encoders(pair, tune_both=True)
    torch.testing.assert_close(first_too, first)
    torch.testing.assert_close(second_tuned, encoders(str(tiny_bert))[0][0])
    assert len(details["tuned_members"]) == 2


def test_head_and_zeroshot_work_on_a_pair(tiny_mpnet, tiny_bert, tiny_data):
    base = f"{tiny_mpnet}+{tiny_bert}"
    head = tuneforge.tune(tiny_data["train"], base=base, method="head", **FAST)
    assert head.embed(TEXTS).shape == (4, 80)
    zero = tuneforge.tune(None, base=base, labels="card,refund,transfer", progress=False)
    assert {p.label for p in zero.predict(TEXTS)} <= {"card", "refund", "transfer"}


def test_methods_of_one_encoder_refuse_a_pair_and_auto_falls_back(tiny_mpnet, tiny_bert, tiny_data):
    base = f"{tiny_mpnet}+{tiny_bert}"
    with pytest.raises(ConfigError, match=r"Method 'lora'.*--method fewshot or head or zeroshot"):
        tuneforge.tune(tiny_data["train"], base=base, method="lora", **FAST)
    from conftest import make_texts, write_csv

    many = write_csv(tiny_data["train"].parent / "many.csv", make_texts(40))  # 40 per class
    model = tuneforge.tune(many, base=base, method="auto", **FAST)
    assert model.config.method == "head"
    assert "is a pair" in model.config.method_reason


def test_pair_names_are_checked(tiny_mpnet, tiny_bert):
    pair = resolve_base(f"{tiny_mpnet}+{tiny_bert}")
    assert [m.path for m in pair.members()] == [tiny_mpnet.resolve(), tiny_bert.resolve()]
    assert pair.max_length == min(m.max_length for m in pair.members())
    alone = [resolve_base(str(tiny_mpnet)).name, resolve_base(str(tiny_bert)).name]
    assert [m.name for m in pair.members()] == alone  # not the pair's joined name
    from tuneforge.methods.auto import model_scale

    first, second = pair.members()
    assert model_scale(pair) == pytest.approx(model_scale(first) + model_scale(second))
    with pytest.raises(ModelNotFoundError, match="two base models joined by"):
        resolve_base(f"{tiny_bert}+{tiny_bert}+{tiny_bert}")
    with pytest.raises(ModelNotFoundError, match="Unknown base model 'nope'"):
        resolve_base(f"{tiny_bert}+nope")
