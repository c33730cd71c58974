"""`ImageDataset` and `load_images`: image paths and labels from class folders, CSV or JSONL.

Loading only lists and checks paths (fast on 10,000 files); `validate_images` decodes every
image once, reports all unusable files in one error and warns about duplicates, tiny images,
class imbalance and train/eval overlap.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import lru_cache, partial
from pathlib import Path

import pandas as pd

from tuneforge.data.dataset import LABEL_NAMES, TEXT_NAMES, TextDataset, pick_label_column
from tuneforge.data.readers import FORMATS, read_frame
from tuneforge.data.validate import IMBALANCE_RATIO
from tuneforge.errors import DataError
from tuneforge.images.decode import (
    DEFAULT_MAX_PIXELS,
    DIGEST_DRAFT,
    ImageError,
    decode,
    image_digest,
)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
IMAGE_NAMES = ("image", "image_path", "path", "file", "filename", "img")
TINY_SIDE = 32
SKIPPED_DIRS = frozenset({"__MACOSX", "__pycache__"})  # zip and Python debris, never classes
_PEEK = 20  # entries looked at by recognizes_images


@dataclass
class ImageDataset(TextDataset):
    """Image paths (absolute strings in `texts`) with labels and where each came from.

    `lines` are the 1-based source lines of a CSV/JSONL file, or 0 for images from folders.
    """

    text_col: str = "image"

    @property
    def paths(self) -> list[Path]:
        return [Path(t) for t in self.texts]

    def subset(self, indices: list[int]) -> ImageDataset:
        """These rows; unlike a text subset, the load warnings go with them."""
        return replace(super().subset(indices), warnings=list(self.warnings))


def load_images(
    path: str | Path,
    image_col: str | None = None,
    label_col: str | None = None,
    require_labels: bool = True,
) -> ImageDataset:
    """Class folders (`photos/<class>/*.jpg`), a folder of images (unlabelled), or a CSV/JSONL
    with an image-path column (paths relative to the file's folder). Images are not decoded."""
    path = Path(path)
    if path.is_dir():
        return _load_folder(path, require_labels)
    return _load_table(path, image_col, label_col, require_labels)


# --- folders ---------------------------------------------------------------------------------


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def _visible(name: str) -> bool:
    return not name.startswith(".") and name not in SKIPPED_DIRS


def _walk(folder: Path) -> tuple[list[Path], list[Path]]:
    """(image files, other files) under `folder`, recursively, sorted, hidden ones skipped."""
    images, others = [], []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if _visible(d))
        for name in sorted(files):
            if _visible(name):
                (images if _is_image_name(name) else others).append(Path(root) / name)
    return sorted(images), others


def _load_folder(folder: Path, require_labels: bool) -> ImageDataset:
    with os.scandir(folder) as it:
        entries = sorted((e for e in it if _visible(e.name)), key=lambda e: e.name)
    loose = [Path(e.path) for e in entries if e.is_file() and _is_image_name(e.name)]
    subdirs = [Path(e.path) for e in entries if e.is_dir()]
    source = str(folder)
    if loose and not require_labels:
        images, _ = _walk(folder)
        return ImageDataset(
            texts=[os.path.abspath(p) for p in images],
            labels=None,
            source=source,
            lines=[0] * len(images),
        )
    texts, labels, warnings, skipped, empty = [], [], [], [], []
    for sub in subdirs:
        images, others = _walk(sub)
        skipped += others
        if not images:
            empty.append(sub.name)
            continue
        if len(images) < 2 and require_labels:
            raise DataError(
                f"{sub}: class folder '{sub.name}' has only {len(images)} image. A class needs "
                "at least 2 images (more is much better): add some, or remove the folder."
            )
        texts += [os.path.abspath(p) for p in images]
        labels += [sub.name] * len(images)
    if not texts:
        raise DataError(
            f"{folder}: no images found"
            + (" in sub-folders (the images are directly in the folder)" if loose else "")
            + ". Expected one sub-folder per class holding its images, e.g. "
            f"{folder.name}/cat/001.jpg, {folder.name}/dog/002.png "
            f"(image files end in {', '.join(IMAGE_SUFFIXES)}), or a CSV/JSONL file with "
            "image-path and label columns."
            + ("" if require_labels else " Unlabelled images may also sit directly in it.")
        )
    if loose:
        warnings.append(
            f"{len(loose)} image(s) directly in {folder} (not in a class folder) were skipped, "
            f"e.g. {loose[0].name}. Move them into the folder of their class."
        )
    if skipped:
        warnings.append(
            f"Skipped {len(skipped)} non-image file(s) in the class folders of {folder}, e.g. "
            f"{skipped[0].relative_to(folder)} (images must end in "
            f"{', '.join(IMAGE_SUFFIXES)})."
        )
    if empty:
        warnings.append(
            f"Sub-folder(s) without images were skipped: {', '.join(empty[:5])}"
            + (" ..." if len(empty) > 5 else "")
            + "."
        )
    return ImageDataset(
        texts=texts, labels=labels, source=source, lines=[0] * len(texts), warnings=warnings
    )


