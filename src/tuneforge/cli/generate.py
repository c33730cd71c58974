"""`tuneforge generate`: a chat model's answer to one prompt, streamed as it is written."""

from __future__ import annotations

from pathlib import Path

import typer

from tuneforge.cli import generation_flags as flags
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
    max_new_tokens: int | None = flags.MAX_NEW_TOKENS,
    temperature: float | None = flags.TEMPERATURE,
    top_p: float | None = flags.TOP_P,
    top_k: int | None = flags.TOP_K,
    repetition_penalty: float | None = flags.REPETITION_PENALTY,
    stop: list[str] = flags.STOP,
    seed: int | None = flags.SEED,
    precision: str | None = flags.PRECISION,
) -> None:
    """Generate text with a fine-tuned chat model, printing tokens as they come."""
    from tuneforge.generation import stream
    from tuneforge.tasks.chat import hf_model_of

    model = flags.load_chat_model(model_dir, "generate")
    options = flags.generation_options(
        stop,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        repetition_penalty=repetition_penalty,
        seed=seed,
        precision=precision,
    )
    turns = [{"role": "system", "content": system}] if system else []
    asked = prompt if raw else [*turns, {"role": "user", "content": prompt}]
    for piece in stream(hf_model_of(model), model.tokenizer, asked, options):
        typer.echo(piece, nl=False)
    typer.echo()
