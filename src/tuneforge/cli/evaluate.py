"""`tuneforge eval`: score a model on a labelled file; print a table, write metrics.json."""

from __future__ import annotations

from pathlib import Path

import typer

from tuneforge.cli.app import app


@app.command("eval", epilog="Example: tuneforge eval runs/bank77 test.csv --out metrics.json")
def evaluate(
    model_dir: Path = typer.Argument(..., help="Model directory from `tuneforge train`."),
    data: Path = typer.Argument(..., help="Labelled file to score."),
    text_col: str | None = typer.Option(None),
    label_col: str | None = typer.Option(None),
    out: Path | None = typer.Option(
        None, help="metrics.json path (default: MODEL/metrics-<data>.json)."
    ),
    batch_size: int = typer.Option(64),
) -> None:
    """Score a model: text classification: accuracy, macro-F1, per-class table, confusion
    matrix; token classification: strict span F1, precision, recall, per type; chat: loss,
    perplexity, and greedy answers' exact match, token F1, ROUGE-L (JSON validity and field F1
    when the reference answers are JSON objects)."""
    from rich.console import Console

    from tuneforge.tuned_model import TunedModel

    model = TunedModel.load(model_dir)
    result = model.evaluate(data, text_col, label_col, batch_size)
    # the table has no caption: the summary line is printed here, once
    Console().print(result.table(f"{model_dir.name} on {data.name}"))
    typer.echo(result.summary_line())
    if getattr(result, "unknown_labels", None):
        typer.echo(f"Note: labels unknown to the model (scored as errors): {result.unknown_labels}")
    path = result.save(out or model_dir / f"metrics-{data.stem}.json")
    typer.echo(f"Wrote {path}")
