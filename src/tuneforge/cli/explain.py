"""`tuneforge explain`: which tokens made the model choose its label."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from tuneforge.cli.app import app


@app.command(
    epilog="Examples:\n\n"
    'tuneforge explain runs/bank77 "my card has not arrived yet"\n\n'
    'tuneforge explain runs/bank77 "where is my refund" --json --method occlusion'
)
def explain(
    model_dir: Path = typer.Argument(..., help="Model directory."),
    texts: list[str] = typer.Argument(..., help="Texts to explain."),
    method: str = typer.Option(
        "auto", help="auto, integrated_gradients (PyTorch models) or occlusion (any runtime)."
    ),
    target: str | None = typer.Option(None, help="Explain this class instead of the predicted."),
    steps: int = typer.Option(32, help="Integration steps for integrated gradients."),
    top: int = typer.Option(5, help="Most important tokens listed."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per text."),
) -> None:
    """Token attributions, as coloured text (green supports the label, red opposes it) or JSON."""
    from rich.console import Console

    from tuneforge.evaluation.explain import explain as explain_text
    from tuneforge.evaluation.explain import to_rich_text
    from tuneforge.tuned_model import TunedModel

    model = TunedModel.load(model_dir)
    console = Console(highlight=False)
    for text in texts:
        exp = explain_text(model, text, method=method, n_steps=steps, target=target)
        if as_json:
            typer.echo(json.dumps(exp.to_dict(), ensure_ascii=False))
            continue
        console.print(f"[bold]{exp.label}[/] {exp.score:.3f}  ({exp.method})")
        console.print(to_rich_text(exp))
        tops = ", ".join(f"{tok} {w:+.3f}" for tok, w in exp.top(top))
        console.print(f"[dim]top tokens: {tops}[/]\n")
