"""`tuneforge eval`: score a model on a labelled file; print a table, write metrics.json."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from tuneforge.cli.app import app


@app.command(
    "eval",
    epilog="Examples:\n\n"
    "tuneforge eval runs/bank77 test.csv --out metrics.json\n\n"
    "tuneforge eval runs/photos test/   (an image model: class folders, or a CSV of paths)",
)
def evaluate(
    model_dir: Path = typer.Argument(..., help="Model directory from `tuneforge train`."),
    data: Path = typer.Argument(
        ..., help="Labelled file to score (image models: a folder of class folders, or a CSV)."
    ),
    text_col: str | None = typer.Option(
        None, "--text-col", "--image-col", help="Text (or image-path) column (auto-detected)."
    ),
    label_col: str | None = typer.Option(None),
    out: Path | None = typer.Option(
        None, help="metrics.json path (default: MODEL/metrics-<data>.json)."
    ),
    batch_size: int = typer.Option(64),
) -> None:
    """Score a model: text classification: accuracy, macro-F1, per-class table, confusion
    matrix (image classification alike, on a folder of class folders or a CSV/JSONL of image
    paths); token classification: strict span F1, precision, recall, per type; chat: loss,
    perplexity, and greedy answers' exact match, token F1, ROUGE-L (JSON validity and field F1
    when the reference answers are JSON objects)."""
    from rich.console import Console

    from tuneforge.tuned_model import TunedModel

    model = TunedModel.load(model_dir)
    images = model.config.task == "image-classification"
    if images:  # loaded here so that what the folder held (skipped files, ...) is said
        data_set = model.task.load_for(model, data, text_col, label_col)
        for warning in data_set.warnings:
            typer.echo(f"Warning: {warning}", err=True)
        result = model.evaluate(data_set, batch_size=batch_size)
    else:
        result = model.evaluate(data, text_col, label_col, batch_size)
    name = Path(os.path.abspath(data)).name  # `test/` and `.` name their folder
    # the table has no caption: the summary line is printed here, once
    Console().print(result.table(f"{model_dir.name} on {name}"))
    typer.echo(result.summary_line() + (" images" if images else ""))
    if getattr(result, "unknown_labels", None):
        typer.echo(f"Note: labels unknown to the model (scored as errors): {result.unknown_labels}")
    path = result.save(out or model_dir / f"metrics-{Path(name).stem}.json")
    typer.echo(f"Wrote {path}")
