"""ONNX export of image models: fp32 parity with PyTorch (a tiny ViT and a tiny EfficientNet-Lite),
loading back through `TunedModel.load` with the same processor, static int8 calibrated on
pictures behind the same accuracy gate, and clear errors for unusable data."""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import pytest
import yaml

import tuneforge
from image_fakes import tiny_vit_dir, train_and_test_pictures
from tuneforge.errors import ConfigError, DataError
from tuneforge.export import export_model
from tuneforge.export.exporter import AccuracyGateError

# fp32 ONNX is the same arithmetic in another kernel order (the source runs fp32 here)
FP32_LOGIT_ATOL = 1e-4
INT8_MIN_AGREEMENT = 0.8
HEAD = dict(method="head", progress=False, task_options={"precision": "fp32"})


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    return train_and_test_pictures(tmp_path_factory.mktemp("pictures"))


@pytest.fixture(scope="module")
def files(pictures):
    return sorted(str(p) for p in pictures["test"].rglob("*.*"))


@pytest.fixture(scope="module")
def vit_model(pictures, tmp_path_factory):
    base = tiny_vit_dir(tmp_path_factory.mktemp("vit") / "vit")
    out = tmp_path_factory.mktemp("vit-model") / "m"
    return tuneforge.tune(str(pictures["train"]), base=str(base), out=out, **HEAD)


@pytest.fixture(scope="module")
def lite_model(pictures, tmp_path_factory):
    """EfficientNet-Lite0 with random weights at 32 px (the ImageNet ones are not needed)."""
    pytest.importorskip("efficientnet_lite_pytorch")
    import tuneforge.models.vision as vision

    out = tmp_path_factory.mktemp("lite-model") / "m"
    (out.parent / "none.pth").write_bytes(b"")  # what `head`'s embedding cache fingerprints
    with pytest.MonkeyPatch.context() as mp:
        tiny = lambda base: vision.load_lite(base.name, None, image_size=32)  # noqa: E731
        mp.setattr(vision, "load_backbone", tiny)
        mp.setattr(vision, "lite_weights_path", lambda variant: out.parent / "none.pth")
        return tuneforge.tune(
            str(pictures["train"]), base="efficientnet-lite0", out=out,
            **{**HEAD, "task_options": {"image_size": 32, "precision": "fp32"}},
        )  # fmt: skip


@pytest.mark.parametrize("which", ["vit_model", "lite_model"])
def test_fp32_export_matches_torch(which, request, pictures, files, tmp_path):
    model = request.getfixturevalue(which)
    report = export_model(model.path, tmp_path / "onnx", val=pictures["test"])
    assert report.gate["passed"] and report.gate["loss_points"] == 0
    assert report.parity["label_agreement"] == 1.0
    graph = onnx.load(str(tmp_path / "onnx" / "model.onnx")).graph
    (pixels,) = graph.input
    dims = [d.dim_param or d.dim_value for d in pixels.type.tensor_type.shape.dim]
    assert pixels.name == "pixel_values" and dims == ["batch", 3, 32, 32]
    assert [o.name for o in graph.output] == ["logits", "embedding"]

    exported = tuneforge.TunedModel.load(tmp_path / "onnx")
    assert type(exported.runtime).__name__ == "OnnxRuntime"
    assert exported.tokenizer.transform == model.tokenizer.transform  # the evaluation transform
    np.testing.assert_allclose(exported.logits(files), model.logits(files), atol=FP32_LOGIT_ATOL)
    np.testing.assert_allclose(exported.embed(files), model.embed(files), atol=FP32_LOGIT_ATOL)
    as_bytes = [open(f, "rb").read() for f in files[:4]]  # noqa: SIM115
    labels = [p.label for p in model.predict(files)]
    assert [p.label for p in exported.predict(files)] == labels
    assert [p.label for p in exported.predict(as_bytes)] == labels[:4]
    config = yaml.safe_load((tmp_path / "onnx" / "tuneforge.yaml").read_text())
    assert config["runtime"] == "onnx" and config["task"] == "image-classification"
    assert not (tmp_path / "onnx" / "encoder" / "model.safetensors").exists()


def test_a_bf16_model_is_gated_against_its_fp32_arithmetic(vit_model, pictures, tmp_path):
    classifier = vit_model.runtime.classifier
    classifier.precision = "bf16"
    try:
        report = export_model(vit_model, tmp_path / "onnx", val=pictures["test"])
    finally:
        classifier.precision = "fp32"
    assert classifier.precision == "fp32"
    assert report.gate["source_precision"] == "fp32"
    assert report.parity["max_abs_logit_diff"] < FP32_LOGIT_ATOL  # no bf16 rounding compared


