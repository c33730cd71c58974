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
