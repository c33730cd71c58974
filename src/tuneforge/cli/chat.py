"""`tuneforge chat`: a conversation with a chat model in the terminal, its replies streamed.

Each reply is generated from the whole conversation so far (rendered with the model's chat
template). When the conversation plus room for a reply (`--max-new-tokens`) no longer fits the
model's window, the oldest exchanges are dropped, with a note; the system prompt always stays.
"""

from __future__ import annotations

from pathlib import Path

import typer

from tuneforge.cli import generation_flags as flags
from tuneforge.cli.app import app

COMMANDS = "/reset clears the conversation, /exit leaves (so do Ctrl-D and Ctrl-C)"


@app.command(
    epilog="Examples:\n\n"
    "tuneforge chat runs/support-lm\n\n"
    'tuneforge chat runs/support-lm --system "Answer in one sentence." --temperature 0.7'
)
def chat(
    model_dir: Path = typer.Argument(..., help="Model directory of a `chat` run."),
    system: str | None = typer.Option(None, help="A system message that starts the chat."),
    max_new_tokens: int | None = flags.MAX_NEW_TOKENS,
    temperature: float | None = flags.TEMPERATURE,
    top_p: float | None = flags.TOP_P,
    top_k: int | None = flags.TOP_K,
    repetition_penalty: float | None = flags.REPETITION_PENALTY,
    stop: list[str] = flags.STOP,
    seed: int | None = flags.SEED,
    precision: str | None = flags.PRECISION,
    context: int | None = typer.Option(
        None, help="Tokens of conversation + reply kept (default: the model's window)."
    ),
) -> None:
    """Chat with a fine-tuned chat model: type a message, read the reply as it is written.
    Ctrl-C during a reply stops that reply."""
    from tuneforge.errors import ConfigError
    from tuneforge.tasks.chat import hf_model_of

    model = flags.load_chat_model(model_dir, "chat")
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
    lm = hf_model_of(model)
    window = context or lm.config.max_position_embeddings
    if options.max_new_tokens >= window:
        raise ConfigError(
            f"--max-new-tokens {options.max_new_tokens} leaves no room for the conversation in "
            f"a {window}-token window; lower it (or raise --context)."
        )
    session = ChatSession(lm, model.tokenizer, options, window, system)
    typer.echo(f"Chatting with {model_dir} ({window}-token window). {COMMANDS}.")
    session.run()


class ChatSession:
    """The conversation (user and assistant turns, oldest first) and the read-reply loop."""

    def __init__(self, lm, tokenizer, options, window: int, system: str | None) -> None:
        self.lm, self.tokenizer, self.options = lm, tokenizer, options
        self.budget = window - options.max_new_tokens  # prompt tokens that leave room to reply
        self.system = [{"role": "system", "content": system}] if system else []
        self.turns: list[dict[str, str]] = []

    def run(self) -> None:
        while True:
            try:
                line = input("> ")
            except (EOFError, KeyboardInterrupt):
                typer.echo()
                return
            text = line.strip()
            if text in ("/exit", "/quit"):
                return
            if text == "/reset":
                self.turns = []
                typer.echo("(conversation cleared)")
            elif text.startswith("/"):
                typer.echo(f"Unknown command {text.split()[0]}: {COMMANDS}.")
            elif text:
                self.reply(text)

    def reply(self, text: str) -> None:
        from tuneforge.generation import stream

        turns = self.fit([*self.turns, {"role": "user", "content": text}])
        if turns is None:
            typer.echo(
                f"(that message is too long: with room for a {self.options.max_new_tokens}-token "
                "reply it does not fit the window; send a shorter one, or lower --max-new-tokens)"
            )
            return
        pieces: list[str] = []
        ended: list = []  # the Generation, once decoding is over
        messages = [*self.system, *turns]
        try:
            for piece in stream(
                self.lm, self.tokenizer, messages, self.options, on_end=ended.append
            ):
                typer.echo(piece, nl=False)
                pieces.append(piece)
        except KeyboardInterrupt:
            typer.echo(" (stopped)", nl=False)
        else:
            if ended and ended[0].finish_reason == "length":
                typer.echo(f"\n(cut at --max-new-tokens {self.options.max_new_tokens})", nl=False)
        typer.echo()
        self.turns = [*turns, {"role": "assistant", "content": "".join(pieces)}]

    def fit(self, turns: list[dict[str, str]]) -> list[dict[str, str]] | None:
        """`turns` without as many of the oldest exchanges as the window needs (with a note);
        None when even the last message alone does not fit."""
        from tuneforge.generation.generate import encode_prompt

        dropped = 0
        while len(encode_prompt(self.tokenizer, [*self.system, *turns])) > self.budget:
            if len(turns) == 1:
                return None
            turns, dropped = turns[2:], dropped + 1  # one user message and its reply
        if dropped:
            exchanges = "exchange" if dropped == 1 else f"{dropped} exchanges"
            typer.echo(f"(dropped the oldest {exchanges} to fit the window)")
        return turns
