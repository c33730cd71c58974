"""`tuneforge report`: one self-contained HTML file to decide whether a model can be trusted."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from tuneforge.cli.app import app
from tuneforge.paths import write_text_atomically


@app.command(
    epilog="Examples:\n\n"
    "tuneforge report runs/bank77 test.csv --out report.html\n\n"
    "tuneforge report runs/bank77 test.csv --calibrate val.csv --target-accuracy 0.95\n\n"
    "tuneforge report runs/lora test.csv --compare runs/head --train train.csv\n\n"
    "tuneforge report runs/photos test/ --out report.html   (an image model: a folder or CSV)"
)
def report(
    model_dir: Path = typer.Argument(..., help="Model directory."),
    data: Path = typer.Argument(..., help="Labelled test file."),
    out: Path = typer.Option(Path("report.html"), "--out", "-o", help="HTML file to write."),
    compare: Path | None = typer.Option(None, help="A second model: side by side + McNemar."),
    calibrate: Path | None = typer.Option(
        None, help="Validation file: fit temperature + abstain threshold first (saved in MODEL)."
    ),
    from_train: bool = typer.Option(
        False, help="--calibrate is the training file: use the rows training held out."
    ),
    target_accuracy: float = typer.Option(
        0.95, min=0.0, max=1.0, help="For the abstain threshold."
    ),
    train: Path | None = typer.Option(None, help="Training file, to check train/test leakage."),
    robustness_rows: int = typer.Option(400, help="Test rows used for the noise tests."),
    faithfulness_texts: int = typer.Option(12, help="Test texts for the faithfulness check."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write headline figures here."),
    text_col: str | None = typer.Option(
        None, "--text-col", "--image-col", help="Text (or image-path) column (auto-detected)."
    ),
    label_col: str | None = typer.Option(None),
) -> None:
    """Metrics with confidence intervals, calibration, abstention, errors, robustness, data
    checks, explanations and training curves (image models: thumbnails of the mistakes and
    confused pairs, and heatmaps, instead of robustness and token explanations)."""
    from tuneforge.cli.calibrate import calibrate_artifact, load_labelled
    from tuneforge.evaluation.report import ReportOptions, build_report
    from tuneforge.evaluation.report_html import write_report
    from tuneforge.tuned_model import TunedModel

    model = TunedModel.load(model_dir)
    if model.config.task not in ("text-classification", "image-classification"):
        tagged_report(model, data, out, json_out, label_col)
        return
    fit = None
    if calibrate is not None:
        fit = calibrate_artifact(model, calibrate, target_accuracy, from_train, text_col, label_col)
        typer.echo(f"Calibrated: temperature {fit.temperature:.4f} (saved to {model_dir})")
    test = load_labelled(model, data, text_col, label_col)
    train_ds = load_labelled(model, train, text_col, label_col) if train else None
    other = TunedModel.load(compare) if compare else None
    opts = ReportOptions(
        target_accuracy=target_accuracy,
        robustness_rows=robustness_rows,
        faithfulness_texts=faithfulness_texts,
    )
    result = build_report(model, test, opts, train=train_ds, calibration_fit=fit, compare=other)
    path = write_report(result, out)
    figures = result.figures()
    if json_out:
        write_text_atomically(json_out, json.dumps(figures, indent=1, default=str))
    faith = figures.get("faithfulness", {})
    if "images" in result.sections:
        shown = result.sections["images"]
        typer.echo(
            f"accuracy {figures['accuracy']:.4f} · ECE {figures['ece_before']:.4f} → "
            f"{figures['ece_after']:.4f} (T={figures['temperature']:.3f}) · {shown['errors']} "
            f"mistakes: {len(shown['mistakes'])} shown, {len(shown['heatmaps'])} with heatmaps"
        )
    else:
        typer.echo(
            f"accuracy {figures['accuracy']:.4f} · ECE {figures['ece_before']:.4f} → "
            f"{figures['ece_after']:.4f} (T={figures['temperature']:.3f}) · faithfulness top-k "
            f"drop {faith.get('drop_top_k', 0):.4f} vs random {faith.get('drop_random', 0):.4f}"
        )
    typer.echo(f"Wrote {path} in {result.seconds:.0f} s")


def tagged_report(model, data: Path, out: Path, json_out: Path | None, label_col) -> None:
    """A token or chat model's report: its task's section (span scores and errors; answer
    scores and the worst answers) and the training curves."""
    from tuneforge.evaluation.report import chat_report, token_report
    from tuneforge.evaluation.report_html import write_report

    build = chat_report if model.config.task == "chat" else token_report
    result = build(model, model.task.load_for(model, data, None, label_col))
    path = write_report(result, out)
    figures = result.figures()
    if json_out:
        write_text_atomically(json_out, json.dumps(figures, indent=1, default=str))
    section = result.sections.get("generative") or result.sections["spans"]
    typer.echo(section["result"].summary_line())
    typer.echo(f"Wrote {path} in {result.seconds:.0f} s")