# --- CSV / JSONL -----------------------------------------------------------------------------


def _source_lines(path: Path, rows: int) -> list[int]:
    """1-based line of each row: CSV/TSV have a header; JSONL may have blank lines."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt == "jsonl":
        with open(path, encoding="utf-8", errors="replace") as fh:
            lines = [n for n, line in enumerate(fh, 1) if line.strip()]
        if len(lines) == rows:
            return lines
        return list(range(1, rows + 1))
    if fmt == "parquet":
        return list(range(1, rows + 1))
    return list(range(2, rows + 2))


def _lines_text(lines: list[int], limit: int = 5) -> str:
    shown = ", ".join(str(x) for x in lines[:limit])
    return shown + (f" and {len(lines) - limit} more" if len(lines) > limit else "")


def _looks_like_images(values: Iterable) -> bool:
    seen = [v.strip() for v in values if isinstance(v, str) and v.strip()][:_PEEK]
    return bool(seen) and all(_is_image_name(v) and "\n" not in v for v in seen)


def _find_image_column(frame: pd.DataFrame) -> str | None:
    by_name = {str(c).lower(): c for c in frame.columns}
    for name in IMAGE_NAMES:
        if name in by_name:
            return by_name[name]
    for col in frame.columns:  # else a column of image file names, but never a text or label one
        if str(col).lower() in TEXT_NAMES or str(col).lower() in LABEL_NAMES:
            continue
        if _looks_like_images(frame[col].head(_PEEK * 5).tolist()):
            return col
    return None


def image_column(frame: pd.DataFrame, path: Path, image_col: str | None = None) -> str:
    """`image_col` (checked), else the column that holds the image paths; errors list the
    columns."""
    columns = ", ".join(map(str, frame.columns))
    if image_col is not None:
        if image_col not in frame.columns:
            raise DataError(
                f"Column '{image_col}' not found in {Path(path).name} (columns: {columns}). "
                "Pass --image-col with one of them."
            )
        return image_col
    found = _find_image_column(frame)
    if found is None:
        raise DataError(
            f"{path}: cannot tell which column holds the image paths (columns: {columns}). "
            f"Name it one of {', '.join(IMAGE_NAMES)}, or pass --image-col NAME."
        )
    return found


def _load_table(
    path: Path, image_col: str | None, label_col: str | None, require_labels: bool
) -> ImageDataset:
    frame = read_frame(path)
    if frame.empty:
        raise DataError(f"{path}: no data rows. The file needs a header and at least one row.")
    image_col = image_column(frame, path, image_col)
    label_col = pick_label_column(frame, path, image_col, label_col, required=require_labels)
    lines = _source_lines(path, len(frame))
    raw = [v.strip() for v in frame[image_col].tolist()]
    empty = [line for line, v in zip(lines, raw, strict=True) if not v]
    if empty:
        raise DataError(
            f"{path}: empty image path in column '{image_col}' at line(s) {_lines_text(empty)}. "
            "Fill them in or delete those rows."
        )
    urls = [line for line, v in zip(lines, raw, strict=True) if "://" in v]
    if urls:
        raise DataError(
            f"{path}: column '{image_col}' holds URLs at line(s) {_lines_text(urls)}; only local "
            "files are read. Download the images and put their paths in the file."
        )
    base = path.parent
    texts = [os.path.abspath(base / Path(v).expanduser()) for v in raw]
    missing = [
        (line, v) for line, v, p in zip(lines, raw, texts, strict=True) if not os.path.isfile(p)
    ]
    if missing:
        shown = "; ".join(f"line {line}: {v}" for line, v in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise DataError(
            f"{path}: {len(missing)} image file(s) in column '{image_col}' do not exist: "
            f"{shown}{more}. Relative paths are read from the file's folder "
            f"({os.path.abspath(base)}); fix the paths or delete those rows."
        )
    labels = None
    if label_col is not None:
        labels = [str(v).strip() for v in frame[label_col].tolist()]
        no_label = [line for line, lab in zip(lines, labels, strict=True) if not lab]
        if no_label:
            raise DataError(
                f"{path}: missing label in column '{label_col}' at line(s) "
                f"{_lines_text(no_label)}. Add a label or delete those rows "
                "(for unlabelled images use `tuneforge predict`)."
            )
    return ImageDataset(
        texts=texts,
        labels=labels,
        source=str(path),
        lines=lines,
        text_col=image_col,
        label_col=label_col,
    )


# --- decoding checks -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Info:
    digest: str | None = None
    size: tuple[int, int] = (0, 0)  # stored width, height
    error: ImageError | None = None


@lru_cache(maxsize=200_000)
def _inspect_cached(path: str, mtime_ns: int, nbytes: int, max_pixels: int) -> _Info:
    try:
        image, size = decode(path, max_pixels=max_pixels, draft=DIGEST_DRAFT)
    except ImageError as exc:
        return _Info(error=exc)
    return _Info(digest=image_digest(image), size=size)


def _inspect(path: str, max_pixels: int) -> _Info:
    """Decode once (cached by path, mtime and size): validation, overlap and stats share it."""
    try:
        st = os.stat(path)
    except OSError:
        return _Info(error=ImageError(path, "file not found", "Check the path."))
    return _inspect_cached(path, st.st_mtime_ns, st.st_size, max_pixels)


def _inspect_all(
    paths: list[str], max_pixels: int, progress: bool = False, what: str = "check images"
) -> list[_Info]:
    workers = max(1, min(4, os.cpu_count() or 1))  # PIL decodes without the GIL
    work = partial(_inspect, max_pixels=max_pixels)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(work, paths)
        if not progress:
            return list(results)
        # rich directly: tuneforge.training.progress would import torch (~2 s) for its console
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        out = []
        with Progress(
            TextColumn(f"[bold]{what}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        ) as bar:
            task = bar.add_task(what, total=len(paths))
            for info in results:
                out.append(info)
                bar.advance(task)
        return out


def _shown(ds: ImageDataset, i: int) -> str:
    """A path short enough to read: relative to the data folder (or the CSV's folder)."""
    src = Path(ds.source)
    base = src if src.is_dir() else src.parent
    try:
        text = os.path.relpath(ds.texts[i], base)
        if text.startswith(".."):
            text = ds.texts[i]
    except ValueError:  # another drive on Windows
        text = ds.texts[i]
    return text + (f" (line {ds.lines[i]})" if ds.lines[i] else "")


def validate_images(
    ds: ImageDataset, max_pixels: int = DEFAULT_MAX_PIXELS, progress: bool = False
) -> list[str]:
    """Decode every image; raise one DataError listing unusable files, else return warnings."""
    infos = _inspect_all(ds.texts, max_pixels, progress)
    bad = [(i, info.error) for i, info in enumerate(infos) if info.error is not None]
    if bad:
        listed = "\n".join(f"  - {_shown(ds, i)}: {err.reason}" for i, err in bad[:10])
        more = f"\n  ... and {len(bad) - 10} more" if len(bad) > 10 else ""
        raise DataError(
            f"{len(bad)} of {len(ds)} images in {ds.source} cannot be used:\n{listed}{more}\n"
            "Re-export or replace those files, or remove them (or their rows)."
        )
    out = _duplicate_warnings(ds, infos)
    tiny = [i for i, info in enumerate(infos) if min(info.size) < TINY_SIDE]
    if tiny:
        w, h = infos[tiny[0]].size
        out.append(
            f"{len(tiny)} image(s) have a shorter side under {TINY_SIDE} px, e.g. "
            f"{_shown(ds, tiny[0])} ({w}x{h}). They will be upscaled to the model's input "
            "size, which blurs them; use larger images if you have them."
        )
    counts = ds.class_counts()
    if counts and max(counts.values()) / min(counts.values()) > IMBALANCE_RATIO:
        (big, n_big), (small, n_small) = counts.most_common()[0], counts.most_common()[-1]
        out.append(
            f"Strong class imbalance: '{big}' has {n_big} images, '{small}' only {n_small}. "
            "Class weights are applied; consider collecting more of the rare classes."
        )
    return out


def _duplicate_warnings(ds: ImageDataset, infos: list[_Info]) -> list[str]:
    groups: dict[str, list[int]] = defaultdict(list)
    for i, info in enumerate(infos):
        groups[info.digest].append(i)
    dups = [ix for ix in groups.values() if len(ix) > 1]
    if not dups:
        return []
    pairs = "; ".join(f"{_shown(ds, ix[0])} = {_shown(ds, ix[1])}" for ix in dups[:2])
    out = [
        f"{len(dups)} group(s) of duplicate images ({sum(len(ix) - 1 for ix in dups)} extra "
        f"copies) in {ds.source}, e.g. {pairs}. Duplicates over-weight those pictures."
    ]
    if ds.labels is not None:
        conflicts = [ix for ix in dups if len({ds.labels[i] for i in ix}) > 1]
        if conflicts:
            first = conflicts[0][0]
            other = next(i for i in conflicts[0] if ds.labels[i] != ds.labels[first])
            out.append(
                f"{len(conflicts)} duplicate group(s) have different labels, e.g. "
                f"{_shown(ds, first)} ('{ds.labels[first]}') = {_shown(ds, other)} "
                f"('{ds.labels[other]}'). Fix the labels or remove the copies."
            )
    return out


def overlap_warning(
    train: ImageDataset,
    other: ImageDataset,
    name: str = "evaluation",
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> str | None:
    """A warning when pictures of `other` also appear (same image digest) in `train`."""
    seen: dict[str, int] = {}
    for i, info in enumerate(_inspect_all(train.texts, max_pixels)):
        if info.digest is not None:
            seen.setdefault(info.digest, i)
    hits = [
        (i, seen[info.digest])
        for i, info in enumerate(_inspect_all(other.texts, max_pixels))
        if info.digest in seen
    ]
    if not hits:
        return None
    examples = "; ".join(f"{_shown(other, i)} = {_shown(train, j)}" for i, j in hits[:3])
    return (
        f"{len(hits)} of {len(other)} {name} image(s) also appear in the training data (same "
        f"picture), e.g. {examples}. The {name} scores will be optimistic: remove them from "
        "one side."
    )


# --- recognition and stats -------------------------------------------------------------------


def recognizes_images(path: Path) -> bool:
    """Cheap guess that `path` is image data: a folder of (class folders of) images, or a
    table whose image column names image files. Only the first few entries or rows are read."""
    path = Path(path)
    try:
        if path.is_dir():
            return _folder_has_images(path, depth=2)
        if path.is_file() and FORMATS.get(path.suffix.lower()) is not None:
            frame = _head(path)
            col = None if frame is None else _find_image_column(frame)
            if col is None:
                return False
            first = next((v for v in frame[col].tolist() if isinstance(v, str) and v.strip()), "")
            return _is_image_name(first.strip())
    except (OSError, ValueError, DataError, pd.errors.ParserError):
        return False
    return False


def _folder_has_images(folder: Path, depth: int) -> bool:
    subdirs = []
    with os.scandir(folder) as it:
        for n, entry in enumerate(it):
            if n >= _PEEK:
                break
            if not _visible(entry.name):
                continue
            if entry.is_file() and _is_image_name(entry.name):
                return True
            if entry.is_dir():
                subdirs.append(Path(entry.path))
    return depth > 0 and any(_folder_has_images(d, depth - 1) for d in subdirs[:5])


def _head(path: Path, rows: int = _PEEK) -> pd.DataFrame | None:
    fmt = FORMATS[path.suffix.lower()]
    if fmt == "jsonl":
        records = []
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.strip():
                    records.append(json.loads(line))
                if len(records) >= rows:
                    break
        records = [r for r in records if isinstance(r, dict)]
        return pd.DataFrame(records) if records else None
    if fmt == "parquet":
        import pyarrow.parquet as pq

        batch = next(pq.ParquetFile(path).iter_batches(batch_size=rows), None)
        return None if batch is None else batch.to_pandas()
    sep = "\t" if fmt == "tsv" else ","
    return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, nrows=rows)


def image_stats(
    ds: ImageDataset, decode_images: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS
) -> dict:
    """Summary numbers for the model card and reports (as `dataset_stats` for text).

    With `decode_images` (free after `validate_images`, which caches), also image sizes and
    the number of duplicate copies.
    """
    stats = {
        "rows": len(ds),
        "classes": len(ds.label_names),
        "multi_label": ds.multi_label,
        "class_counts": dict(sorted(ds.class_counts().items())),
    }
    if decode_images and len(ds):
        infos = [info for info in _inspect_all(ds.texts, max_pixels) if info.error is None]
        if infos:
            widths = [info.size[0] for info in infos]
            heights = [info.size[1] for info in infos]
            stats.update(
                width_mean=round(sum(widths) / len(widths), 1),
                height_mean=round(sum(heights) / len(heights), 1),
                short_side_min=min(min(info.size) for info in infos),
                duplicates=sum(n - 1 for n in Counter(i.digest for i in infos).values()),
            )
    return stats
