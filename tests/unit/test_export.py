"""ONNX export: parity with PyTorch, int8 quantization, accuracy gate, pruning + distillation."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

import tuneforge
from tuneforge.errors import ConfigError
from tuneforge.export import export_model
from tuneforge.export.exporter import AccuracyGateError

# Stated tolerances: fp32 ONNX is the same arithmetic in another kernel order; int8 is not.
FP32_LOGIT_ATOL = 1e-4
INT8_MIN_AGREEMENT = 0.9


@pytest.fixture(scope="module")
def tuned(tiny_model_dir):
    return tuneforge.TunedModel.load(tiny_model_dir)


def test_fp32_export_matches_torch(tuned, tiny_data, tmp_path):
    report = export_model(tuned.path, tmp_path / "onnx", val=tiny_data["test"])
    exported = tuneforge.TunedModel.load(tmp_path / "onnx")
    assert type(exported.runtime).__name__ == "OnnxRuntime"
    texts = ["my card has not arrived", "refund my money please", "send a sepa transfer", "i"]
    np.testing.assert_allclose(exported.logits(texts), tuned.logits(texts), atol=FP32_LOGIT_ATOL)
    np.testing.assert_allclose(exported.embed(texts), tuned.embed(texts), atol=FP32_LOGIT_ATOL)
    assert [p.label for p in exported.predict(texts)] == [p.label for p in tuned.predict(texts)]
    assert report.gate["passed"] and report.gate["loss_points"] == 0
    config = yaml.safe_load((tmp_path / "onnx" / "tuneforge.yaml").read_text())
    assert config["runtime"] == "onnx"
    assert config["export"]["gate"]["accuracy_source"] == report.gate["accuracy_source"]
    assert not (tmp_path / "onnx" / "encoder" / "model.safetensors").exists()


def test_int8_export_is_smaller_and_agrees(tuned, tiny_data, tmp_path):
    fp32 = export_model(tuned.path, tmp_path / "fp32", skip_gate=True)
    int8 = export_model(
        tuned.path, tmp_path / "int8", quantize="int8", val=tiny_data["test"], max_loss=100
    )
    assert int8.size_mb < fp32.size_mb
    assert int8.parity["label_agreement"] >= INT8_MIN_AGREEMENT
    assert int8.parity["embedding_cosine_mean"] > 0.9
    assert int8.gate["accuracy_export"] > 0.5


def test_gate_refuses_and_writes_nothing(tuned, tiny_data, tmp_path):
    # max_loss below zero cannot be met: the gate must refuse and leave no directory behind.
    with pytest.raises(AccuracyGateError, match="Nothing was written"):
        export_model(tuned.path, tmp_path / "refused", val=tiny_data["test"], max_loss=-1)
    assert not (tmp_path / "refused").exists()
    forced = export_model(
        tuned.path, tmp_path / "forced", val=tiny_data["test"], max_loss=-1, force=True
    )
    assert forced.gate["forced"] and not forced.gate["passed"]


def test_gate_needs_validation_data(tuned, tmp_path):
    with pytest.raises(ConfigError, match="--val"):
        export_model(tuned.path, tmp_path / "x")


def test_prune_and_retune_on_labelled_data(tuned, tiny_data, tmp_path):
    report = export_model(
        tuned.path,
        tmp_path / "pruned",
        prune_layers=1,
        distil_data=tiny_data["train"],
        distil_seconds=20,
        val=tiny_data["test"],
        force=True,
    )
    d = report.distillation
    assert d["labelled"] and d["steps"] == d["planned_steps"] > 0
    assert d["loss_last"] < d["loss_first"]
    pruned = tuneforge.TunedModel.load(tmp_path / "pruned")
    assert len(pruned.predict(["refund my money"])) == 1
    saved = yaml.safe_load((tmp_path / "pruned" / "tuneforge.yaml").read_text())
    assert saved["export"]["prune_layers"] == 1 and saved["export"]["distillation"]["steps"] > 0
    # The source model is untouched by pruning.
    assert tuned.runtime.classifier.encoder.config.num_hidden_layers == 2


def test_prune_retunes_on_texts_alone_within_the_time_cap(tuned, tiny_data, tmp_path):
    import pandas as pd

    texts_only = tmp_path / "texts.csv"
    pd.read_csv(tiny_data["train"])[["text"]].to_csv(texts_only, index=False)
    report = export_model(
        tuned.path,
        tmp_path / "p",
        prune_layers=1,
        distil_data=texts_only,
        distil_seconds=0,
        skip_gate=True,
    )
    assert not report.distillation["labelled"]
    assert report.distillation["steps"] == 1 < report.distillation["planned_steps"]


def test_pruning_keeps_a_spread_of_layers_with_the_first_and_last():
    from tuneforge.export.prune import kept_layers

    assert kept_layers(6, 2) == [0, 2, 3, 5]
    assert kept_layers(12, 6) == [0, 2, 4, 7, 9, 11]
    assert kept_layers(2, 1) == [0]
    with pytest.raises(ConfigError, match="at most 5"):
        kept_layers(6, 6)


def test_retune_labels_must_be_the_models(tuned, tmp_path):
    import torch

    from tuneforge.export.prune import label_targets

    names = tuned.labels
    assert torch.equal(label_targets([names[1], names[0]], names, False, "f"), torch.tensor([1, 0]))
    hot = label_targets([[names[0], names[1]], []], names, True, "f")
    assert hot.tolist()[0][:2] == [1.0, 1.0] and hot[1].sum() == 0
    assert label_targets(None, names, False, "f") is None
    with pytest.raises(ConfigError, match=r"train\.csv: labels the model does not know: nope"):
        label_targets(["nope"], names, False, "train.csv")


def test_prune_rejects_removing_every_layer(tuned, tiny_data, tmp_path):
    with pytest.raises(ConfigError, match="every layer"):
        export_model(
            tuned.path,
            tmp_path / "p",
            prune_layers=2,
            distil_data=tiny_data["train"],
            skip_gate=True,
        )


def test_served_onnx_threads_sleep_instead_of_spinning(monkeypatch):
    """The server turns spinning off (its event loop needs that CPU); other uses keep it."""
    from tuneforge.export.onnx_runtime import session_options
    from tuneforge.serving.models import BatchSettings
    from tuneforge.serving.server import load_repository

    key = "session.intra_op.allow_spinning"
    monkeypatch.delenv("TUNEFORGE_ORT_SPIN", raising=False)
    with pytest.raises(RuntimeError, match="does not have configuration"):
        session_options(1).get_session_config_entry(key)
    load_repository([], BatchSettings())
    assert session_options(1).get_session_config_entry(key) == "0"
