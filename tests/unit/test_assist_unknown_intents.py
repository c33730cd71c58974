"""Held-out intents: the assistant hands off questions about intents it was never taught.

Synthetic embeddings stand in for the encoder: intents are clusters grouped in domains (so an
unknown intent lies near known siblings, as a new banking question does), and a tenth of the
questions are worded unusually (far from their cluster, yet still classified right), which is
what pushed the old accuracy-only threshold down to "answer everything".
"""

from __future__ import annotations

import numpy as np
import pytest

from assist_fakes import make_assistant, write_assistant
from tuneforge.apps.assist.build import calibrate, load_knowledge
from tuneforge.apps.assist.evaluate import EvalOptions, leave_intents_out, run_eval
from tuneforge.apps.assist.knowledge import AssistConfig
from tuneforge.apps.assist.oos import SCORES, in_scope_score
from tuneforge.apps.assist.thresholds import handoff_share
from tuneforge.apps.assist.unknown_intents import unknown_intent_folds
from tuneforge.cli.assist import train_summary
from tuneforge.data import stratified_split
from tuneforge.data.dataset import TextDataset
from tuneforge.errors import DataError
from tuneforge.evaluation.calibration import abstain_threshold

KIND = "msp_knn"
C = 16.0  # the head's regularization, given to the folds as `assist train` gives it


def synthetic_intents(seed: int, domains=4, per_domain=10, per_intent=40, dim=32):
    """(unit embeddings, intent labels): 40 intents in 4 domains."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(domains, dim))
    x, y = [], []
    for d in range(domains):
        for i in range(per_domain):
            c = centers[d] / np.linalg.norm(centers[d]) + 0.8 * rng.normal(size=dim) / dim**0.5
            spread = np.where(rng.random(per_intent) < 0.1, 1.2, 0.35)  # a tenth worded oddly
            noise = rng.normal(size=(per_intent, dim)) / dim**0.5
            rows = c / np.linalg.norm(c) + spread[:, None] * noise
            x.append(rows / np.linalg.norm(rows, axis=1, keepdims=True))
            y += [f"d{d}_intent{i}"] * per_intent
    return np.vstack(x).astype(np.float32), np.array(y)


class EmbeddingModel:
    """An intent model over fixed embeddings: text "q12" is row 12; a logistic-regression head
    fit on the `fit` rows, as the head method fits one on frozen-encoder embeddings."""

    def __init__(self, x: np.ndarray, fit: TextDataset) -> None:
        from sklearn.linear_model import LogisticRegression

        self.x = x
        self.clf = LogisticRegression(C=C, max_iter=2000).fit(self.embed(fit.texts), fit.labels)
        self.labels = list(self.clf.classes_)

    def embed(self, texts: list[str]) -> np.ndarray:
        return self.x[[int(t[1:]) for t in texts]]

    def logits(self, texts: list[str]) -> np.ndarray:
        return self.clf.decision_function(self.embed(texts))


def held_out_assistant(seed: int, unknown_share=0.2):
    """A fit/validation/test split over the known intents, and the unknown intents' rows."""
    x, y = synthetic_intents(seed)
    names = sorted(set(y))
    rng = np.random.default_rng(seed + 100)
    unknown = set(rng.choice(names, round(unknown_share * len(names)), replace=False))
    rows = TextDataset.from_lists([f"q{i}" for i in range(len(y))], list(y))
    known = rows.subset([i for i, label in enumerate(y) if label not in unknown])
    outside = [f"q{i}" for i, label in enumerate(y) if label in unknown]
    train, test = stratified_split(known, 0.2, seed=0)
    fit, val = stratified_split(train, 0.2, seed=0)
    return x, fit, val, test, outside


def answered(model, calibration, texts: list[str]) -> np.ndarray:
    scores = in_scope_score(KIND, model.logits(texts), model.embed(texts), calibration.reference)
    return scores >= calibration.answer[KIND]


@pytest.mark.parametrize("seed", [3, 6])
def test_unknown_intents_are_handed_off_where_accuracy_alone_answered_them(seed):
    x, fit, val, test, outside = held_out_assistant(seed)
    model = EmbeddingModel(x, fit)
    calibration = calibrate(model, fit, val, AssistConfig(oos_score=KIND), head_c=C)
    measured = calibration.measured

    # the case: the model is so accurate on validation that the old rule answered all
    assert measured["accuracy"] >= 0.97
    ref = calibration.reference
    val_scores = in_scope_score(KIND, model.logits(val.texts), model.embed(val.texts), ref)
    correct = np.array(model.labels)[model.logits(val.texts).argmax(1)] == np.array(val.labels)
    old, coverage, _ = abstain_threshold(val_scores, correct, 0.95)
    assert coverage == 1.0
    outside_scores = in_scope_score(KIND, model.logits(outside), model.embed(outside), ref)
    assert handoff_share(outside_scores, old) < 0.1

    # the new threshold: most unknown questions handed off, in-scope recall kept
    assert measured[KIND]["bound_by"] == "in_scope_recall" and measured[KIND]["answered"] >= 0.95
    handed_off = 1 - answered(model, calibration, outside).mean()
    assert handed_off >= 0.7
    in_scope = answered(model, calibration, test.texts)
    assert in_scope.mean() >= 0.9
    right = np.array(model.labels)[model.logits(test.texts).argmax(1)] == np.array(test.labels)
    assert right[in_scope].mean() >= 0.95

    # train's estimate (leaving intents out of `fit`) is close to what the unknown ones get
    # (one draw of 8 unknown intents: over seeds 0-7 the two average 0.83 and 0.85)
    expected = measured[KIND]["expected_unknown_handoff"]
    assert expected == pytest.approx(handed_off, abs=0.1)
    unknown = measured["unknown_intents"]
    assert (unknown["folds"], unknown["held_out_per_fold"], unknown["intents"]) == (3, 8, 32)
    assert set(unknown["handoff"]) == set(SCORES)
    summary = train_summary(calibration, KIND)  # what `assist train` prints
    assert f"Unknown questions: about {expected:.0%} handed off or sent to an article" in summary
    assert f"in-scope questions answered {measured[KIND]['answered']:.0%}" in summary


