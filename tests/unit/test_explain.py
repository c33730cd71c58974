"""Token attributions (integrated gradients and occlusion) and the faithfulness check."""

from __future__ import annotations

import json

import numpy as np
import pytest

import tuneforge
from tuneforge.evaluation.explain import explain, faithfulness, to_html, to_rich_text


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return tuneforge.TunedModel.load(tiny_model_dir)


class _NoGradRuntime:
    """A runtime like an exported one: outputs only, no torch module to differentiate."""

    def __init__(self, inner):
        self.inner = inner

    def forward(self, batch):
        return self.inner.forward(batch)


@pytest.mark.parametrize("method", ["integrated_gradients", "occlusion"])
def test_one_weight_per_token(model, method):
    text = "my card has not arrived in the post"
    exp = explain(model, text, method=method)
    words = model.tokenizer.tokenize(text)
    assert exp.tokens == words  # no [CLS]/[SEP], every word piece once
    assert len(exp.weights) == len(exp.tokens)
    assert all(np.isfinite(exp.weights))
    assert exp.label == model.predict(text)[0].label
    assert json.loads(json.dumps(exp.to_dict()))["method"] == method


def test_keywords_carry_the_prediction(model):
    exp = explain(model, "please help i want a refund of my money back")
    top = [tok for tok, _ in exp.top(3)]
    assert exp.label == "refund"
    assert set(top) & {"refund", "money", "back"}


def test_occlusion_used_without_gradients(model):
    import copy

    exported = copy.copy(model)
    exported.runtime = _NoGradRuntime(model.runtime)
    exp = explain(exported, "send the iban transfer")
    assert exp.method == "occlusion" and len(exp.weights) == 4
    with pytest.raises(tuneforge.errors.ConfigError, match="occlusion"):
        explain(exported, "x", method="integrated_gradients")


def test_faithfulness_runs_and_beats_random(model, tiny_data):
    import pandas as pd

    texts = pd.read_csv(tiny_data["test"])["text"].tolist()[:12]
    result = faithfulness(model, texts, k=2)
    assert result.n > 0 and result.k == 2
    assert 0.0 <= result.win_rate <= 1.0
    # the synthetic task is decided by keywords, so deleting the attributed ones must hurt more
    assert result.drop_top_k > result.drop_random
    assert result.to_dict()["passed"] is True


def test_rendering(model):
    exp = explain(model, "lost card pin")
    assert "lost" in to_rich_text(exp).plain
    html = to_html(exp)
    assert html.count('class="tok"') == 3 and "rgba(" in html
