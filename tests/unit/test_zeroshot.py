"""zeroshot: label YAML validation, the prototype head, self-training, and the CLI path."""

from __future__ import annotations

import numpy as np
import pytest

import tuneforge
from tuneforge.errors import ConfigError
from tuneforge.methods.self_training import pseudo_label_selection
from tuneforge.methods.zeroshot.labels import LabelSpec, parse_labels


def write(tmp_path, text: str):
    path = tmp_path / "labels.yaml"
    path.write_text(text)
    return path


def test_label_forms_parse(tmp_path):
    assert [s.name for s in parse_labels("card, refund ,transfer")] == [
        "card",
        "refund",
        "transfer",
    ]
    assert parse_labels(["a_b", "c"])[0].text == "a b"
    specs = parse_labels(
        write(
            tmp_path,
            "labels:\n  card:\n    description: a payment card\n    examples: [pin, plastic]\n"
            "  refund: money back\n  transfer: null\n",
        )
    )
    assert specs[0] == LabelSpec("card", "a payment card", ["pin", "plastic"])
    assert specs[1].text == "money back" and specs[2].text == "transfer"
    assert [s.name for s in parse_labels(write(tmp_path, "labels: [x, y]\n"))] == ["x", "y"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("names: [a, b]\n", "top-level `labels:`"),
        ("labels: [a]\n", "at least two"),
        ("labels: [a, b, a]\n", "duplicate label name(s): a"),
        ("labels:\n  a: {descr: x}\n  b: null\n", "unknown key(s) descr"),
        ("labels:\n  a: {examples: {x: 3}}\n  b: null\n", "list of phrases"),
        ("labels:\n  a: [1, 2]\n  b: null\n", "must map to"),
        ("labels: [a, [b]]\n", "must be a name"),
        ("labels: [a, b\n", "not valid YAML"),
        ("labels: 7\n", "expected a list"),
    ],
)
def test_label_yaml_errors_say_how_to_fix(tmp_path, text, message):
    with pytest.raises(ConfigError, match=None) as err:
        parse_labels(write(tmp_path, text))
    assert message in str(err.value)


def test_missing_labels_file_is_explained(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        parse_labels(str(tmp_path / "nope.yaml"))


def test_pseudo_label_selection_keeps_confident_rows_per_class():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.55, 0.45], [0.2, 0.8], [0.45, 0.55]])
    assert pseudo_label_selection(probs, per_class=5, min_confidence=0.58).tolist() == [0, 1, 3]
    assert pseudo_label_selection(probs, per_class=1, min_confidence=0.5).tolist() == [0, 3]


def test_zeroshot_model_is_an_ordinary_artifact(tiny_bert, tiny_data, tmp_path):
    labels = {
        "card": {"examples": ["card arrived post", "lost plastic pin"]},
        "refund": {"examples": ["refund money back", "reverse charge owed"]},
        "transfer": {"examples": ["bank transfer iban", "send wire sepa"]},
    }
    model = tuneforge.tune(
        None,
        tiny_data["test"],
        labels=labels,
        base=str(tiny_bert),
        out=tmp_path / "zs",
        progress=False,
    )
    assert model.config.method == "zeroshot"
    assert model.labels == ["card", "refund", "transfer"]
    # seed phrases are their own class's nearest prototype
    preds = [p.label for p in model.predict(["card arrived post", "send wire sepa"])]
    assert preds == ["card", "transfer"]
    loaded = tuneforge.TunedModel.load(tmp_path / "zs")
    texts = ["my card", "refund please"]
    np.testing.assert_allclose(loaded.predict_proba(texts), model.predict_proba(texts), atol=1e-5)
    assert loaded.evaluate(tiny_data["test"]).accuracy == model.metrics["eval"]["accuracy"]


def test_self_training_uses_unlabelled_texts(tiny_bert, tiny_data, tmp_path):
    kw = dict(labels="card,refund,transfer", base=str(tiny_bert), progress=False)
    plain = tuneforge.tune(None, **kw)
    trained = tuneforge.tune(
        tiny_data["train"],
        method="zeroshot",
        method_options={"self_train": True, "min_confidence": 0.0},
        **kw,
    )
    assert trained.config.train_config["method_options"]["self_train"]
    texts = ["card arrived", "bank transfer"]
    assert not np.allclose(plain.logits(texts), trained.logits(texts))


def test_labels_with_another_method_is_an_error(tiny_bert):
    with pytest.raises(ConfigError, match="--method zeroshot"):
        tuneforge.tune(None, labels="a,b", method="head", base=str(tiny_bert), progress=False)


def test_cli_trains_from_labels_only(tiny_bert, tiny_data, tmp_path):
    from typer.testing import CliRunner

    from tuneforge.cli.app import _register, app

    _register()
    labels = write(tmp_path, "labels: [card, refund, transfer]\n")
    out = tmp_path / "m"
    args = [
        "train",
        "--labels",
        str(labels),
        "--method",
        "zeroshot",
        "--base",
        str(tiny_bert),
        "--out",
        str(out),
        "--no-progress",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert tuneforge.TunedModel.load(out).labels == ["card", "refund", "transfer"]


def test_label_yaml_keeps_yaml_1_1_booleans_and_numbers_as_names(tmp_path):
    # CLINC150 has intents named `yes` and `no`; YAML 1.1 would read them as True and False
    text = (
        "labels:\n  - yes\n  - no\n  - on\n  - off\n  - 010\n  - maybe: {examples: [yes please]}\n"
    )
    specs = parse_labels(write(tmp_path, text))
    assert [s.name for s in specs] == ["yes", "no", "on", "off", "010", "maybe"]
    assert specs[-1].examples == ["yes please"]
