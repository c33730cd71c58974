"""`tuneforge export`: ONNX (optionally int8, pruned) artifact, refused if it loses accuracy."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from tuneforge.cli.app import app


@app.command(
    epilog="Examples:\n\n"
    "tuneforge export runs/bank77 --out runs/bank77-onnx --quantize int8 --val val.csv\n\n"
    "tuneforge export runs/bank77 --out runs/bank77-small --quantize int8 --prune-layers 2 "
    "--distil-data train.csv --val val.csv"
)
def export(
    model_dir: Path = typer.Argument(..., help="Model directory from `tuneforge train`."),
    out: Path = typer.Option(..., "--out", "-o", help="Directory for the exported model."),
    quantize: str | None = typer.Option(None, help="'int8': dynamic int8 quantization."),
    prune_layers: int = typer.Option(
        0, help="Drop this many encoder layers (evenly spread), then re-tune from the original."
    ),
    val: Path | None = typer.Option(None, help="Labelled validation file for the accuracy gate."),
    max_loss: float = typer.Option(0.5, help="Largest accuracy loss allowed, in points."),
    force: bool = typer.Option(False, "--force", help="Write even if the gate fails."),
    skip_gate: bool = typer.Option(False, "--skip-gate", help="Export without --val."),
    distil_data: Path | None = typer.Option(
        None, help="Data to re-tune a pruned model on (training file; labels used if present)."
    ),
    distil_seconds: float = typer.Option(900.0, help="Time cap of the re-tune (3 epochs)."),
    text_col: str | None = typer.Option(None),
    label_col: str | None = typer.Option(None),
    no_fuse: bool = typer.Option(False, "--no-fuse", help="Skip onnxruntime op fusion."),
) -> None:
    """Export to ONNX for fast CPU inference (`TunedModel.load` and `serve` run it as usual)."""
    from tuneforge.export import export_model

    report = export_model(
        model_dir,
        out,
        quantize=quantize,
        prune_layers=prune_layers,
        val=val,
        text_col=text_col,
        label_col=label_col,
        max_loss=max_loss,
        force=force,
        skip_gate=skip_gate,
        fuse=not no_fuse,
        distil_data=distil_data,
        distil_seconds=distil_seconds,
    )
    gate = report.gate
    if gate:
        typer.echo(
            f"Accuracy {gate['accuracy_source']:.4f} (PyTorch) → {gate['accuracy_export']:.4f} "
            f"(export): loss {gate['loss_points']:.2f} points"
            + (" — over the limit, written because of --force" if gate["forced"] else "")
        )
    typer.echo(json.dumps({"size_mb": report.size_mb, **report.parity}))
    typer.echo(f"Wrote {report.path}")
