"""`tuneforge assist`: a customer-service assistant (init, train, train-writer, chat, serve,
eval)."""

from __future__ import annotations

from pathlib import Path

import typer

assist_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode="markdown",
    help="Customer-service assistant: approved answers by intent, help-article retrieval, "
    "hand-off to a person for the rest.",
)

DIR = typer.Argument(..., help="The assistant's directory (with assist.yaml).")


@assist_app.command(epilog="Example: tuneforge assist init my-assistant")
def init(
    directory: Path = typer.Argument(..., help="Directory to create."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing assist.yaml."),
) -> None:
    """Create an assistant with the banking77 demo: intents, 77 answers, help articles."""
    from tuneforge.apps.assist.build import init_assistant

    init_assistant(directory, force)
    typer.echo(
        f"Created {directory}. Edit its intents, answers and articles, then run "
        f"`tuneforge assist train {directory}`."
    )


@assist_app.command()
def train(directory: Path = DIR) -> None:
    """Train the intent model (head method) and calibrate the answer and retrieval thresholds."""
    from tuneforge.apps.assist.build import train_assistant
    from tuneforge.apps.assist.knowledge import AssistConfig

    calibration = train_assistant(directory)
    kind = AssistConfig.load(directory).oos_score
    typer.echo(train_summary(calibration, kind))


@assist_app.command(
    name="train-writer",
    epilog="Example: tuneforge assist train-writer my-assistant --conversations past.jsonl "
    "--per-intent 5",
)
def train_writer(
    directory: Path = DIR,
    conversations: Path | None = typer.Option(
        None, help="Historical conversations (messages JSONL), masked before training."
    ),
    base: str = typer.Option("smollm2", help="The chat model to fine-tune."),
    method: str = typer.Option("lora", help="lora, full or partial."),
    epochs: int = typer.Option(1, min=1),
    per_intent: int | None = typer.Option(
        None, min=1, help="Example questions per intent to train on (default: all)."
    ),
    max_length: int = typer.Option(256, min=32, help="Tokens per training conversation."),
    batch_size: int = typer.Option(8, min=1, help="Conversations per training step."),
) -> None:
    """Fine-tune a chat model that phrases retrieved article passages as answers (optional)."""
    from tuneforge.apps.assist.writer import train_writer as train

    run = train(
        directory,
        conversations,
        base=base,
        method=method,
        epochs=epochs,
        per_intent=per_intent,
        max_length=max_length,
        batch_size=batch_size,
    )
    loss = run.model.metrics.get("validation", {}).get("eval_loss")
    scored = f" Validation loss {loss:.3f}." if loss is not None else ""
    typer.echo(
        f"Trained the writer on {run.pairs} question → approved-answer pairs and "
        f"{run.conversations} conversations ({run.file}).{scored} Saved in "
        f"{directory / 'writer'}, recorded in assist.yaml: the retrieval path now phrases the "
        "article it cites (set `writer: null` there to quote the article instead)."
    )


BOUND_BY = {
    "accuracy": "set by target_accuracy",
    "in_scope_recall": "set by target_in_scope_recall",
    "oos_handoff": "raised for the out-of-scope examples",
    "min_in_scope_recall": "raised for the out-of-scope examples as far as min_in_scope_recall "
    "allows",
}


def train_summary(calibration, kind: str) -> str:
    """What `assist train` reports: the validation figures behind the thresholds."""
    measured, seen = calibration.measured, calibration.measured[kind]
    retrieval = (
        f"Retrieval threshold (cosine) {calibration.retrieval:.3f}."
        if calibration.retrieval != float("inf")
        else "No articles: retrieval is off."
    )
    lines = [
        f"Validation: intent accuracy {measured['accuracy']:.3f}; at {kind} >= "
        f"{calibration.answer[kind]:.3f} ({BOUND_BY[seen['bound_by']]}) the assistant answers "
        f"{seen['answered']:.0%} of questions, {seen['accuracy_of_answered']:.3f} of them "
        f"correctly. {retrieval}"
    ]
    unknown, expected = measured["unknown_intents"], seen.get("expected_unknown_handoff")
    if expected is not None:
        lines.append(
            f"Unknown questions: about {expected:.0%} handed off or sent to an article; in-scope "
            f"questions answered {seen['answered']:.0%} (estimated by leaving "
            f"{unknown['held_out_per_fold']} of {unknown['intents']} intents out, "
            f"{unknown['folds']} folds; questions far from every intent fare better)."
        )
    else:
        why = unknown.get("note", "the accuracy target was out of reach in a fold")
        lines.append(f"Unknown questions: not estimated ({why}).")
    if seen.get("oos_handoff") is not None:
        target, floor = (
            measured["targets"]["oos_handoff"],
            measured["targets"]["min_in_scope_recall"],
        )
        short = (
            f"; not reached: a higher threshold would answer fewer than {floor:.0%} of in-scope "
            "questions (min_in_scope_recall)"
            if seen["oos_handoff"] < target
            else ""
        )
        lines.append(
            f"Your {measured['oos_examples']} out-of-scope examples: {seen['oos_handoff']:.0%} "
            f"handed off or sent to an article (target {target:.0%}{short})."
        )
    return "\n".join(lines)


@assist_app.command()
def chat(
    directory: Path = DIR,
    database: str | None = typer.Option(None, help="Database URL (default: assist.yaml's)."),
) -> None:
    """Chat with the assistant in the terminal."""
    from tuneforge.apps.assist.chat import run_chat
    from tuneforge.apps.assist.knowledge import AssistConfig
    from tuneforge.apps.assist.pipeline import Assistant, open_store

    store = open_store(directory, AssistConfig.load(directory), database)
    run_chat(Assistant.load(directory, store))


@assist_app.command(
    epilog="Example: TUNEFORGE_API_KEYS=$(python -c "
    "'import secrets;print(secrets.token_urlsafe(32))') tuneforge assist serve my-assistant "
    " (then open http://127.0.0.1:8000/ and enter the key)"
)
def serve(
    directory: Path = DIR,
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000),
    database: str | None = typer.Option(None, help="Database URL (default: assist.yaml's)."),
    api_key_file: Path | None = typer.Option(None, help="API keys, one per line."),
    insecure_no_auth: bool = typer.Option(
        False, "--insecure-no-auth", help="Serve without API keys (local experiments only)."
    ),
    max_message_chars: int = typer.Option(2_000, help="Characters per message."),
    rate: float = typer.Option(5.0, help="Messages per second per key (0: unlimited)."),
    burst: int = typer.Option(10, help="Messages a key may send at once."),
) -> None:
    """Serve `POST /v1/chat` and a web chat page at `/`."""
    import uvicorn

    from tuneforge.apps.assist.api import build_app
    from tuneforge.apps.assist.knowledge import AssistConfig
    from tuneforge.apps.assist.pipeline import Assistant, open_store
    from tuneforge.serving.auth import server_keys
    from tuneforge.serving.limits import Limits
    from tuneforge.serving.logs import setup_logging

    keys = server_keys(api_key_file, insecure_no_auth)
    store = open_store(directory, AssistConfig.load(directory), database)
    limits = Limits(
        max_body_bytes=16 * 1024,
        max_texts=1,
        max_text_chars=max_message_chars,
        rate_per_second=rate,
        burst=burst,
        max_inflight=64,
    )
    app = build_app(
        Assistant.load(directory, store),
        api_keys=keys,
        limits=limits,
    )
    setup_logging()
    typer.echo(f"Assistant on http://{host}:{port}/", err=True)
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False)