def test_out_of_scope_examples_raise_the_threshold():
    x, fit, val, _, outside = held_out_assistant(3)
    model = EmbeddingModel(x, fit)
    examples, unseen = outside[::2], outside[1::2]  # half given as examples, half kept unseen
    cfg = AssistConfig(oos_score=KIND, target_oos_handoff=0.95)
    without = calibrate(model, fit, val, cfg, head_c=C)
    with_oos = calibrate(model, fit, val, cfg, examples, head_c=C)
    figures = with_oos.measured[KIND]
    assert with_oos.measured["oos_examples"] == len(examples)
    assert figures["bound_by"] in ("oos_handoff", "min_in_scope_recall")
    assert with_oos.answer[KIND] > without.answer[KIND]
    assert figures["answered"] >= cfg.min_in_scope_recall
    reached = figures["oos_handoff"] >= cfg.target_oos_handoff
    assert ("not reached" in train_summary(with_oos, KIND)) == (not reached)
    assert figures["oos_handoff"] == pytest.approx(
        1 - answered(model, with_oos, examples).mean(), abs=1e-4
    )
    assert (1 - answered(model, with_oos, unseen).mean()) > (
        1 - answered(model, without, unseen).mean()
    )
    assert (
        "oos_handoff" not in without.measured[KIND] or without.measured[KIND]["oos_handoff"] is None
    )


def test_oos_rows_and_file_are_out_of_scope_examples(tmp_path):
    directory = write_assistant(tmp_path / "bot")
    with (directory / "intents.csv").open("a") as f:
        f.write("what is the weather tomorrow,oos\nplay some jazz,oos\n")
    (directory / "unknown.yaml").write_text("- book me a table for two\n- 'yes'\n")
    (directory / "assist.yaml").write_text("intents: intents.csv\noos_examples: unknown.yaml\n")
    cfg = AssistConfig.load(directory)
    intents, answers, _, out_of_scope = load_knowledge(directory, cfg)  # no answer for oos
    assert "oos" not in intents.label_names and set(answers) == set(intents.label_names)
    assert out_of_scope == [
        "what is the weather tomorrow",
        "play some jazz",
        "book me a table for two",
        "yes",  # YAML's text stays text
    ]
    (directory / "unknown.csv").write_text("text\nbook me a table for two\n")
    cfg = cfg.model_copy(update={"oos_examples": "unknown.csv"})
    assert load_knowledge(directory, cfg)[3][-1] == "book me a table for two"
    for name, text in (("missing.yaml", None), ("bad.yaml", "question: text\n")):
        if text:
            (directory / name).write_text(text)
        with pytest.raises(DataError, match=name):
            load_knowledge(directory, cfg.model_copy(update={"oos_examples": name}))


def test_eval_keeps_its_keys_and_folds(tmp_path, monkeypatch):
    """`assist eval` JSON: the keys dashboards read, unchanged by the new calibration."""
    from tuneforge.apps.assist.pipeline import Assistant

    directory = write_assistant(tmp_path / "bot")
    bot = make_assistant(directory)
    monkeypatch.setattr(Assistant, "load", classmethod(lambda cls, d, store=None: bot))
    test, foreign = tmp_path / "test.csv", tmp_path / "foreign.csv"
    test.write_text("text,label\nmy card has not arrived,card_arrival\nexchange,exchange_charge\n")
    foreign.write_text("text\nplay some jazz\nwhat is the ATM fee\n")
    result = run_eval(directory, EvalOptions(test=test, out_of_domain=foreign))
    assert {"answered_at_threshold", "accuracy_of_answered", "paths"} <= set(result["intent"])
    for paths in (result["intent"]["paths"], result["out_of_domain"]):
        assert {"answer", "retrieval", "handoff"} <= set(paths)

    x, y = synthetic_intents(0, per_intent=10)
    train = TextDataset.from_lists([f"q{i}" for i in range(len(y))], list(y))
    opts = EvalOptions(folds=2)
    figures = leave_intents_out(x, train, x, train, opts)
    assert (figures["intents"], figures["held_out_per_fold"], figures["folds"]) == (40, 10, 2)
    assert all(set(figures[k]) == {"auroc", "fpr_at_95tpr"} for k in SCORES)
    # the folds are the ones `assist eval` always drew (same generator, same order)
    rng = np.random.default_rng(0)
    names = sorted(set(y))
    assert unknown_intent_folds(names, 2) == [
        set(rng.choice(names, 10, replace=False).tolist()) for _ in range(2)
    ]
