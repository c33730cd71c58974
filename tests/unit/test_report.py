"""The HTML report, `calibrate` into the artifact, abstention honoured by predict, compare."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

import tuneforge
from conftest import make_texts
from tuneforge.cli.app import _register, app
from tuneforge.data.dataset import TextDataset, load_data
from tuneforge.evaluation.calibration import calibrate_model
from tuneforge.evaluation.report import ReportOptions, build_report
from tuneforge.evaluation.report_html import render

_register()
runner = CliRunner()
FAST = ReportOptions(bootstrap_resamples=50, faithfulness_texts=6, ig_steps=8)


def _train(tiny_bert, tiny_data, out, **kw):
    args = dict(method="full", epochs=6, lr=3e-3, batch_size=8, early_stopping=0)
    args.update(kw)
    return tuneforge.tune(tiny_data["train"], base=str(tiny_bert), progress=False, out=out, **args)


@pytest.fixture(scope="module")
def model_dir(tiny_bert, tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "m"
    _train(tiny_bert, tiny_data, out)
    return out


@pytest.fixture
def model(model_dir):
    return tuneforge.TunedModel.load(model_dir)


def _overconfident(model):
    """Multiply the head's logits by 20: same predictions, absurdly sure of each."""
    linear = model.runtime.classifier.head[-1]
    with torch.no_grad():
        linear.weight.mul_(20.0)
        linear.bias.mul_(20.0)
    return model


def test_report_sections_and_figures(model, tiny_data):
    test = load_data(tiny_data["test"])
    train = load_data(tiny_data["train"])
    report = build_report(model, test, FAST, train=train)
    figures = report.figures()
    assert 0 <= figures["ece_before"] <= 1 and figures["temperature"] == 1.0
    assert figures["accuracy"] == pytest.approx(model.evaluate(test).accuracy)
    summary = report.sections["summary"]["intervals"]["macro_f1"]
    assert summary.low <= summary.value <= summary.high
    assert report.sections["data"]["leakage"]["rows"] >= 0
    assert set(report.sections["robustness"]["table"]) == {
        "clean",
        "typos",
        "casing",
        "punctuation",
    }
    assert report.sections["explanations"]["faithfulness"].n > 0
    assert report.sections["training"]["svg"].startswith("<svg")  # the full method logs steps
    assert figures["abstain"]["source"] in ("this test set", "unreachable")
    page = render(report)
    for section in ("summary", "per-class", "confusion", "calibration", "abstention", "errors"):
        assert f'id="{section}"' in page
    assert "<svg" in page
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing loaded from the network
    assert page.count('class="sortable"') == 1


def _noisy(seed, share=0.25):
    """Fresh rows with a share relabelled: certainty on them is over-confidence by construction."""
    rows = make_texts(60, seed=seed)
    rng = np.random.default_rng(seed)
    names = sorted({lab for _, lab in rows})
    labels = [
        names[(names.index(lab) + 1) % len(names)] if rng.random() < share else lab
        for _, lab in rows
    ]
    return TextDataset.from_lists([t for t, _ in rows], labels)


def test_temperature_scaling_lowers_ece_of_overconfident_model(model, tiny_data):
    _overconfident(model)
    val, test = _noisy(seed=5), _noisy(seed=6)
    before = build_report(model, test, FAST).figures()
    assert before["ece_before"] > 0.15
    fit = calibrate_model(model, val)
    assert fit.temperature > 2.0
    assert fit.ece_after < 0.8 * fit.ece_before
    after = build_report(model, test, FAST).figures()
    assert after["temperature"] == fit.temperature
    assert after["ece_after"] < before["ece_after"]
    assert after["accuracy"] == before["accuracy"]  # a temperature never changes a prediction


def test_calibrate_cli_writes_artifact_and_predict_abstains(model_dir, tiny_data):
    result = runner.invoke(
        app, ["calibrate", str(model_dir), str(tiny_data["train"]), "--target-accuracy", "0.99"]
    )
    assert result.exit_code == 0, result.output
    stored = yaml.safe_load((model_dir / "tuneforge.yaml").read_text())["calibration"]
    assert stored["temperature"] != 1.0 and stored["abstain_threshold"] is not None
    model = tuneforge.TunedModel.load(model_dir)
    t = model.config.calibration.abstain_threshold
    texts = load_data(tiny_data["test"]).texts
    preds = model.predict(texts)
    probs = model.predict_proba(texts).max(1)
    assert all((p.label == "abstain") == (s < t) for p, s in zip(preds, probs, strict=True))
    assert any(p.label == "abstain" for p in preds) or probs.min() >= t


def test_report_cli_compare_and_json(model_dir, tiny_bert, tiny_data, tmp_path):
    other = tmp_path / "b"
    _train(tiny_bert, tiny_data, other, method="head")
    out, figs = tmp_path / "r.html", tmp_path / "r.json"
    args = [str(model_dir), str(tiny_data["test"]), "--out", str(out), "--json", str(figs)]
    args += ["--compare", str(other), "--faithfulness-texts", "4", "--robustness-rows", "20"]
    result = runner.invoke(app, ["report", *args])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert 'id="compare"' in page and "McNemar" in page
    assert "accuracy" in json.loads(figs.read_text())


def test_explain_cli_json(model_dir):
    result = runner.invoke(app, ["explain", str(model_dir), "refund my money", "--json"])
    assert result.exit_code == 0, result.output
    exp = json.loads(result.output.strip().splitlines()[-1])
    assert exp["tokens"] == ["refund", "my", "money"] and len(exp["weights"]) == 3
    assert np.isfinite(exp["weights"]).all()


def test_perturbations_are_seeded_and_change_text():
    from tuneforge.evaluation.robustness import perturb, robustness

    texts = ["My card has not arrived, where is it?", "Refund the double charge please."]
    for kind in ("typos", "casing", "punctuation"):
        assert perturb(texts, kind, seed=3) == perturb(texts, kind, seed=3)
    assert all(a != b for a, b in zip(perturb(texts, "typos"), texts, strict=True))
    table = robustness(
        lambda ts: ["a" if "card" in t.lower() else "b" for t in ts], texts, ["a", "b"]
    )
    assert table["clean"]["accuracy"] == 1.0 and table["casing"]["changed"] == 0.0
