"""Honest selection: what a run chooses is chosen on validation rows, never on the data it
reports; the rows a model was fitted on are never presented as held out."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

import tuneforge
from tuneforge.cli.app import _register, app
from tuneforge.data import load_data, stratified_split
from tuneforge.errors import ConfigError

_register()
FAST = dict(batch_size=8, early_stopping=0, progress=False)


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.runtime.classifier.state_dict().items()}


def test_monitor_data_is_scored_for_the_curve_and_never_chosen_on(tiny_bert, tiny_data):
    common = dict(base=str(tiny_bert), method="full", epochs=3, lr=3e-3, **FAST)
    plain = tuneforge.tune(tiny_data["train"], **common)
    watched = tuneforge.tune(tiny_data["train"], monitor_data=tiny_data["test"], **common)
    evals = [e for e in watched.log if e.get("eval")]
    assert len(evals) == 3 and all(
        "monitor_accuracy" in e and "monitor_macro_f1" in e for e in evals
    )
    assert not any("monitor_accuracy" in e for e in plain.log if e.get("eval"))
    # the same weights come out: the monitored split took no part in any choice
    a, b = _weights(plain), _weights(watched)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_head_chooses_c_on_validation_then_refits_on_every_training_row(tiny_bert, tiny_data):
    from sklearn.linear_model import LogisticRegression

    model = tuneforge.tune(tiny_data["train"], base=str(tiny_bert), method="head", **FAST)
    details = model.config.method_details
    assert details["trained_on_validation"] is True
    assert set(details["validation_scores"]) == {"1.0", "4.0", "16.0", "64.0"}
    scores = details["validation_scores"]
    assert details["C"] == float(max(scores, key=scores.get))  # the first of equals
    assert model.metrics["validation"]["held_out"] is False
    # the head is the logistic regression at that C on all rows (train + validation)
    ds = load_data(tiny_data["train"])
    x = model.embed(ds.texts)
    y = np.array([model.labels.index(lab) for lab in ds.labels])
    ref = LogisticRegression(C=float(details["C"]), max_iter=2000, random_state=42).fit(x, y)
    assert np.array_equal(ref.predict(x), model.logits(ds.texts).argmax(1))


def test_head_without_refit_keeps_validation_held_out(tiny_bert, tiny_data):
    model = tuneforge.tune(
        tiny_data["train"], base=str(tiny_bert), method="head", method_options={"refit": False},
        **FAST,
    )  # fmt: skip
    assert "trained_on_validation" not in model.config.method_details
    assert "held_out" not in model.metrics["validation"]


@pytest.mark.parametrize(
    ("method", "options", "fix"),
    [("head", {}, "-O refit=false"), ("fewshot", {}, "-O train_on_validation=false")],
)
def test_calibrate_from_train_refuses_rows_the_model_was_fitted_on(
    tiny_bert, tiny_data, tmp_path, method, options, fix
):
    out = tmp_path / method
    tuneforge.tune(
        tiny_data["train"], base=str(tiny_bert), method=method, method_options=options,
        epochs=2, out=out, **FAST,
    )  # fmt: skip
    result = CliRunner().invoke(
        app, ["calibrate", str(out), str(tiny_data["train"]), "--from-train"]
    )
    assert isinstance(result.exception, ConfigError)  # `main` prints it as one message
    message = " ".join(str(result.exception).split())
    assert "trained on its validation rows" in message and fix in message
    assert "tuneforge calibrate MODEL val.csv" in message


@pytest.mark.parametrize(
    ("method", "options"),
    [("head", {"refit": False}), ("fewshot", {"train_on_validation": False})],
)
def test_calibrate_from_train_uses_the_held_out_rows_when_they_were_kept_out(
    tiny_bert, tiny_data, tmp_path, method, options
):
    out = tmp_path / method
    model = tuneforge.tune(
        tiny_data["train"], base=str(tiny_bert), method=method, method_options=options,
        epochs=2, out=out, **FAST,
    )  # fmt: skip
    assert "held_out" not in model.metrics["validation"]
    result = CliRunner().invoke(
        app, ["calibrate", str(out), str(tiny_data["train"]), "--from-train"]
    )
    assert result.exit_code == 0, result.output
    _, val = stratified_split(load_data(tiny_data["train"]), 0.1, 42)
    assert f"on {len(val)} rows" in result.output
    config = yaml.safe_load((out / "tuneforge.yaml").read_text())
    assert config["calibration"]["temperature"] > 0


def test_fewshot_records_that_it_trained_on_validation(tiny_bert, tiny_data):
    model = tuneforge.tune(
        tiny_data["train"], base=str(tiny_bert), method="fewshot", epochs=1, **FAST
    )
    assert model.config.method_details["trained_on_validation"] is True
    assert model.metrics["validation"]["held_out"] is False


def test_refusal_is_a_config_error(tiny_bert, tiny_data):
    from tuneforge.evaluation.calibration import validation_split

    model = tuneforge.tune(tiny_data["train"], base=str(tiny_bert), method="head", **FAST)
    with pytest.raises(ConfigError, match="no held-out rows"):
        validation_split(load_data(tiny_data["train"]), model.config)
