"""An image model through the CLI: predict (files, folders, a CSV of paths), eval, calibrate,
the HTML report's image section, and explain's heatmap (which must light up where the class
signal is)."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

import tuneforge
from image_fakes import tiny_vit_dir
from tuneforge.artifact import CONFIG_FILE
from tuneforge.cli.app import _register, app

_register()
runner = CliRunner()

# grey pictures told apart only by the colour of one square somewhere in them
SQUARES = {"red": (220, 30, 30), "green": (30, 190, 40), "blue": (30, 60, 230)}
SIDE, SQUARE = 40, 14


def square_picture(colour, rng) -> tuple[Image.Image, Image.Image]:
    """The picture and a mask of its square (white on black)."""
    pixels = np.full((SIDE, SIDE, 3), 128.0) + rng.normal(0, 8, (SIDE, SIDE, 3))
    x, y = rng.integers(5, SIDE - SQUARE - 5, 2)
    pixels[y : y + SQUARE, x : x + SQUARE] = colour
    mask = np.zeros((SIDE, SIDE, 3), np.uint8)
    mask[y : y + SQUARE, x : x + SQUARE] = 255
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)), Image.fromarray(mask)


def square_folder(root, per_class: int, seed: int, masks=None):
    rng = np.random.default_rng(seed)
    for name, colour in SQUARES.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            picture, mask = square_picture(colour, rng)
            path = root / name / f"{name}{i}.{'png' if i % 2 else 'jpg'}"
            picture.save(path, quality=95)
            if masks is not None:
                masks[str(path)] = mask
    return root


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("squares")
    masks: dict = {}
    train = square_folder(root / "train", 16, seed=0)
    val = square_folder(root / "val", 6, seed=1)
    test = square_folder(root / "test", 6, seed=2, masks=masks)
    # a test set with mislabelled pictures: confident mistakes for the report
    mixed = root / "mixed"
    shutil.copytree(test, mixed)
    for k, (src, dst) in enumerate([("red", "blue"), ("red", "blue"), ("green", "red")]):
        moved = sorted((mixed / src).iterdir())[k]
        moved.rename(mixed / dst / f"wrong{k}{moved.suffix}")
    vit = tiny_vit_dir(root / "vit")
    model_dir = root / "model"
    tuneforge.tune(str(train), base=str(vit), method="head", progress=False, out=str(model_dir))
    names = ("root", "train", "val", "test", "mixed", "masks", "model")
    return dict(zip(names, (root, train, val, test, mixed, masks, model_dir), strict=True))


def ok(args: list[str]):
    result = runner.invoke(app, args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def test_predict_one_file(world):
    path = str(world["test"] / "blue" / "blue0.jpg")
    lines = ok(["predict", str(world["model"]), path]).output.strip().splitlines()
    assert len(lines) == 1
    label, score, shown, top = lines[0].split("\t")
    assert label == "blue" and 0.5 < float(score) <= 1 and shown == path
    assert top.startswith("[blue ") and "red" in top and "green" in top


def test_predict_several_files_and_a_folder(world):
    files = [str(world["test"] / "red" / "red0.jpg"), str(world["test"] / "green" / "green1.png")]
    out = ok(["predict", str(world["model"]), *files, str(world["test"] / "blue"), "--json"])
    rows = [json.loads(line) for line in out.output.strip().splitlines()]
    assert len(rows) == 2 + 6
    assert [r["image"] for r in rows[:2]] == files
    assert all(r["image"].startswith(str(world["test"] / "blue")) for r in rows[2:])
    assert [r["label"] for r in rows] == ["red", "green"] + ["blue"] * 6


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_predict_file_of_relative_image_paths_streams(world, tmp_path, suffix):
    files = sorted(world["test"].rglob("*.*"))
    relative = [f"../{p.parent.parent.name}/{p.parent.name}/{p.name}" for p in files]
    frame = pd.DataFrame({"id": range(len(relative)), "image": relative})
    folder = world["root"] / f"lists{suffix[1:]}"
    folder.mkdir(exist_ok=True)
    src = folder / f"list{suffix}"
    if suffix == ".csv":
        frame.to_csv(src, index=False)
    else:
        frame.to_json(src, orient="records", lines=True)
    out = tmp_path / f"scored{suffix}"
    args = ["predict", str(world["model"]), "--file", str(src), "--out", str(out)]
    ok([*args, "--chunk-rows", "5"])
    scored = pd.read_csv(out) if suffix == ".csv" else pd.read_json(out, lines=True)
    assert list(scored["id"]) == list(range(len(relative))) and list(scored["image"]) == relative
    expected = [r.split("/")[2] for r in relative]
    assert list(scored["label"]) == expected and scored["score"].between(0, 1).all()


def test_a_corrupt_or_missing_image_is_an_error_naming_it(world, tmp_path, monkeypatch, capsys):
    from tuneforge.cli.app import main

    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    monkeypatch.setattr(sys, "argv", ["tuneforge", "predict", str(world["model"]), str(bad)])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "broken.jpg" in err and "Traceback" not in err
    result = runner.invoke(app, ["predict", str(world["model"]), str(tmp_path / "gone.png")])
    assert result.exit_code != 0 and "gone.png" in str(result.exception)
    listing = tmp_path / "list.csv"
    listing.write_text(f"path\n{world['test'] / 'red' / 'red0.jpg'}\nbroken.jpg\n")
    result = runner.invoke(app, ["predict", str(world["model"]), "--file", str(listing)])
    assert "broken.jpg" in str(result.exception) and "row 2" in str(result.exception)


def test_eval_on_a_folder(world, tmp_path):
    out = ok(["eval", str(world["model"]), f"{world['test']}/", "--out", str(tmp_path / "m.json")])
    assert "n=18 images" in out.output and "macro-F1" in out.output
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["accuracy"] >= 0.8 and len(metrics["confusion"]) == 3


def test_report_has_an_image_section_in_one_small_file(world, tmp_path):
    out = tmp_path / "report.html"
    args = ["report", str(world["model"]), str(world["mixed"]), "--out", str(out)]
    printed = ok([*args, "--train", str(world["train"])]).output
    assert "mistakes" in printed and "with heatmaps" in printed
    html = out.read_text()
    assert '<section id="images">' in html and "Most confused pairs" in html
    for name in ("wrong0", "wrong1", "wrong2"):  # the mislabelled pictures are the mistakes
        assert name in html
    assert html.count('src="data:image/jpeg;base64,') >= 3 + 3 + 2 * 3  # mistakes, pairs, heatmaps
    assert 'src="http' not in html and "<link" not in html  # self-contained
    assert out.stat().st_size < 400_000
    assert '<section id="per-class">' in html and '<section id="calibration">' in html
    assert "no test picture is in training" in html


def test_report_caps_the_thumbnails(world):
    from tuneforge.evaluation.report import ReportOptions, build_report

    model = tuneforge.TunedModel.load(world["model"])
    test = model.task.load_for(model, world["mixed"])
    opts = ReportOptions(image_mistakes=2, image_pairs=1, images_per_pair=1, image_heatmaps=1)
    section = build_report(model, test, opts).sections["images"]
    assert section["errors"] >= 3
    assert len(section["mistakes"]) == 2 and len(section["heatmaps"]) == 1
    assert len(section["pairs"]) == 1 and len(section["pairs"][0]["examples"]) == 1


def test_explain_writes_a_heatmap_png_of_the_input_size(world, tmp_path):
    path = str(world["test"] / "green" / "green0.jpg")
    out = tmp_path / "heat.png"
    printed = ok(["explain", str(world["model"]), path, "--out", str(out), "--steps", "16"])
    assert "green" in printed.output and "integrated_gradients" in printed.output
    heat = np.asarray(Image.open(out).convert("RGB"), dtype=np.float64)
    assert heat.shape == (32, 32, 3)  # the tiny ViT's input
    assert heat.std() > 5 and np.abs(np.diff(heat, axis=2)).max() > 20  # coloured, not flat
    both = tmp_path / "both"
    args = ["explain", str(world["model"]), path, path, "--out", str(both), "--side-by-side"]
    lines = ok([*args, "--json", "--label", "red"]).output.strip().splitlines()
    found = [json.loads(line) for line in lines]
    assert [f["label"] for f in found] == ["red", "red"] and found[0]["predicted"] == "green"
    written = sorted(both.iterdir())
    assert len(written) == 2 and Image.open(written[0]).width > 32


def test_attributions_concentrate_on_the_coloured_square(world):
    from tuneforge.evaluation.image_explain import explain_image, heat
    from tuneforge.images.transforms import ImageTransformConfig, eval_transform

    model = tuneforge.TunedModel.load(world["model"])
    cfg = model.tokenizer.transform
    plain = ImageTransformConfig(**{**cfg.model_dump(), "mean": (0, 0, 0), "std": (1, 1, 1)})
    inside_wins, cases = 0, list(world["masks"].items())[::3]
    for k, (path, mask) in enumerate(cases):
        # occlusion (forward passes only: any runtime) on a few, integrated gradients on all
        method = "occlusion" if k % 3 == 0 else "integrated_gradients"
        exp = explain_image(model, path, method=method, n_steps=16)
        assert exp.method == method
        square = eval_transform(mask, plain)[0].numpy() > 0.5
        assert square.any() and exp.weights.shape == square.shape
        inside, outside = exp.weights[square].mean(), exp.weights[~square].mean()
        inside_wins += inside > outside
        assert heat(exp.weights)[square].mean() > heat(exp.weights)[~square].mean()
    assert inside_wins == len(cases)


def test_calibrate_an_image_model_on_a_validation_folder(world, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(world["model"], copy)
    args = ["calibrate", str(copy), str(world["val"]), "--target-accuracy", "0.8"]
    printed = ok(args).output
    assert "temperature" in printed and "on 18 rows" in printed and "abstain below" in printed
    saved = yaml.safe_load((copy / CONFIG_FILE).read_text())["calibration"]
    assert saved["temperature"] != 1.0 and saved["abstain_threshold"] is not None
    lines = ok(["predict", str(copy), str(world["test"] / "red" / "red1.png")]).output
    assert lines.split("\t")[0] in ("red", saved.get("abstain_label", "abstain"))
