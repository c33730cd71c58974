"""fewshot: bounded contrastive batches, the loss, N-shot sampling and a tiny end-to-end run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tuneforge
from tuneforge.data.dataset import TextDataset, load_data
from tuneforge.data.sampling import sample_shots
from tuneforge.errors import DataError
from tuneforge.methods.fewshot import (
    in_length_groups,
    label_phrase_rows,
    names_are_words,
    supervised_contrastive_loss,
)
from tuneforge.methods.pairs import confusable_classes, contrastive_batches, pair_count

FAST = dict(epochs=3, batch_size=8, early_stopping=0, progress=False)


def test_pairs_grow_linearly_for_100_classes():
    """100 classes x 10 shots: pairs are bounded by examples x views x batch, not (n)^2."""
    rng = np.random.default_rng(0)
    for shots in (10, 20):
        labels = np.repeat(np.arange(100), shots)
        emb = rng.normal(size=(len(labels), 16)).astype(np.float32)
        batches = contrastive_batches(
            labels, 16, 4, confusable_classes(emb, labels, 8), views=3, seed=0
        )
        n = len(labels)
        assert len(batches) == -(-n * 3 // 64)
        assert pair_count(batches) <= len(batches) * 64 * 63
        assert pair_count(batches) < n * n / 4  # far below all-pairs
        seen = np.bincount(np.concatenate(batches), minlength=n)
        assert seen.min() >= 1  # every example is used
    # doubling shots doubles (not quadruples) the pairs
    assert pair_count(batches) == pytest.approx(2 * 100 * 10 * 3 * 63, rel=0.05)


def test_batches_group_confusable_classes():
    labels = np.repeat(np.arange(10), 4)
    # classes 0 and 1 share a direction; the rest are spread out
    centers = np.eye(10, 10, dtype=np.float32)
    centers[1] = centers[0] + 0.05
    emb = centers[labels]
    confusable = confusable_classes(emb, labels, 2)
    assert confusable[0, 0] == 1 and confusable[1, 0] == 0
    batches = contrastive_batches(labels, 3, 2, confusable, hard_fraction=1.0, views=3, seed=0)
    with_0 = [set(labels[b]) for b in batches if labels[b[0]] == 0]
    assert with_0 and all(1 in classes for classes in with_0)


def test_supcon_loss_prefers_clustered_embeddings():
    labels = torch.tensor([0, 0, 1, 1])
    clustered = torch.nn.functional.normalize(torch.tensor([[1, 0.1], [1, 0], [0, 1], [0.1, 1]]))
    mixed = torch.nn.functional.normalize(torch.tensor([[1, 0.1], [0, 1], [1, 0], [0.1, 1]]))
    good = supervised_contrastive_loss(clustered, labels, 10.0)
    bad = supervised_contrastive_loss(mixed, labels, 10.0)
    assert good < bad
    # no positives at all: zero loss, still differentiable
    single = torch.randn(3, 2, requires_grad=True)
    supervised_contrastive_loss(single, torch.tensor([0, 1, 2]), 10.0).backward()


def test_length_groups_give_the_same_embeddings_and_gradients():
    """Splitting a contrastive batch by length is only faster: same outputs, same gradients."""
    torch.manual_seed(0)
    table = torch.nn.Embedding(50, 8)
    rng = np.random.default_rng(0)
    ids = [rng.integers(1, 50, n).tolist() for n in rng.integers(1, 60, 32)]

    def embed(rows):  # masked mean of a padded batch: padding must not matter
        width = max(len(ids[i]) for i in rows)
        x = torch.zeros(len(rows), width, dtype=torch.long)
        mask = torch.zeros(len(rows), width)
        for r, i in enumerate(rows):
            x[r, : len(ids[i])], mask[r, : len(ids[i])] = torch.tensor(ids[i]), 1
        return (table(x) * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)

    rows = rng.permutation(32).tolist()
    grouped = in_length_groups(embed, [len(x) for x in ids], max_tokens=64)
    whole, parts = embed(rows), grouped(rows)
    torch.testing.assert_close(parts, whole)
    grads = []
    for out in (whole, parts):
        table.zero_grad()
        (out @ torch.arange(8.0)).square().sum().backward(retain_graph=True)
        grads.append(table.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])


def test_sample_shots_is_reproducible_and_bounded():
    labels = ["a"] * 20 + ["b"] * 20 + ["c"] * 3
    ds = TextDataset.from_lists([f"t{i}" for i in range(len(labels))], labels)
    one, two = sample_shots(ds, 8, seed=0), sample_shots(ds, 8, seed=0)
    assert one.texts == two.texts
    assert sample_shots(ds, 8, seed=1).texts != one.texts
    assert one.class_counts() == {"a": 8, "b": 8, "c": 3}
    assert "fewer than 8" in one.warnings[0]
    with pytest.raises(DataError, match="at least 1"):
        sample_shots(ds, 0)


def test_sample_cli_writes_the_sample(tiny_data, tmp_path):
    from typer.testing import CliRunner

    from tuneforge.cli.app import _register, app

    _register()
    out = tmp_path / "s.csv"
    args = ["sample", str(tiny_data["train"]), "--shots", "5", "--seed", "3", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    ds = load_data(out)
    assert ds.class_counts() == {"card": 5, "refund": 5, "transfer": 5}
    assert ds.texts == sample_shots(load_data(tiny_data["train"]), 5, 3).texts


SMALL_BATCHES = {"classes_per_batch": 3, "per_class": 4, "top_layers": 1}


def _tune_fewshot(few, tiny_bert, tiny_data, out, options: dict):
    return tuneforge.tune(
        few,
        tiny_data["test"],
        base=str(tiny_bert),
        method="fewshot",
        lr=3e-3,
        method_options=options,
        out=out,
        **FAST,
    )


def test_fewshot_trains_the_encoder_and_round_trips(tiny_bert, tiny_data, tmp_path):
    few = sample_shots(load_data(tiny_data["train"]), 8, seed=0)
    model = _tune_fewshot(few, tiny_bert, tiny_data, tmp_path / "m", SMALL_BATCHES)
    assert model.config.method == "fewshot"
    assert model.config.method_details["label_phrases"] == 3 * 2  # 3 labels x 2 templates
    losses = [r["loss"] for r in model.log if "loss" in r]
    assert len(losses) >= 3 and np.mean(losses[-2:]) < np.mean(losses[:2])
    assert model.metrics["eval"]["accuracy"] > 0.6, model.metrics["eval"]
    loaded = tuneforge.TunedModel.load(tmp_path / "m")
    texts = ["card arrived post", "refund money back"]
    np.testing.assert_allclose(loaded.predict_proba(texts), model.predict_proba(texts), atol=1e-5)


def test_pseudo_labels_are_class_balanced_and_capped():
    from tuneforge.methods.self_training import pseudo_label_selection

    rng = np.random.default_rng(0)
    # class 0 is predicted for 80% of rows: it must not take more than its cap
    best = np.where(rng.random(500) < 0.8, 0, rng.integers(1, 4, 500))
    probs = np.full((500, 4), 0.05)
    probs[np.arange(500), best] = rng.uniform(0.3, 0.99, 500)
    keep = pseudo_label_selection(probs, per_class=10)
    counts = np.bincount(best[keep], minlength=4)
    assert counts.tolist() == [10, 10, 10, 10]
    # the kept rows of a class are its most confident ones
    class0 = np.flatnonzero(best == 0)
    top = class0[np.argsort(-probs[class0, 0])][:10]
    assert set(keep[best[keep] == 0]) == set(top)
    # a confidence floor drops the rest
    strict = pseudo_label_selection(probs, per_class=10, min_confidence=0.9)
    assert probs[strict].max(1).min() >= 0.9 and len(strict) < len(keep)
    # a fraction keeps the top share of each class's rows, rounded up, under the cap
    half = pseudo_label_selection(probs, per_class=1000, fraction=0.5)
    predicted = np.bincount(best, minlength=4)
    assert np.bincount(best[half], minlength=4).tolist() == [-(-n // 2) for n in predicted]
    # rows no label reached (all-zero distribution) are never kept
    probs[:5] = 0
    assert not set(range(5)) & set(pseudo_label_selection(probs, per_class=1000))


def test_unlabeled_excludes_labelled_texts_ignores_labels_and_caps(tmp_path):
    from tuneforge.methods.self_training import load_unlabeled

    pool = tmp_path / "pool.csv"
    # labels are ignored, so a missing one is no error
    pool.write_text("text,label\nseen one,a\nnew one,b\nnew two,\nnew one,b\nnew three,c\n")
    texts, info = load_unlabeled(str(pool), ["seen one", "other"], cap=100, seed=0)
    assert texts == ["new one", "new two", "new three"]
    assert info["duplicates_of_labelled"] == 1 and info["used"] == 3 and info["rows"] == 5
    capped, info = load_unlabeled(str(pool), ["seen one"], cap=2, seed=0)
    assert len(capped) == 2 and set(capped) < set(texts) and info["distinct_new"] == 3
    again, _ = load_unlabeled(str(pool), ["seen one"], cap=2, seed=0)
    assert again == capped  # the sample is seeded


def test_unlabeled_option_is_validated(tiny_bert, tiny_data, tmp_path):
    from tuneforge.errors import ConfigError

    few = sample_shots(load_data(tiny_data["train"]), 4, seed=0)
    missing = tmp_path / "nope.csv"
    with pytest.raises(ConfigError, match=r"nope\.csv does not exist"):
        tuneforge.tune(
            few,
            base=str(tiny_bert),
            method="fewshot",
            **FAST,
            method_options={"unlabeled": str(missing)},
        )
    with pytest.raises(ConfigError, match="max_unlabeled"):
        tuneforge.tune(
            few,
            base=str(tiny_bert),
            method="fewshot",
            **FAST,
            method_options={"unlabeled": str(tiny_data["train"]), "max_unlabeled": 0},
        )
    multi = TextDataset.from_lists(["card post", "refund money"] * 4, [["card"], ["refund"]] * 4)
    with pytest.raises(ConfigError, match="single-label"):
        tuneforge.tune(
            multi,
            base=str(tiny_bert),
            method="fewshot",
            **FAST,
            method_options={"unlabeled": str(tiny_data["train"])},
        )


def test_cli_passes_unlabeled_and_names_a_missing_file(tiny_bert, tiny_data, tmp_path):
    from typer.testing import CliRunner

    from tuneforge.cli.app import _register, app

    _register()
    args = ["train", str(tiny_data["train"]), "--base", str(tiny_bert), "--method", "fewshot"]
    args += ["-O", f"unlabeled={tmp_path / 'pool.csv'}", "--out", str(tmp_path / "m")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0
    assert "pool.csv does not exist" in str(result.exception) + result.output


def test_fewshot_self_training_records_counts_and_predicts(tiny_bert, tiny_data, tmp_path):
    few = sample_shots(load_data(tiny_data["train"]), 4, seed=0)
    opts = {**SMALL_BATCHES, "min_steps": 10}
    st = {
        "unlabeled": str(tiny_data["train"]),
        "pseudo_per_class": 5,
        "self_train_rounds": 2,
    }
    model = _tune_fewshot(few, tiny_bert, tiny_data, tmp_path / "m", {**opts, **st})
    record = tuneforge.TunedModel.load(tmp_path / "m").config.method_details["self_training"]
    pool = load_data(tiny_data["train"]).texts
    assert record["rows"] == len(pool) == 120
    assert record["duplicates_of_labelled"] == sum(t in set(few.texts) for t in pool) >= len(few)
    assert record["used"] == len(set(pool) - set(few.texts))
    # round 1 labels by label spreading, round 2 by the refitted head
    assert [(r["round"], r["labeller"]) for r in record["rounds"]] == [(1, "spread"), (2, "head")]
    for r in record["rounds"]:
        assert r["kept"] <= 3 * 5 and r["kept_per_class_max"] <= 5
    assert model.metrics["eval"]["accuracy"] > 0.6, model.metrics["eval"]
    plain = tuneforge.tune(few, base=str(tiny_bert), method="fewshot", method_options=opts, **FAST)
    assert "self_training" not in plain.config.method_details


@pytest.mark.parametrize(
    "names, words",
    [
        (["sadness", "joy"], True),
        (["card_arrival", "top-up failed"], True),
        (["0", "1"], False),
        (["LABEL_0", "LABEL_1"], False),
        (["c12", "joy"], False),
        (["a", "joy"], False),  # too short to mean much to an encoder
        (["正面", "负面"], True),
    ],
)
def test_label_names_are_used_as_phrases_only_when_they_are_words(names, words):
    assert names_are_words(names) is words


def test_label_phrase_rows_are_readable_and_labelled(tiny_data):
    like = load_data(tiny_data["train"])
    rows = label_phrase_rows(["card_arrival", "joy"], like)
    assert rows.texts == [
        "card arrival",
        "This text is about card arrival.",
        "joy",
        "This text is about joy.",
    ]
    assert rows.labels == ["card_arrival", "card_arrival", "joy", "joy"]


def test_head_c_is_chosen_on_labelled_rows_with_phrases_always_trained_on():
    """Label phrases (the last rows) are in every training fold and never scored."""
    from types import SimpleNamespace

    from tuneforge.methods.fewshot import FewshotMethod

    fitted, scored = [], []

    class Recorder:
        def fit(self, x, y):
            fitted.append(set(x[:, 0].astype(int)))
            return self

        def score(self, x, y):
            scored.append(set(x[:, 0].astype(int)))
            return 1.0

    y = np.concatenate([np.repeat(np.arange(3), 4), np.arange(3)])  # 12 rows, then 3 phrases
    x = np.arange(len(y), dtype=np.float32)[:, None]
    ctx = SimpleNamespace(multi_label=False, config=SimpleNamespace(seed=0))
    method = FewshotMethod({"C": [1.0, 4.0]})
    assert method._choose_c(ctx, lambda c: Recorder(), x, y, n_phrases=3) == 1.0
    phrases = {12, 13, 14}
    assert len(scored) == 3 * 2 and all(not (held & phrases) for held in scored)
    assert all(phrases <= rows for rows in fitted)
    assert set().union(*scored) == set(range(12))  # every labelled row is held out once


def test_tuning_plan_follows_set_size_and_label_phrases():
    from tuneforge.methods.fewshot import SMALL_SET_ROWS, FewshotMethod

    plan = FewshotMethod().tuning_plan
    assert plan(60, has_phrases=True) == (0, 45, 2e-4)  # emotion 8-shot: all layers
    assert plan(16, has_phrases=False) == (0, 30, 5e-5)  # sst2 8-shot, labels 0/1: gentler
    assert plan(16, has_phrases=False, lr=1e-5) == (0, 30, 1e-5)  # --lr wins
    assert plan(SMALL_SET_ROWS + 1, has_phrases=True) == (2, 120, 2e-4)  # banking77: 924 rows
    assert plan(SMALL_SET_ROWS + 1, has_phrases=False) == (2, 120, 2e-4)
    given = FewshotMethod({"top_layers": 3, "min_steps": 10}).tuning_plan
    assert given(60, has_phrases=True) == (3, 10, 2e-4)
    assert FewshotMethod({"top_layers": 0}).tuning_plan(5000, False) == (0, 45, 2e-4)
    assert FewshotMethod({"top_layers": 2}).tuning_plan(16, False) == (2, 120, 2e-4)


@pytest.mark.parametrize("tune_words", [False, True])
def test_small_sets_tune_every_layer_but_the_word_embeddings(
    tiny_bert, tiny_data, tmp_path, tune_words
):
    from transformers import AutoModel

    few = sample_shots(load_data(tiny_data["train"]), 8, seed=0)  # 24 rows + 6 phrases
    opts = {"classes_per_batch": 3, "per_class": 4, "min_steps": 6}
    model = _tune_fewshot(
        few, tiny_bert, tiny_data, tmp_path / "m", {**opts, "tune_word_embeddings": tune_words}
    )
    details = model.config.method_details
    assert (details["tuned_layers"], details["lr"], details["min_steps"]) == ("all", 3e-3, 6)
    base, tuned = (AutoModel.from_pretrained(p) for p in (tiny_bert, tmp_path / "m" / "encoder"))
    words = [m.get_input_embeddings().weight for m in (base, tuned)]
    query = [m.encoder.layer[0].attention.self.query.weight for m in (base, tuned)]
    assert not torch.equal(*query)
    assert torch.equal(*words) is not tune_words
