"""Terminal chat with an assistant: each reply shows its path, confidence and intent."""

from __future__ import annotations

import secrets

from rich.console import Console

from tuneforge.apps.assist.pipeline import Assistant

STYLES = {"answer": "green", "retrieval": "blue", "handoff": "yellow"}


def describe(reply) -> str:
    """One dim line under a reply: which path answered, how sure, from what."""
    parts = [f"[{STYLES[reply.path]}]{reply.path}[/]", f"confidence {reply.confidence:.2f}"]
    if reply.path == "answer":
        parts.append(f"intent {reply.intent}")
    if reply.path == "retrieval" and reply.sources:
        parts.append(reply.sources[0]["title"])
        if reply.written:
            parts.append("phrased by the writer")
    if reply.ticket_id is not None:
        parts.append(f"ticket #{reply.ticket_id}")
    return " · ".join(parts)


def run_chat(assistant: Assistant, console: Console | None = None) -> None:
    console = console or Console()
    session_id = "terminal-" + secrets.token_hex(6)
    console.print("[bold]Support assistant[/] — type a question; 'quit' or Ctrl-D to leave.")
    while True:
        try:
            message = console.input("[bold cyan]you>[/] ").strip()
        except EOFError:
            break
        if message.lower() in ("quit", "exit"):
            break
        if not message:
            continue
        reply = assistant.respond(session_id, message)
        console.print(f"[bold]assistant>[/] {reply.reply}", highlight=False)
        console.print(f"  [dim]{describe(reply)}[/]", highlight=False)
