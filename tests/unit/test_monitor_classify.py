"""The monitor's classifier runs the sentiment and topic heads on one encoder pass when the two
models share their encoder, with the same results as two passes."""

from __future__ import annotations

import numpy as np

import tuneforge
from tuneforge.apps.monitor.classify import Classifier
from tuneforge.apps.monitor.entities import EntityMatcher

TEXTS = ["my card has not arrived", "refund my money please", "send a bank transfer"] * 3


def test_one_encoder_pass_feeds_both_heads(tiny_bert, tiny_data, tiny_model_dir):
    head = dict(base=str(tiny_bert), method="head", progress=False)
    sentiment = tuneforge.tune(tiny_data["train"], **head)
    topics = tuneforge.tune(tiny_data["train"], **{**head, "method_options": {"C": [0.5]}})
    tuned = tuneforge.TunedModel.load(tiny_model_dir)  # `full`: its own encoder
    assert sentiment.shares_encoder_with(topics)
    assert not sentiment.shares_encoder_with(tuned)

    calls = []
    encoder = sentiment.runtime.classifier.encoder
    hook = encoder.register_forward_hook(lambda *a: calls.append(1))
    both = Classifier(sentiment, EntityMatcher([]), topics, ["card"], ["refund"], batch_size=64)
    try:
        shared = both.classify(TEXTS)
    finally:
        hook.remove()
    assert both.one_pass and len(calls) == 1  # one batch, one pass for both heads
    separate = Classifier(sentiment, EntityMatcher([]), topics, ["card"], ["refund"],
                          share_encoder=False).classify(TEXTS)  # fmt: skip
    assert [c.topic for c in shared] == [c.topic for c in separate]
    assert [c.label for c in shared] == [c.label for c in separate]
    np.testing.assert_allclose([c.p_pos for c in shared], [c.p_pos for c in separate], atol=1e-6)
    assert not Classifier(sentiment, EntityMatcher([]), tuned, ["card"], ["refund"]).one_pass
