"""The `auto` decision table (docs/auto.md): each row, and that the choice is recorded."""

from __future__ import annotations

import pytest

import tuneforge
from tuneforge.data.dataset import TextDataset
from tuneforge.methods.auto import DataProfile, choose_method, fewshot_minutes


def dataset(classes: int, per_class: int, text: str = "my card has not arrived yet") -> TextDataset:
    labels = [f"c{i}" for i in range(classes) for _ in range(per_class)]
    return TextDataset.from_lists([f"{text} {i}" for i in range(len(labels))], labels)


@pytest.mark.parametrize(
    ("data", "minutes", "expected", "why"),
    [
        (None, None, "zeroshot", "no labelled examples"),
        (dataset(5, 100), 1.5, "head", "time budget"),
        (dataset(77, 10), None, "fewshot", "contrastive"),
        (dataset(3, 8, "word " * 300), None, "head", "long texts"),
        (dataset(2000, 20), 5, "head", "would take"),
        (dataset(5, 200), None, "partial", "top layers"),
        (dataset(4, 60_000, "short"), None, "head", "200,000"),
    ],
)
def test_decision_table(data, minutes, expected, why):
    name, reason = choose_method(data, minutes)
    assert name == expected, reason
    assert why in reason


def test_budget_scales_with_model_size():
    data = dataset(77, 10)
    p = DataProfile.of(data)
    assert fewshot_minutes(p, 4.0) == pytest.approx(4 * fewshot_minutes(p))
    minutes = fewshot_minutes(p) * 2
    assert choose_method(data, minutes)[0] == "fewshot"
    assert choose_method(data, minutes, model_scale=4.0)[0] == "head"


def test_non_latin_text_on_english_base_gets_a_hint():
    data = dataset(2, 10, "外卖送得很快，味道也不错")
    assert DataProfile.of(data).non_latin > 0.9
    assert "e5-multilingual" in choose_method(data, None, base="minilm")[1]
    assert "e5-multilingual" not in choose_method(data, None, base="e5-multilingual")[1]
    assert "e5-multilingual" in choose_method(data, None, base="mpnet+minilm")[1]


def test_many_class_english_set_on_minilm_gets_a_pair_hint_within_budget():
    intents = dataset(77, 10)
    hint = "--base mpnet+minilm"
    assert hint in choose_method(intents, None, base="minilm")[1]
    assert hint not in choose_method(intents, None, base="mpnet+minilm")[1]
    assert hint not in choose_method(dataset(6, 10), None, base="minilm")[1]
    tight = fewshot_minutes(DataProfile.of(intents)) * 2  # fewshot fits, the pair (x9) does not
    name, reason = choose_method(intents, tight, base="minilm")
    assert name == "fewshot" and hint not in reason


def test_auto_prints_and_records_its_choice(tiny_bert, tiny_data, tmp_path, capsys):
    from tuneforge.data.dataset import load_data
    from tuneforge.data.sampling import sample_shots

    few = sample_shots(load_data(tiny_data["train"]), 6, seed=0)
    model = tuneforge.tune(
        few,
        base=str(tiny_bert),
        epochs=1,
        progress=False,
        out=tmp_path / "m",
        method_options={"classes_per_batch": 3, "per_class": 2},
    )
    assert model.config.method == "fewshot"
    assert "method auto → fewshot" in capsys.readouterr().err
    loaded = tuneforge.TunedModel.load(tmp_path / "m")
    assert "examples per class" in loaded.config.method_reason
    assert loaded.config.train_config["method"] == "auto"
