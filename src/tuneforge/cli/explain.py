"""`tuneforge explain`: which tokens made the model choose its label (an image model: which
pixels, as a heatmap PNG over the picture)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from tuneforge.cli.app import app


@app.command(
    epilog="Examples:\n\n"
    'tuneforge explain runs/bank77 "my card has not arrived yet"\n\n'
    'tuneforge explain runs/bank77 "where is my refund" --json --method occlusion\n\n'
    "tuneforge explain runs/photos cat.jpg --out cat-heatmap.png   (an image model)"
)
def explain(
    model_dir: Path = typer.Argument(..., help="Model directory."),
    texts: list[str] = typer.Argument(..., help="Texts to explain (an image model: image files)."),
    method: str = typer.Option(
        "auto", help="auto, integrated_gradients (PyTorch models) or occlusion (any runtime)."
    ),
    target: str | None = typer.Option(
        None, "--target", "--label", help="Explain this class instead of the predicted."
    ),
    steps: int = typer.Option(32, help="Integration steps for integrated gradients."),
    top: int = typer.Option(5, help="Most important tokens listed."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per text."),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        help="Image models: the heatmap PNG (a folder for several images; default "
        "<image>-heatmap.png here).",
    ),
    with_original: bool = typer.Option(
        False, "--side-by-side", help="Image models: the original picture beside the heatmap."
    ),
) -> None:
    """Token attributions, as coloured text (green supports the label, red opposes it) or JSON;
    for an image model, a heatmap PNG of pixel attributions over the model's input picture."""
    from rich.console import Console

    from tuneforge.evaluation.explain import explain as explain_text
    from tuneforge.evaluation.explain import to_rich_text
    from tuneforge.tuned_model import TunedModel

    model = TunedModel.load(model_dir)
    if model.config.task == "image-classification":
        explain_images(model, texts, method, target, steps, out, with_original, as_json)
        return
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


def heatmap_paths(images: list[str], out: Path | None) -> list[Path]:
    """Where each image's heatmap goes: `out` for one image (unless a folder), else
    `<stem>-heatmap.png` in `out` (or here)."""
    if out is not None and len(images) == 1 and not out.is_dir():
        return [out]
    folder = out or Path(".")
    names = [f"{Path(i).stem}-heatmap.png" for i in images]
    if len(set(names)) < len(names):  # cat.jpg and cat.png, or two folders' 001.jpg
        names = [f"{k:03d}-{n}" for k, n in enumerate(names, 1)]
    return [folder / n for n in names]


def explain_images(model, images, method, target, steps, out, with_original, as_json) -> None:
    from tuneforge.errors import DataError
    from tuneforge.evaluation.image_explain import explain_image, save_heatmap

    missing = [i for i in images if not Path(i).is_file()]
    if missing:
        raise DataError(f"Not found: {', '.join(missing[:5])}. Give image files to explain.")
    for image, path in zip(images, heatmap_paths(images, out), strict=True):
        exp = explain_image(model, image, method=method, n_steps=steps, target=target)
        written = save_heatmap(exp, path, with_original)
        if as_json:
            typer.echo(json.dumps({**exp.to_dict(), "out": str(written)}, ensure_ascii=False))
            continue
        note = "" if exp.label == exp.predicted else f" (the model predicts {exp.predicted})"
        w, h = exp.size
        typer.echo(
            f"{exp.label}\t{exp.score:.3f}\t{image}{note}\t({exp.method}) → {written} "
            f"({w}x{h} heatmap)"
        )
