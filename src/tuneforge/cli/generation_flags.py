"""The decoding flags `generate` and `chat` share, and the chat model both load."""

from __future__ import annotations

from pathlib import Path

import typer

MAX_NEW_TOKENS = typer.Option(None, help="Tokens generated at most (256).")
TEMPERATURE = typer.Option(None, help="0 = greedy (default); > 0 samples.")
TOP_P = typer.Option(None, help="Nucleus sampling mass; 1 = off.")
TOP_K = typer.Option(None, help="Sample among the k likeliest; 0 = off.")
REPETITION_PENALTY = typer.Option(None, help="> 1 discourages repeats.")
STOP = typer.Option(None, "--stop", help="A string that ends the text (repeat).")
SEED = typer.Option(None, help="Makes sampling reproducible.")
PRECISION = typer.Option(
    None, help="Weights while decoding: fp32 (default), bf16 (AMX/AVX512-BF16 CPUs), int8."
)


def load_chat_model(model_dir: Path, verb: str):
    """The TunedModel at `model_dir`, which must be a chat model."""
    from tuneforge.errors import ConfigError
    from tuneforge.tuned_model import TunedModel

    model = TunedModel.load(model_dir)
    if model.config.task != "chat":
        raise ConfigError(
            f"{model_dir} is a {model.config.task} model; `{verb}` needs a chat model (train "
            "one with `tuneforge train chats.jsonl --task chat`). Use `tuneforge predict`."
        )
    return model


def generation_options(stop: list[str] | None, **flags):
    """GenerationOptions from the flags (unset ones keep their defaults)."""
    from tuneforge.generation import GenerationOptions

    return GenerationOptions.build(stop=stop or None, **flags)
