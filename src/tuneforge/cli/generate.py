"""`tuneforge generate`: a chat model's answer to one prompt, streamed as it is written."""

from __future__ import annotations

from pathlib import Path

import typer

from tuneforge.cli.app import app


@app.command(
    epilog="Examples:\n\n"
    'tuneforge generate runs/support "How do I reset my PIN?"\n\n'
    'tuneforge generate runs/support "Name a colour" --temperature 0.7 --seed 1 --stop "."'
)
def generate(
    model_dir: Path = typer.Argument(..., help="Model directory of a `chat` run."),
    prompt: str = typer.Argument(..., help="The user's message."),
    system: str | None = typer.Option(None, help="A system message before the prompt."),
    raw: bool = typer.Option(False, "--raw", help="Use the prompt as is: no chat template."),
    max_new_tokens: int | None = typer.Option(None, help="Tokens generated at most (256)."),
    temperature: float | None = typer.Option(None, help="0 = greedy (default); > 0 samples."),
    top_p: float | None = typer.Option(None, help="Nucleus sampling mass; 1 = off."),
    top_k: int | None = typer.Option(None, help="Sample among the k likeliest; 0 = off."),
    stop: list[str] = typer.Option(None, "--stop", help="A string that ends the text (repeat)."),
    seed: int | None = typer.Option(None, help="Makes sampling reproducible."),
) -> None:
    """Generate text with a fine-tuned chat model, printing tokens as they come."""
    from tuneforge.errors import ConfigError
    from tuneforge.generation import GenerationOptions, stream
    from tuneforge.tasks.chat import hf_model_of
    from tuneforge.tuned_model import TunedModel

    model = TunedModel.load(model_dir)
    if model.config.task != "chat":
        raise ConfigError(
            f"{model_dir} is a {model.config.task} model; `generate` needs a chat model (train "
            f"one with `tuneforge train chats.jsonl --task chat`). Use `tuneforge predict`."
        )
    options = GenerationOptions.build(
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        stop=stop or None,
        seed=seed,
    )
    turns = [{"role": "system", "content": system}] if system else []
    asked = prompt if raw else [*turns, {"role": "user", "content": prompt}]
    for piece in stream(hf_model_of(model), model.tokenizer, asked, options):
        typer.echo(piece, nl=False)
    typer.echo()
