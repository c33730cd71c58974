"""`tuneforge sample`: a reproducible N-shot training set (N rows per class) from a file."""

from __future__ import annotations

from pathlib import Path

import typer

from tuneforge.cli.app import app


@app.command(
    epilog="Examples:\n\n"
    "tuneforge sample train.csv --shots 8 --seed 0   (writes train.8shot.seed0.csv)\n\n"
    "tuneforge sample train.csv --shots 10 --seed 3 --out bank77_10shot.csv"
)
def sample(
    data: Path = typer.Argument(..., help="Labelled file: CSV, TSV, JSONL or Parquet."),
    shots: int = typer.Option(8, help="Rows per class (smaller classes are taken whole)."),
    seed: int = typer.Option(0, help="Same seed, same rows."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Output file (default: beside DATA)."
    ),
    text_col: str | None = typer.Option(None, help="Text column (auto-detected)."),
    label_col: str | None = typer.Option(None, help="Label column (auto-detected)."),
) -> None:
    """Sample N examples per class, reproducibly, for few-shot training and benchmarks."""
    from tuneforge.data.dataset import load_data
    from tuneforge.data.sampling import sample_shots, write_dataset

    ds = sample_shots(load_data(data, text_col, label_col), shots, seed)
    target = out or data.with_name(f"{data.stem}.{shots}shot.seed{seed}{data.suffix}")
    write_dataset(ds, target)
    for warning in ds.warnings:
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(f"Wrote {len(ds)} rows ({len(ds.label_names)} classes) → {target}")
