"""`tuneforge demo`: the main job end to end on the bundled banking sample and the default model."""

from __future__ import annotations

from pathlib import Path

import typer

from tuneforge.cli.app import app

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="Where to save the model."),
    method: str = typer.Option("auto", help="Method to train with."),
    progress: bool = typer.Option(True, help="Show the progress bar."),
) -> None:
    """Train on a 20-intent BANKING77 sample (CC BY 4.0), evaluate, and predict two examples."""
    from rich.console import Console

    from tuneforge.tuning import tune

    console = Console()
    train, test = SAMPLES / "banking20_train.csv", SAMPLES / "banking20_test.csv"
    console.print(f"Training on {train.name} (800 rows, 20 intents) with method '{method}'...")
    model = tune(train, test, method=method, out=out, progress=progress)
    console.print(model.eval_result.table(f"Evaluation on {test.name}"))
    typer.echo(f"Test {model.eval_result.summary_line()}")
    for text in ("my card still hasn't arrived", "I forgot my passcode"):
        pred = model.predict(text)[0]
        typer.echo(f"  {text!r} → {pred.label} ({pred.score:.2f})")
    typer.echo(f'Model saved to {out}: try  tuneforge predict {out} "some text"')
