"""`tuneforge predict`: label texts given on the command line or a whole file (streamed)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from tuneforge.cli.app import app


@app.command(
    epilog="Examples:\n\n"
    'tuneforge predict runs/bank77 "my card has not arrived yet"\n\n'
    "tuneforge predict runs/bank77 --file new.csv --out scored.csv"
)
def predict(
    model_dir: Path = typer.Argument(..., help="Model directory."),
    texts: list[str] = typer.Argument(None, help="Texts to label."),
    file: Path | None = typer.Option(None, "--file", "-f", help="CSV/TSV/JSONL/Parquet to label."),
    out: Path | None = typer.Option(None, help="Output file (same format as --file)."),
    text_col: str | None = typer.Option(None, help="Text column of --file (auto-detected)."),
    batch_size: int = typer.Option(64),
    chunk_rows: int = typer.Option(10_000, help="Rows read at a time (memory stays constant)."),
    top_k: int = typer.Option(3, help="Scores shown per text."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON lines."),
) -> None:
    """Predict labels with scores."""
    from tuneforge.errors import ConfigError
    from tuneforge.tuned_model import TunedModel

    if not texts and file is None:
        raise ConfigError("Give texts to label, or --file FILE.")
    model = TunedModel.load(model_dir)
    if file is not None:
        n = predict_file(
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
    for text, pred in zip(texts, model.predict(texts, batch_size, top_k=top_k), strict=True):
        if as_json:
            typer.echo(json.dumps({"text": text, **pred.to_dict()}, ensure_ascii=False))
        else:
            others = ", ".join(f"{k} {v:.3f}" for k, v in pred.scores.items())
            typer.echo(f"{pred.label}\t{pred.score:.3f}\t{text}\t[{others}]")


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

    tmp = out.with_name(f".{out.name}.tmp")
    total, writer = 0, None
    try:
        for i, frame in enumerate(model.iter_predict_frames(chunks(), col, batch_size)):
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