@assist_app.command()
def tickets(
    directory: Path = DIR,
    database: str | None = typer.Option(None, help="Database URL (default: assist.yaml's)."),
    all_tickets: bool = typer.Option(False, "--all", help="Closed tickets too."),
) -> None:
    """Hand-off tickets with their (masked) conversations, for the support team."""
    from tuneforge.apps.assist.knowledge import AssistConfig
    from tuneforge.apps.assist.pipeline import open_store

    store = open_store(directory, AssistConfig.load(directory), database)
    found = store.tickets(None if all_tickets else "open")
    for ticket in found:
        typer.echo(f"#{ticket.id} [{ticket.status}] session {ticket.session_id}: {ticket.reason}")
        for message in ticket.transcript:
            typer.echo(f"    {message['role']:>9}: {message['text']}")
    typer.echo(f"{len(found)} ticket(s).")


@assist_app.command(name="eval")
def evaluate(
    directory: Path = DIR,
    test: Path | None = typer.Option(None, help="Labelled test questions (text,label)."),
    oos: list[str] = typer.Option(
        [],
        help="NAME=TRAIN,TEST: a labelled data set for the leave-intents-out out-of-scope "
        "measurement (repeatable).",
    ),
    out_of_domain: Path | None = typer.Option(
        None, help="Messages the assistant should hand off (e.g. another domain's questions)."
    ),
    retrieval_test: Path | None = typer.Option(
        None,
        help="Held-out retrieval queries (query,article,section) never used for calibration, "
        "e.g. DIR/retrieval_test.csv of the demo.",
    ),
    folds: int = typer.Option(5, min=1, help="Leave-intents-out folds per data set."),
    held_out: float = typer.Option(0.25, min=0.05, max=0.9, help="Share of intents held out."),
    out: Path | None = typer.Option(None, help="Write the figures to this JSON file."),
) -> None:
    """Intent accuracy, out-of-scope AUROC and FPR@95%TPR (leave-intents-out), recall@k."""
    from tuneforge.apps.assist.evaluate import EvalOptions, print_summary, run_eval

    options = EvalOptions(
        test=test,
        oos=oos,
        out_of_domain=out_of_domain,
        retrieval_test=retrieval_test,
        folds=folds,
        held_out=held_out,
    )
    print_summary(run_eval(directory, options, out))
