"""`tuneforge info`: what base models and methods are available, or what a model directory holds."""

from __future__ import annotations

from pathlib import Path

import typer

from tuneforge.cli.app import app


@app.command()
def info(
    model_dir: Path | None = typer.Argument(None, help="A model directory to describe."),
) -> None:
    """List base models and methods, or describe a trained model."""
    if model_dir is not None:
        from tuneforge.artifact import ArtifactConfig

        cfg = ArtifactConfig.load(model_dir)
        typer.echo(
            f"{model_dir}: {cfg.task}, method {cfg.method} on {cfg.base}, "
            f"{len(cfg.labels)} labels, created {cfg.created}"
        )
        return
    from tuneforge.methods import METHODS
    from tuneforge.models.registry import BASE_MODELS

    typer.echo("Base models:")
    for name, spec in BASE_MODELS.items():
        typer.echo(f"  {name:18} {spec.description}  ({spec.install})")
    typer.echo("  <path>             any local Hugging Face model directory")
    typer.echo(
        "  A+B                a base pair, e.g. mpnet+minilm: two encoders that share a "
        "vocabulary, embeddings side by side (methods fewshot, head, zeroshot)"
    )
    typer.echo("Methods: auto, " + ", ".join(sorted(METHODS)))
    typer.echo(tasks_by_methods())


def tasks_by_methods() -> str:
    """The tasks × methods table: which method trains which task."""
    from tuneforge.methods import METHODS
    from tuneforge.tasks import TASKS

    names = sorted(METHODS)
    width = max(len(t) for t in TASKS) + 2
    lines = ["Tasks × methods (x: trains it; auto picks per task):"]
    lines.append(" " * (width + 2) + " ".join(f"{m:>8}" for m in names))
    for task, impl in TASKS.items():
        marks = " ".join(f"{'x' if task in METHODS[m].tasks else '.':>8}" for m in names)
        lines.append(f"  {task:{width}}{marks}   {impl.summary}")
    return "\n".join(lines)