def test_int8_is_static_calibrated_on_pictures_and_agrees(lite_model, pictures, files, tmp_path):
    fp32 = export_model(lite_model.path, tmp_path / "fp32", skip_gate=True)
    report = export_model(
        lite_model.path, tmp_path / "int8", quantize="int8", calibrate=pictures["train"],
        val=pictures["test"], max_loss=100,
    )  # fmt: skip
    cal = report.calibration
    assert cal["inputs"] == 36 and cal["method"] == "minmax" and not cal["from_val"]
    assert cal["keep_fp32"] == ["head"] and cal["fp32_nodes"] == 1
    assert report.size_mb < fp32.size_mb / 2
    ops = {n.op_type for n in onnx.load(str(tmp_path / "int8" / "model.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # QDQ
    int8 = tuneforge.TunedModel.load(tmp_path / "int8")
    pairs = zip(int8.predict(files), lite_model.predict(files), strict=True)
    same = np.mean([a.label == b.label for a, b in pairs])
    assert same >= INT8_MIN_AGREEMENT
    assert report.parity["label_agreement"] >= INT8_MIN_AGREEMENT
    saved = yaml.safe_load((tmp_path / "int8" / "tuneforge.yaml").read_text())
    assert saved["export"]["calibration"]["inputs"] == 36


def test_int8_calibrates_on_val_without_calibrate_and_vit_works_too(vit_model, pictures, tmp_path):
    report = export_model(
        vit_model.path, tmp_path / "int8", quantize="int8", val=pictures["test"], max_loss=100
    )
    assert report.calibration["from_val"] and report.calibration["inputs"] == 18
    assert report.gate["accuracy_export"] > 0.5


def test_int8_gate_refuses_and_writes_nothing(lite_model, pictures, tmp_path):
    with pytest.raises(AccuracyGateError, match="Nothing was written"):
        export_model(
            lite_model.path, tmp_path / "refused", quantize="int8", calibrate=pictures["train"],
            val=pictures["test"], max_loss=-1,
        )  # fmt: skip
    assert not (tmp_path / "refused").exists()
    forced = export_model(
        lite_model.path, tmp_path / "forced", quantize="int8", calibrate=pictures["train"],
        val=pictures["test"], max_loss=-1, force=True,
    )  # fmt: skip
    assert forced.gate["forced"] and not forced.gate["passed"]


def test_int8_without_pictures_to_calibrate_on_is_refused(vit_model, tmp_path):
    with pytest.raises(ConfigError, match="--calibrate"):
        export_model(vit_model.path, tmp_path / "x", quantize="int8", skip_gate=True)
    with pytest.raises(ConfigError, match="--calibration"):
        export_model(vit_model.path, tmp_path / "x", quantize="int8", skip_gate=True,
                     calibrate=tmp_path, calibration_method="best")  # fmt: skip


def test_skip_gate_still_measures_parity_on_calibration_pictures(vit_model, pictures, tmp_path):
    report = export_model(
        vit_model.path, tmp_path / "int8", quantize="int8", calibrate=pictures["train"],
        skip_gate=True,
    )  # fmt: skip
    assert not report.gate and report.parity["rows"] > 0


def test_a_bad_val_is_a_clear_error(vit_model, pictures, tmp_path):
    (tmp_path / "texts.csv").write_text("text,label\nhello,red\nbye,blue\n")
    with pytest.raises(DataError, match=r"--val: .*texts.csv.*image paths"):
        export_model(vit_model.path, tmp_path / "a", val=tmp_path / "texts.csv")
    (tmp_path / "notes" / "red").mkdir(parents=True)
    (tmp_path / "notes" / "red" / "a.txt").write_text("not a picture")
    with pytest.raises(DataError, match=r"--val: .*no images found"):
        export_model(vit_model.path, tmp_path / "b", val=tmp_path / "notes")
    renamed = tmp_path / "other"
    (renamed / "purple").mkdir(parents=True)
    for p in sorted((pictures["test"] / "red").iterdir())[:2]:
        (renamed / "purple" / p.name).write_bytes(p.read_bytes())
    (renamed / "red").mkdir()
    (renamed / "red" / "x.png").write_bytes(b"broken")
    (renamed / "red" / "y.png").write_bytes(b"broken too")
    with pytest.raises(DataError, match="labels the model does not know: purple"):
        export_model(vit_model.path, tmp_path / "c", val=renamed)
    shutil.rmtree(renamed / "purple")
    with pytest.raises(DataError, match="image"):  # undecodable: stops before exporting
        export_model(vit_model.path, tmp_path / "d", val=renamed)
    assert not any((tmp_path / d).exists() for d in "abcd")


def test_calibrate_is_for_image_models(tiny_model_dir, tmp_path):
    with pytest.raises(ConfigError, match="dynamically"):
        export_model(tiny_model_dir, tmp_path / "x", quantize="int8", skip_gate=True,
                     calibrate=tmp_path)  # fmt: skip


def test_the_export_verb_calibrates_an_image_model(lite_model, pictures, tmp_path):
    from typer.testing import CliRunner

    from tuneforge.cli.app import _register, app

    _register()
    out = tmp_path / "int8"
    found = CliRunner().invoke(app, [
        "export", str(lite_model.path), "--quantize", "int8", "--calibrate",
        str(pictures["train"]), "--val", str(pictures["test"]), "--max-loss", "100",
        "--out", str(out),
    ])  # fmt: skip
    assert found.exit_code == 0, found.output
    assert "Calibrated (minmax) on 36 of" in found.output and f"Wrote {out}" in found.output
    picture = str(sorted((pictures["test"] / "red").iterdir())[0])
    assert tuneforge.TunedModel.load(out).predict([picture])[0].label in lite_model.labels
