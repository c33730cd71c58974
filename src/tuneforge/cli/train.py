"""`tuneforge train`: fine-tune a classifier from a labelled file."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from tuneforge.cli.app import app


@app.command(
    epilog="Examples:\n\n"
    "tuneforge train train.csv --eval test.csv --out runs/bank77\n\n"
    "tuneforge train train.csv --method lora --epochs 3 --out runs/lora\n\n"
    "tuneforge train train.csv --out runs/x --resume   (continue a killed run)\n\n"
    "tuneforge train skills.jsonl --task token-classification --label-col tags_skill\n\n"
    "tuneforge train --labels labels.yaml --method zeroshot --out runs/zs   (no labelled data)"
)
def train(
    data: Path | None = typer.Argument(
        None, help="Training file: CSV, TSV, JSONL or Parquet (optional with --labels)."
    ),
    labels: str | None = typer.Option(
        None,
        "--labels",
        help="Zero-shot classes: labels.yaml or a,b,c. DATA then is optional unlabelled text.",
    ),
    eval_file: Path | None = typer.Option(None, "--eval", help="Held-out file scored at the end."),
    val_file: Path | None = typer.Option(
        None,
        "--val",
        help="Validation file for early stopping (default: a stratified split of DATA).",
    ),
    out: Path = typer.Option(Path("runs/model"), "--out", "-o", help="Artifact directory."),
    task: str | None = typer.Option(
        None,
        help="text-classification or token-classification (default: from the data's shape; "
        "`tuneforge info` lists tasks and their methods).",
    ),
    method: str | None = typer.Option(None, help="auto, head, full, lora, partial, ..."),
    base: str | None = typer.Option(
        None, help="minilm, e5-multilingual, mpnet, a local HF dir, or a pair: mpnet+minilm."
    ),
    text_col: str | None = typer.Option(None, help="Text column (auto-detected)."),
    label_col: str | None = typer.Option(
        None,
        help="Label column (auto-detected); token data: the tag column number (CoNLL) or "
        "layer (tags_skill).",
    ),
    config: Path | None = typer.Option(None, help="YAML TrainConfig; flags override it."),
    epochs: float | None = typer.Option(None),
    lr: float | None = typer.Option(None),
    batch_size: int | None = typer.Option(None),
    grad_accum: int | None = typer.Option(None),
    max_length: int | None = typer.Option(None),
    seed: int | None = typer.Option(None),
    max_minutes: float | None = typer.Option(None, help="Stop training after this budget."),
    early_stopping: int | None = typer.Option(None, help="Patience in evaluations; 0 = off."),
    option: list[str] = typer.Option(
        [], "--option", "-O", help="Method option KEY=VALUE (YAML value), repeatable."
    ),
    task_option: list[str] = typer.Option(
        [],
        "--task-option",
        "-T",
        help="Task option KEY=VALUE, repeatable (token-classification: scheme=iob1, "
        "label_all_subtokens=true, window_overlap=0.25).",
    ),
    compile_: bool | None = typer.Option(
        None, "--compile/--no-compile", help="torch.compile training (1.6x faster steps here)."
    ),
    bf16: bool | None = typer.Option(None, "--bf16/--no-bf16", help="bf16 autocast (needs AMX)."),
    resume: bool = typer.Option(False, help="Continue from the last checkpoint of --out."),
    progress: bool = typer.Option(True, help="Show the progress bar."),
) -> None:
    """Train a model (a text classifier, a token tagger, ...) and save a self-contained model
    directory."""
    from rich.console import Console

    from tuneforge.config import TrainConfig
    from tuneforge.tuning import tune

    values = dict(
        task=task,
        method=method,
        base=base,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        grad_accum=grad_accum,
        max_length=max_length,
        seed=seed,
        max_minutes=max_minutes,
        early_stopping=early_stopping,
        compile=compile_,
        bf16=bf16,
    )
    base_cfg = TrainConfig.from_yaml(config) if config else TrainConfig()
    # only what the YAML or a flag set: the task fills its own defaults for the rest
    given = {k: v for k, v in values.items() if v is not None}
    merged = {**base_cfg.model_dump(exclude_unset=True), **given}
    merged["method_options"] = {**merged.get("method_options", {}), **parse_options(option)}
    merged["task_options"] = {**merged.get("task_options", {}), **parse_options(task_option)}
    cfg = TrainConfig.build(**merged)
    if data is None and labels is None:
        from tuneforge.errors import ConfigError

        raise ConfigError("Give a training file DATA, or --labels for a zero-shot model.")
    model = tune(
        data,
        eval_file,
        val_data=val_file,
        out=out,
        text_col=text_col,
        label_col=label_col,
        config=cfg,
        resume=resume,
        progress=progress,
        labels=labels,
    )
    console = Console()
    if getattr(model, "eval_result", None) is not None:
        console.print(model.eval_result.table(f"Evaluation on {eval_file}"))
        typer.echo(f"eval: {model.eval_result.summary_line()}")
    if "validation" in model.metrics:
        console.print(f"validation: {json.dumps(model.metrics['validation'])}")
    typer.echo(f"Saved model to {out} (method {model.config.method}).")


def parse_options(pairs: list[str]) -> dict:
    import yaml

    from tuneforge.errors import ConfigError

    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--option expects KEY=VALUE, got '{pair}' (e.g. -O top_layers=3).")
        key, value = pair.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out
