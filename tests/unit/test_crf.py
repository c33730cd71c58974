"""The CRF of the token task: its loss is the exact negative log-likelihood, Viterbi finds the
best allowed path, BIO's forbidden transitions are never decoded, and a tagger trained with it
round-trips through save/load and ONNX with the same spans."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import tuneforge
from tuneforge.tasks.crf import TagTransitions, allowed, compact, may_start, viterbi

NAMES = ["O", "B-X", "I-X", "B-Y", "I-Y"]


def _path_score(crf, emissions, path, constrain_start=False):
    trans = crf.transitions.detach() + crf.penalty
    score = crf.start[path[0]].item() + emissions[0, path[0]].item()
    if constrain_start and not may_start(NAMES)[path[0]]:
        score -= 1e4
    for t, (a, b) in enumerate(itertools.pairwise(path), start=1):
        score += trans[a, b].item() + emissions[t, b].item()
    return score + crf.end[path[-1]].item()


@pytest.fixture
def crf():
    torch.manual_seed(0)
    layer = TagTransitions(NAMES)
    with torch.no_grad():
        for p in (layer.transitions, layer.start, layer.end):
            p.normal_()
    return layer


def test_bio_forbids_entering_a_span_from_outside_it():
    ok = allowed(NAMES)
    assert not ok[NAMES.index("O"), NAMES.index("I-X")]
    assert not ok[NAMES.index("B-Y"), NAMES.index("I-X")]
    assert ok[NAMES.index("B-X"), NAMES.index("I-X")] and ok[NAMES.index("I-X"), NAMES.index("I-X")]
    assert ok[NAMES.index("I-X"), NAMES.index("B-Y")] and ok[NAMES.index("O"), NAMES.index("B-X")]


def test_the_loss_is_the_exact_negative_log_likelihood(crf):
    emissions = torch.randn(2, 4, len(NAMES))
    tags = torch.tensor([[1, 2, 0, 3], [3, 4, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.bool)
    want = 0.0
    for row in range(2):
        n = int(mask[row].sum())
        em = emissions[row, :n]
        scores = [_path_score(crf, em, p) for p in itertools.product(range(len(NAMES)), repeat=n)]
        log_z = torch.logsumexp(torch.tensor(scores), 0).item()
        want += log_z - _path_score(crf, em, tags[row, :n].tolist())
    got = crf.nll(emissions, tags, mask).item()
    assert got == pytest.approx(want, rel=1e-4)
    loss = crf.nll(emissions, tags, mask)
    loss.backward()
    assert crf.transitions.grad.abs().sum() > 0


def test_viterbi_finds_the_best_allowed_path(crf):
    rng = np.random.default_rng(3)
    scores = crf.scores(NAMES)
    for _ in range(20):
        emissions = rng.normal(size=(4, len(NAMES))) * 3
        best = max(
            itertools.product(range(len(NAMES)), repeat=4),
            key=lambda p: _path_score(crf, torch.from_numpy(emissions), p, constrain_start=True),
        )
        path = viterbi(emissions, scores)
        assert path == list(best)
        tags = [NAMES[j] for j in path]
        assert not tags[0].startswith("I-")
        assert all(allowed(NAMES)[a, b] for a, b in itertools.pairwise(path))
    assert viterbi(np.zeros((0, len(NAMES))), scores) == []


def test_compact_moves_the_scored_positions_to_the_front():
    outputs = torch.arange(2 * 5 * 1, dtype=torch.float).reshape(2, 5, 1)
    target = torch.tensor([[-100, 1, -100, 2, -100], [-100, -100, -100, -100, -100]])
    emissions, tags, mask = compact(outputs, target, -100)
    assert emissions[0, :2, 0].tolist() == [1.0, 3.0] and tags[0, :2].tolist() == [1, 2]
    assert mask.tolist() == [[True, True], [False, False]]


def test_a_crf_tagger_trains_round_trips_and_exports(tiny_bert, tiny_tokens, tmp_path):
    from tuneforge.export import export_model

    out = tmp_path / "m"
    model = tuneforge.tune(
        tiny_tokens["train"], tiny_tokens["test"], base=str(tiny_bert), method="full", out=out,
        task_options={"crf": True}, epochs=8, batch_size=8, lr=3e-3, early_stopping=0,
        progress=False,
    )  # fmt: skip
    assert model.metrics["eval"]["f1"] > 0.5, model.metrics["eval"]
    scores = model.config.task_config["crf_scores"]
    assert scores["names"] == model.labels and np.abs(scores["transitions"]).sum() > 0
    text = ["my card pin is lost please refund money now", "refund 20 dollars to my visa card"]
    want = [p.to_dict() for p in model.predict(text)]
    assert want == [p.to_dict() for p in tuneforge.TunedModel.load(out).predict(text)]
    export_model(out, tmp_path / "onnx", val=tiny_tokens["test"], max_loss=5.0)
    exported = tuneforge.TunedModel.load(tmp_path / "onnx")
    assert [[(e["start"], e["end"], e["label"]) for e in p["entities"]] for p in want] == [
        [(e.start, e.end, e.label) for e in p.entities] for p in exported.predict(text)
    ]


@pytest.mark.parametrize("method, lr", [("partial", 1e-2), ("head", 3e-2), ("lora", 1e-2)])
def test_every_token_method_trains_the_crf(method, lr, tiny_bert, tiny_tokens):
    model = tuneforge.tune(
        tiny_tokens["train"], tiny_tokens["test"], base=str(tiny_bert), method=method,
        task_options={"crf": True}, epochs=3, batch_size=8, lr=lr, early_stopping=0,
        progress=False,
    )  # fmt: skip
    assert np.abs(model.config.task_config["crf_scores"]["transitions"]).sum() > 0
    first_tags = [p.tags[0] for p in model.predict(["refund my card", "my visa card pin"])]
    assert not any(t.startswith("I-") for t in first_tags)
