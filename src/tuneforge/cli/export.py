"""`tuneforge export`: ONNX (optionally int8, pruned) artifact, refused if it loses accuracy
(an image model's int8 is static, calibrated on pictures); a chat model as one GGUF file
(llama.cpp, Ollama) or a merged Hugging Face directory."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from tuneforge.cli.app import app


@app.command(
    epilog="Examples:\n\n"
    "tuneforge export runs/bank77 --out runs/bank77-onnx --quantize int8 --val val.csv\n\n"
    "tuneforge export runs/bank77 --out runs/bank77-small --quantize int8 --prune-layers 2 "
    "--distil-data train.csv --val val.csv\n\n"
    "tuneforge export runs/photos --quantize int8 --calibrate photos/ --val val/ "
    "--out runs/photos-int8\n\n"
    "tuneforge export runs/support-lm --format gguf --out support.gguf --quantize q8_0\n\n"
    "tuneforge export runs/support-lm --format hf --out support-hf"
)
def export(
    model_dir: Path = typer.Argument(..., help="Model directory from `tuneforge train`."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Directory for the exported model (gguf: the .gguf file)."
    ),
    fmt: str = typer.Option(
        "onnx",
        "--format",
        help="onnx (any model), gguf (chat models: one file for llama.cpp / Ollama) or hf "
        "(chat models: the merged Hugging Face directory).",
    ),
    quantize: str | None = typer.Option(
        None,
        help="onnx: 'int8' (text: dynamic quantization; images: static, calibrated on "
        "--calibrate pictures). gguf: f32, f16 (default: half the size, logits within ~0.2%) "
        "or q8_0 (8-bit blocks, ~a quarter of f32; within ~3%).",
    ),
    prune_layers: int = typer.Option(
        0, help="Drop this many encoder layers (evenly spread), then re-tune from the original."
    ),
    val: Path | None = typer.Option(None, help="Labelled validation file for the accuracy gate."),
    max_loss: float = typer.Option(0.5, help="Largest accuracy loss allowed, in points."),
    force: bool = typer.Option(False, "--force", help="Write even if the gate fails."),
    skip_gate: bool = typer.Option(
        False, "--skip-gate", help="onnx: export without --val; gguf/hf: skip the logits check."
    ),
    distil_data: Path | None = typer.Option(
        None, help="Data to re-tune a pruned model on (training file; labels used if present)."
    ),
    distil_seconds: float = typer.Option(900.0, help="Time cap of the re-tune (3 epochs)."),
    text_col: str | None = typer.Option(
        None, "--text-col", "--image-col", help="Text (or image-path) column of --val."
    ),
    label_col: str | None = typer.Option(None),
    no_fuse: bool = typer.Option(False, "--no-fuse", help="Skip onnxruntime op fusion."),
    calibrate: Path | None = typer.Option(
        None,
        help="int8 of an image model: pictures whose activations set the int8 ranges (the "
        "training images are best; 256 are sampled). Default: the --val pictures.",
    ),
    calibration: str = typer.Option(
        "minmax", help="int8 of an image model: minmax, percentile or entropy calibration."
    ),
    keep_fp32: str | None = typer.Option(
        None,
        help="int8 of an image model: node kinds left in float32, comma-separated: head "
        "(default), first (convolution), depthwise; 'none' quantizes everything.",
    ),
) -> None:
    """Export to ONNX for fast CPU inference (`TunedModel.load` and `serve` run it as usual),
    or a chat model to GGUF / Hugging Face (checked: reloaded, same tokens and logits)."""
    if fmt in ("gguf", "hf"):
        onnx_only = {
            "--prune-layers": prune_layers,
            "--val": val,
            "--distil-data": distil_data,
            "--calibrate": calibrate,
            "--keep-fp32": keep_fp32,
        }
        _export_chat(model_dir, out, fmt, quantize, skip_gate, force, onnx_only)
        return
    if fmt != "onnx":
        from tuneforge.errors import ConfigError

        raise ConfigError(f"--format must be onnx, gguf or hf (got {fmt!r}).")
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
        calibrate=calibrate,
        calibration_method=calibration,
        keep_fp32=_kinds(keep_fp32),
    )
    cal = report.calibration
    if cal:
        note = " (the gate's own data; --calibrate DIR takes others)" if cal["from_val"] else ""
        typer.echo(f"Calibrated ({cal['method']}) on {cal['inputs']} of {cal['source']}{note}")
    gate = report.gate
    if gate:
        typer.echo(
            f"Accuracy {gate['accuracy_source']:.4f} (PyTorch) → {gate['accuracy_export']:.4f} "
            f"(export): loss {gate['loss_points']:.2f} points"
            + (" — over the limit, written because of --force" if gate["forced"] else "")
        )
    typer.echo(json.dumps({"size_mb": report.size_mb, **report.parity}))
    typer.echo(f"Wrote {report.path}")


def _kinds(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    return tuple(k.strip() for k in value.split(",") if k.strip() and k.strip() != "none")


def _export_chat(model_dir, out, fmt, quantize, skip_gate, force, onnx_only) -> None:
    from tuneforge.errors import ConfigError
    from tuneforge.export.gguf_export import export_gguf, parity_line
    from tuneforge.export.hf_export import export_hf

    given = [flag for flag, value in onnx_only.items() if value]
    if given:
        raise ConfigError(f"{', '.join(given)}: ONNX options; --format {fmt} takes none of them.")
    if fmt == "hf" and quantize:
        raise ConfigError("--format hf writes the float32 weights; drop --quantize.")
    if fmt == "gguf":
        report = export_gguf(model_dir, out, quantize=quantize, check=not skip_gate, force=force)
    else:
        report = export_hf(model_dir, out, check=not skip_gate, force=force)
    parity = report.parity
    if parity:
        verdict = "ok" if parity["passed"] else "FAILED — written because of --force"
        typer.echo(
            f"Check ({report.format} {report.quantize} reloaded): {parity_line(parity)}: {verdict}"
        )
    typer.echo(json.dumps({"size_mb": report.size_mb, "seconds": report.seconds}))
    typer.echo(f"Wrote {report.path}")
