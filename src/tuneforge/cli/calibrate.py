"""`tuneforge calibrate`: fit a temperature and an abstain threshold on validation data."""

from __future__ import annotations

from pathlib import Path

import typer

from tuneforge.cli.app import app


@app.command(
    epilog="Examples:\n\n"
    "tuneforge calibrate runs/bank77 val.csv --target-accuracy 0.95\n\n"
    "tuneforge calibrate runs/bank77 train.csv --from-train   (the rows training held out)\n\n"
    "tuneforge calibrate runs/photos val/ --target-accuracy 0.95   (an image model: a folder)"
)
def calibrate(
    model_dir: Path = typer.Argument(..., help="Model directory (updated in place)."),
    data: Path = typer.Argument(..., help="Labelled validation file (not the test set)."),
    target_accuracy: float | None = typer.Option(
        None, min=0.0, max=1.0, help="Abstain below the score that keeps this accuracy."
    ),
    from_train: bool = typer.Option(
        False, help="DATA is the training file: use the validation rows training held out."
    ),
    text_col: str | None = typer.Option(
        None, "--text-col", "--image-col", help="Text (or image-path) column (auto-detected)."
    ),
    label_col: str | None = typer.Option(None),
) -> None:
    """Temperature scaling (and an abstain threshold), written into the model's tuneforge.yaml."""
    from tuneforge.tuned_model import TunedModel

    model = TunedModel.load(model_dir)
    fit = calibrate_artifact(model, data, target_accuracy, from_train, text_col, label_col)
    typer.echo(
        f"temperature {fit.temperature:.4f} on {fit.n} rows: ECE {fit.ece_before:.4f} → "
        f"{fit.ece_after:.4f}, NLL {fit.nll_before:.4f} → {fit.nll_after:.4f}"
    )
    if fit.abstain_threshold is not None:
        typer.echo(
            f"abstain below {fit.abstain_threshold:.4f}: answers {fit.coverage:.1%} of "
            f"validation rows at accuracy {fit.accuracy_answered:.4f}"
        )
    typer.echo(f"Wrote calibration to {model_dir / 'tuneforge.yaml'}")


def calibrate_artifact(model, data: Path, target_accuracy, from_train, text_col, label_col):
    """Fit on DATA (or its held-out validation rows) and store the result in the artifact."""
    from tuneforge.evaluation.calibration import (
        calibrate_model,
        validation_split,
        write_calibration,
    )

    ds = load_labelled(model, data, text_col, label_col)
    if from_train:
        ds = validation_split(ds, model.config)
    fit = calibrate_model(model, ds, target_accuracy)
    write_calibration(model.path, model.config)
    return fit


def load_labelled(model, data: Path, text_col, label_col):
    """A labelled file for a classifier: texts, or for an image model a folder of class folders
    (or a CSV/JSONL of image paths), read the way its task reads them."""
    from tuneforge.errors import ConfigError

    task = model.config.task
    if task == "image-classification":
        return model.task.load_for(model, data, text_col, label_col)
    if task != "text-classification":
        raise ConfigError(
            f"Calibration and this report are for classifiers; '{model.path}' is a {task} "
            "model (use `tuneforge eval` / `tuneforge report` without --calibrate)."
        )
    from tuneforge.data.dataset import load_data

    return load_data(data, text_col, label_col)
