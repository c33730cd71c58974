"""Image decoding and image data sets: every failure names the file and says how to fix it."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from tuneforge.data.sampling import sample_shots
from tuneforge.data.split import stratified_split
from tuneforge.errors import DataError
from tuneforge.images.dataset import (
    ImageDataset,
    image_stats,
    load_images,
    overlap_warning,
    recognizes_images,
    validate_images,
)
from tuneforge.images.decode import (
    SUPPORTED_FORMATS,
    ImageError,
    file_digest,
    image_digest,
    open_image,
    source_digest,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "images"


def noise(width: int, height: int, seed: int = 0, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")
    return image.convert(mode) if mode != "RGB" else image


def save(image: Image.Image, path: Path, fmt: str | None = None, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, fmt, **kw)
    return path


def class_folders(root: Path, per_class: dict[str, int], size: int = 40) -> Path:
    seed = 0
    for label, n in per_class.items():
        for k in range(n):
            seed += 1
            save(noise(size, size, seed), root / label / f"{k}.png")
    return root


# --- decoding ---------------------------------------------------------------------------------


def test_exif_orientation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    path = save(noise(40, 20), tmp_path / "rotated.jpg", exif=exif.tobytes())
    image = open_image(path)
    assert image.size == (20, 40) and image.mode == "RGB"


def test_modes_become_rgb_and_alpha_is_composited_on_white(tmp_path):
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    rgba.putpixel((0, 0), (0, 0, 255, 255))
    out = open_image(save(rgba, tmp_path / "a.png"))
    assert out.mode == "RGB" and out.getpixel((1, 1)) == (255, 255, 255)
    assert out.getpixel((0, 0)) == (0, 0, 255)
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([10, 20, 30] * 256)
    assert open_image(save(palette, tmp_path / "p.png")).getpixel((0, 0)) == (10, 20, 30)
    grey16 = Image.fromarray(np.full((4, 4), 30000, np.uint16))
    assert open_image(save(grey16, tmp_path / "g16.png")).getpixel((0, 0)) == (117, 117, 117)
    assert open_image(save(noise(4, 4, mode="LA"), tmp_path / "la.png")).mode == "RGB"
    assert open_image(save(noise(4, 4, mode="CMYK"), tmp_path / "c.jpg")).mode == "RGB"
    buf = io.BytesIO()
    noise(5, 3).save(buf, "WEBP")
    assert open_image(buf.getvalue()).size == (5, 3)


def test_truncated_file_is_an_error_naming_it(tmp_path):
    full = save(noise(64, 64), tmp_path / "whole.jpg", quality=95).read_bytes()
    path = tmp_path / "cut.jpg"
    path.write_bytes(full[: len(full) // 2])
    with pytest.raises(ImageError, match=r"cut\.jpg: the image file is truncated"):
        open_image(path)
    with pytest.raises(DataError, match=r"upload\.jpg: the image file is truncated"):
        open_image(full[: len(full) // 2], name="upload.jpg")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_unsupported_format_lists_supported_ones(tmp_path):
    for fmt, suffix in (("GIF", "gif"), ("TIFF", "tif")):
        path = save(noise(8, 8), tmp_path / f"x.{suffix}", fmt)
        with pytest.raises(ImageError, match=rf"x\.{suffix}: {fmt} images are not supported") as e:
            open_image(path)
        assert "supported: BMP, JPEG, PNG, WEBP" in str(e.value)
    assert {"JPEG", "PNG", "WEBP", "BMP"} == SUPPORTED_FORMATS


def test_other_unusable_inputs(tmp_path):
    with pytest.raises(ImageError, match=r"the uploaded image: not an image"):
        open_image(b"hello, not a picture")
    with pytest.raises(ImageError, match=r"the uploaded image: the file is empty"):
        open_image(b"")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError, match=r"empty\.png: the file is empty \(0 bytes\)"):
        open_image(tmp_path / "empty.png")
    with pytest.raises(ImageError, match=r"nope\.png: file not found"):
        open_image(tmp_path / "nope.png")


def test_pixel_limit_is_checked_before_decoding(tmp_path, monkeypatch):
    path = save(noise(100, 100), tmp_path / "big.png")

    def no_decode(self):
        raise AssertionError("decoded before the pixel check")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decode)
    with pytest.raises(ImageError, match=r"big\.png: too many pixels \(100x100 = 10,000") as e:
        open_image(path, max_pixels=1000)
    assert "limit is 1,000" in str(e.value)


def test_digest_matches_lossless_copies_only(tmp_path):
    picture = noise(48, 32, seed=1)
    png = open_image(save(picture, tmp_path / "a.png"))
    bmp = open_image(save(picture, tmp_path / "a.bmp"))
    assert image_digest(png) == image_digest(bmp)
    assert image_digest(png) != image_digest(noise(48, 32, seed=2))
    assert file_digest(tmp_path / "a.png") != file_digest(tmp_path / "a.bmp")
    assert len(file_digest(tmp_path / "a.png")) == 40
    jpeg = save(picture, tmp_path / "a.jpg").read_bytes()
    assert source_digest(jpeg) == source_digest(tmp_path / "a.jpg")


# --- loading ----------------------------------------------------------------------------------


def test_fixture_class_folders():
    ds = load_images(FIXTURES)
    assert isinstance(ds, ImageDataset) and ds.label_names == ["blue", "red"]
    assert ds.class_counts() == {"blue": 3, "red": 3}
    assert all(Path(t).is_absolute() and Path(t).is_file() for t in ds.texts)
    assert ds.lines == [0] * 6 and ds.text_col == "image" and not ds.multi_label
    assert ds.paths[0].name == "blue_1.png" and ds.warnings == []
    warnings = validate_images(ds)
    assert len(warnings) == 1 and "4 image(s) have a shorter side under 32 px" in warnings[0]
    stats = image_stats(ds, decode_images=True)
    assert stats["rows"] == 6 and stats["classes"] == 2 and stats["duplicates"] == 0
    assert stats["class_counts"] == {"blue": 3, "red": 3} and stats["short_side_min"] == 8


def test_folder_recursion_hidden_and_non_image_files(tmp_path):
    root = class_folders(tmp_path / "photos", {"cat": 2, "dog": 2})
    save(noise(40, 40, 9), root / "cat" / "deeper" / "x.JPG", "JPEG")
    save(noise(40, 40, 9), root / "dog" / ".hidden.png")
    (root / "dog" / "notes.txt").write_text("hi")
    (root / "cat" / "Thumbs.db").write_text("junk")
    (root / "README.md").write_text("top-level files are ignored")
    (root / "__MACOSX" / "cat").mkdir(parents=True)
    (root / "__MACOSX" / "cat" / "._0.png").write_bytes(b"x")
    ds = load_images(root)
    names = [str(p.relative_to(root)) for p in ds.paths]
    assert names == ["cat/0.png", "cat/1.png", "cat/deeper/x.JPG", "dog/0.png", "dog/1.png"]
    assert ds.labels == ["cat", "cat", "cat", "dog", "dog"]
    assert len(ds.warnings) == 1 and "Skipped 2 non-image file(s)" in ds.warnings[0]


def test_folder_errors_and_unlabelled(tmp_path):
    root = class_folders(tmp_path / "photos", {"cat": 3, "dog": 1})
    with pytest.raises(DataError, match=r"class folder 'dog' has only 1 image") as e:
        load_images(root)
    assert str(root / "dog") in str(e.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: no images found.*one sub-folder per class"):
        load_images(tmp_path / "empty")
    flat = tmp_path / "flat"
    for k in range(3):
        save(noise(8, 8, k), flat / f"{k}.png")
    with pytest.raises(DataError, match=r"images are directly in the folder"):
        load_images(flat)
    ds = load_images(flat, require_labels=False)
    assert ds.labels is None and len(ds) == 3 and ds.label_names == []


def test_csv_and_jsonl_with_relative_paths(tmp_path):
    class_folders(tmp_path / "imgs", {"cat": 2, "dog": 2})
    absolute = tmp_path / "imgs" / "dog" / "1.png"
    (tmp_path / "d.csv").write_text(
        f"filename,category\nimgs/cat/0.png,cat\nimgs/cat/1.png,cat\nimgs/dog/0.png,dog\n"
        f"{absolute},dog\n"
    )
    ds = load_images(tmp_path / "d.csv")
    assert (ds.text_col, ds.label_col) == ("filename", "category")
    assert ds.lines == [2, 3, 4, 5] and ds.labels == ["cat", "cat", "dog", "dog"]
    assert ds.texts[0] == str(tmp_path / "imgs" / "cat" / "0.png") and ds.texts[3] == str(absolute)
    rows = [{"img": f"{k}.png", "label": label} for label in ("cat", "dog") for k in (0, 1)]
    sub = tmp_path / "imgs" / "cat"
    (sub / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows[:2]) + "\n")
    assert load_images(sub / "d.jsonl").lines == [1, 2]
    (tmp_path / "u.jsonl").write_text(json.dumps({"path": "imgs/cat/0.png"}) + "\n")
    unlabelled = load_images(tmp_path / "u.jsonl", require_labels=False)
    assert unlabelled.labels is None and unlabelled.paths[0].name == "0.png"


def test_table_errors_name_file_line_and_column(tmp_path):
    class_folders(tmp_path, {"cat": 2})
    csv = tmp_path / "d.csv"
    csv.write_text("image,label\ncat/0.png,cat\ncat/gone.png,cat\n,cat\n")
    with pytest.raises(
        DataError, match=r"d\.csv: empty image path in column 'image' at line\(s\) 4"
    ):
        load_images(csv)
    rows = "".join(f"cat/missing{k}.png,cat\n" for k in range(7))
    csv.write_text(f"image,label\ncat/0.png,cat\n{rows}")
    with pytest.raises(
        DataError, match=r"d\.csv: 7 image file\(s\) in column 'image' do not ex"
    ) as e:
        load_images(csv)
    assert "and 2 more" in str(e.value)
    csv.write_text("image,label\ncat/0.png,cat\ncat/1.png,\n")
    with pytest.raises(DataError, match=r"missing label in column 'label' at line\(s\) 3"):
        load_images(csv)
    with pytest.raises(DataError, match=r"Column 'pic' not found in d\.csv \(columns: image, lab"):
        load_images(csv, image_col="pic")
    csv.write_text("text,label\nhello there,a\n")
    with pytest.raises(DataError, match=r"cannot tell which column holds the image paths"):
        load_images(csv)


def test_validate_lists_every_bad_file(tmp_path):
    root = class_folders(tmp_path / "photos", {"cat": 3, "dog": 3})
    whole = (root / "cat" / "0.png").read_bytes()
    (root / "cat" / "0.png").write_bytes(whole[: len(whole) // 2])
    (root / "dog" / "1.png").write_bytes(b"not an image")
    save(noise(8, 8), root / "dog" / "2.png", "GIF")
    with pytest.raises(DataError, match=r"3 of 6 images in .*photos cannot be used") as e:
        validate_images(load_images(root))
    message = str(e.value)
    assert "cat/0.png: the image file is truncated" in message
    assert "dog/1.png: not an image" in message
    assert "dog/2.png: GIF images are not supported" in message


def test_duplicate_imbalance_and_overlap_warnings(tmp_path):
    root = class_folders(tmp_path / "photos", {"big": 31, "small": 2})
    picture = noise(40, 40, seed=1)
    save(picture, root / "small" / "copy.bmp")  # same pixels as big/0.png, another format
    ds = load_images(root)
    warnings = validate_images(ds, progress=True)
    text = "\n".join(warnings)
    assert "1 group(s) of duplicate images (1 extra copies)" in text
    assert "big/0.png = small/copy.bmp" in text
    assert "have different labels, e.g. big/0.png ('big') = small/copy.bmp ('small')" in text
    assert "Strong class imbalance: 'big' has 31 images, 'small' only 3" in text
    other = class_folders(tmp_path / "eval", {"big": 2})  # big/0.png and big/1.png again
    warning = overlap_warning(ds, load_images(other, require_labels=False), name="test")
    assert warning is not None and warning.startswith("2 of 2 test image(s) also appear")
    fresh = tmp_path / "fresh"
    save(noise(40, 40, seed=99), fresh / "a" / "0.png")
    save(noise(40, 40, seed=98), fresh / "a" / "1.png")
    assert overlap_warning(ds, load_images(fresh)) is None


def test_recognizes_images(tmp_path):
    assert recognizes_images(FIXTURES)
    flat = tmp_path / "flat"
    save(noise(8, 8), flat / "a.jpg")
    assert recognizes_images(flat)
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "a.txt").write_text("x")
    assert not recognizes_images(tmp_path / "texts")
    (tmp_path / "i.csv").write_text("label,image\ncat,\ncat,a/b.JPEG\n")
    assert recognizes_images(tmp_path / "i.csv")
    (tmp_path / "t.csv").write_text("text,label\nsee photo.jpg,a\n")
    assert not recognizes_images(tmp_path / "t.csv")
    (tmp_path / "f.csv").write_text("file,label\nreport.pdf,a\n")
    assert not recognizes_images(tmp_path / "f.csv")
    chat = {
        "messages": [{"role": "user", "content": "a.png"}, {"role": "assistant", "content": ""}]
    }
    (tmp_path / "chat.jsonl").write_text(json.dumps(chat) + "\n")
    assert not recognizes_images(tmp_path / "chat.jsonl")
    (tmp_path / "i.jsonl").write_text(json.dumps({"image_path": "x.webp", "label": "a"}) + "\n")
    assert recognizes_images(tmp_path / "i.jsonl")
    assert not recognizes_images(tmp_path / "nope.csv")


def test_subset_split_and_shots_keep_the_type():
    ds = load_images(FIXTURES)
    ds.warnings.append("kept")
    part = ds.subset([0, 3])
    assert isinstance(part, ImageDataset) and part.paths == [ds.paths[0], ds.paths[3]]
    assert (part.source, part.text_col, part.label_col, part.lines) == (
        ds.source,
        "image",
        ds.label_col,
        [0, 0],
    )
    assert part.warnings == ["kept"] and part.warnings is not ds.warnings
    train, held = stratified_split(ds, 0.34, seed=0)
    assert isinstance(train, ImageDataset) and isinstance(held, ImageDataset)
    assert sorted(held.labels) == ["blue", "red"] and len(train) == 4
    assert isinstance(sample_shots(ds, 1, seed=0), ImageDataset)
