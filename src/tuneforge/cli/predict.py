"""`tuneforge predict`: label texts given on the command line or a whole file (streamed); for an
image model, image files or folders of them, or a CSV/JSONL of image paths (streamed)."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import typer

from tuneforge.cli.app import app


@app.command(
    epilog="Examples:\n\n"
    'tuneforge predict runs/bank77 "my card has not arrived yet"\n\n'
    "tuneforge predict runs/bank77 --file new.csv --out scored.csv\n\n"
    "tuneforge predict runs/photos cat.jpg dog.png more-photos/   (an image model)\n\n"
    "tuneforge predict runs/photos --file list.csv   (a column of image paths)"
)
def predict(
    model_dir: Path = typer.Argument(..., help="Model directory."),
    texts: list[str] = typer.Argument(
        None, help="Texts to label (an image model: image files, or folders of them)."
    ),
    file: Path | None = typer.Option(None, "--file", "-f", help="CSV/TSV/JSONL/Parquet to label."),
    out: Path | None = typer.Option(None, help="Output file (same format as --file)."),
    text_col: str | None = typer.Option(
        None,
        "--text-col",
        "--image-col",
        help="Text column of --file (an image model: its image-path column); auto-detected.",
    ),
    batch_size: int = typer.Option(64),
    chunk_rows: int = typer.Option(10_000, help="Rows read at a time (memory stays constant)."),
    top_k: int = typer.Option(3, help="Scores shown per text."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON lines."),
) -> None:
    """Predict labels with scores."""
    from tuneforge.errors import ConfigError
    from tuneforge.tuned_model import TunedModel

    if not texts and file is None:
        raise ConfigError("Give texts to label (image files for an image model), or --file FILE.")
    model = TunedModel.load(model_dir)
    images = model.config.task == "image-classification"
    if file is not None:
        n = (predict_image_file if images else predict_file)(
            model,
            file,
            out or file.with_name(f"{file.stem}.scored{file.suffix}"),
            text_col,
            batch_size,
            chunk_rows,
        )
        typer.echo(
            f"Labelled {n} rows → {out or file.with_name(file.stem + '.scored' + file.suffix)}"
        )
        return
    if model.config.task == "token-classification":
        show_spans(model.predict(texts, batch_size), as_json)
        return
    if images:
        show_images(model, image_files(texts), batch_size, top_k, as_json)
        return
    show_labels(texts, model.predict(texts, batch_size, top_k=top_k), "text", as_json)


def show_labels(inputs: list[str], predictions, key: str, as_json: bool) -> None:
    """`label  score  input  [top-k]` per input, or JSON lines with the input under `key`."""
    for item, pred in zip(inputs, predictions, strict=True):
        if as_json:
            typer.echo(json.dumps({key: item, **pred.to_dict()}, ensure_ascii=False))
        else:
            others = ", ".join(f"{k} {v:.3f}" for k, v in pred.scores.items())
            typer.echo(f"{pred.label}\t{pred.score:.3f}\t{item}\t[{others}]")


def show_spans(predictions, as_json: bool) -> None:
    """Each text with its spans highlighted (on a terminal), then `span [LABEL] score` lines."""
    import sys

    from rich.console import Console
    from rich.text import Text

    terminal = sys.stdout.isatty()
    console = Console(highlight=False)
    for pred in predictions:
        if as_json:
            typer.echo(json.dumps(pred.to_dict(), ensure_ascii=False))
            continue
        if terminal:
            shown = Text(pred.text)
            for e in pred.entities:
                shown.stylize("bold black on yellow", e.start, e.end)
                shown.stylize("bold", e.start, e.end)
            console.print(shown)
        else:
            typer.echo(pred.text)
        for e in pred.entities:
            typer.echo(f"  {e.text} [{e.label}] {e.score:.3f}")
        if not pred.entities:
            typer.echo("  (no spans)")


def predict_file(
    model, file: Path, out: Path, text_col: str | None, batch_size: int, chunk_rows: int
) -> int:
    """Stream `file` chunk by chunk into `out`, written atomically."""
    from tuneforge.data.dataset import pick_text_column
    from tuneforge.data.readers import detect_format, iter_frames

    fmt = detect_format(out)
    frames = iter_frames(file, chunksize=chunk_rows, raw=True)
    first = next(frames)
    col = pick_text_column(first, file, text_col)

    def chunks():
        yield first
        yield from frames

    return write_frames(model.iter_predict_frames(chunks(), col, batch_size), out, fmt)


def write_frames(frames, out: Path, fmt: str) -> int:
    """Write a stream of scored chunks to `out` atomically; the number of rows."""
    tmp = out.with_name(f".{out.name}.tmp")
    total, writer = 0, None
    try:
        for i, frame in enumerate(frames):
            total += len(frame)
            writer = _write_chunk(frame, tmp, fmt, i == 0, writer)
        if writer is not None:
            writer.close()
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return total


def _write_chunk(frame, path: Path, fmt: str, first: bool, writer):
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(frame, preserve_index=False)
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
        return writer
    mode = "w" if first else "a"
    if fmt == "jsonl":
        frame.to_json(path, orient="records", lines=True, force_ascii=False, mode=mode)
    else:
        frame.to_csv(path, sep="\t" if fmt == "tsv" else ",", index=False, header=first, mode=mode)
    return None


# ---- image models ----------------------------------------------------------------------------
SHOWN_AT_ONCE = 256  # files predicted (and printed) per round: output starts early


def image_files(inputs: list[str]) -> list[str]:
    """The positional inputs as image files: files as given, folders expanded (every image
    under them, sorted). Missing paths are one error naming them all."""
    from tuneforge.errors import DataError
    from tuneforge.images.dataset import load_images

    missing = [item for item in inputs if not os.path.exists(item)]
    if missing:
        shown = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        raise DataError(f"Not found: {shown}. Check the path(s) (cwd: {Path.cwd()}).")
    files: list[str] = []
    for item in inputs:
        if not os.path.isdir(item):
            files.append(item)
            continue
        found = load_images(item, require_labels=False)
        for warning in found.warnings:
            typer.echo(f"Warning: {warning}", err=True)
        root = os.path.abspath(item)
        files += [os.path.join(item, os.path.relpath(p, root)) for p in found.texts]
    return files


def show_images(model, files: list[str], batch_size: int, top_k: int, as_json: bool) -> None:
    """`label  score  file  [top-k]` per image (as for texts), or JSON lines."""
    for start in range(0, len(files), SHOWN_AT_ONCE):
        chunk = files[start : start + SHOWN_AT_ONCE]
        show_labels(chunk, model.predict(chunk, batch_size, top_k=top_k), "image", as_json)


def predict_image_file(
    model, file: Path, out: Path, image_col: str | None, batch_size: int, chunk_rows: int
) -> int:
    """Stream a table of image paths (relative to its folder) chunk by chunk into `out`, with
    `label` and `score` columns; a missing or unreadable image is an error naming it and its
    row."""
    from tuneforge.data.readers import detect_format, iter_frames
    from tuneforge.errors import DataError
    from tuneforge.images.decode import ImageError

    fmt = detect_format(out)
    frames = iter_frames(file, chunksize=chunk_rows, raw=True)
    first = next(frames)
    from tuneforge.images.dataset import image_column

    col = image_column(first, file, image_col)
    base = file.parent

    def scored():
        done = 0
        for frame in itertools.chain([first], frames):
            values = ["" if v is None else str(v).strip() for v in frame[col].tolist()]
            paths = [os.path.abspath(base / Path(v).expanduser()) if v else "" for v in values]
            bad = [
                (done + i + 1, v or "(empty)")
                for i, (v, p) in enumerate(zip(values, paths, strict=True))
                if not v or not os.path.isfile(p)
            ]
            if bad:
                shown = "; ".join(f"row {r}: {v}" for r, v in bad[:5])
                more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
                raise DataError(
                    f"{file}: image file(s) in column '{col}' not found: {shown}{more}. "
                    f"Relative paths are read from the file's folder ({os.path.abspath(base)})."
                )
            try:
                columns = model.task.prediction_columns(model, paths, batch_size)
            except ImageError as exc:
                row = paths.index(exc.file) + done + 1 if exc.file in paths else None
                where = f" row {row} ({values[row - done - 1]})" if row else ""
                raise DataError(f"{file}{where}: {exc.reason}. {exc.fix}") from None
            for name, column in columns.items():
                frame[name] = column
            done += len(frame)
            yield frame

    return write_frames(scored(), out, fmt)
