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


def test_prune_and_distil(tuned, tiny_data, tmp_path):
    report = export_model(
        tuned.path,
        tmp_path / "pruned",
        prune_layers=1,
        distil_data=tiny_data["train"],
        distil_seconds=20,
        val=tiny_data["test"],
        force=True,
    )
    assert report.distillation["steps"] > 0
    assert report.distillation["loss_last"] < report.distillation["loss_first"]
    pruned = tuneforge.TunedModel.load(tmp_path / "pruned")
    assert len(pruned.predict(["refund my money"])) == 1
    # The source model is untouched by pruning.
    assert tuned.runtime.classifier.encoder.config.num_hidden_layers == 2


def test_prune_rejects_removing_every_layer(tuned, tiny_data, tmp_path):
    with pytest.raises(ConfigError, match="every layer"):
        export_model(
            tuned.path,
            tmp_path / "p",
            prune_layers=2,
            distil_data=tiny_data["train"],
            skip_gate=True,
        )
