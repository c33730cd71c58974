"""`tune`: data file in, trained and evaluated `TunedModel` out — the one-call public API."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import torch

from tuneforge.artifact import ArtifactConfig, environment_versions, invoking_command, now_iso
from tuneforge.config import TrainConfig
from tuneforge.errors import ConfigError
from tuneforge.methods import METHODS, MethodContext, get_method
from tuneforge.methods.auto import choose_for_task, model_scale
from tuneforge.methods.base import pair_capable_methods
from tuneforge.models.registry import resolve_base
from tuneforge.runtime import TorchRuntime
from tuneforge.tasks import Task, detect_task, get_task
from tuneforge.training.progress import console
from tuneforge.tuned_model import LOG_FILE, TunedModel


def _as_dataset(task: Task, data, text_col, label_col, require_labels=True):
    if isinstance(data, str | Path):
        return task.load(data, text_col, label_col, require_labels=require_labels)
    return data


def tune(
    train,
    eval_data=None,
    *,
    task: str | None = None,
    method: str | None = None,
    base: str | None = None,
    out: str | Path | None = None,
    val_data=None,
    monitor_data=None,
    text_col: str | None = None,
    label_col: str | None = None,
    config: TrainConfig | None = None,
    resume: bool = False,
    progress: bool = True,
    on_step=None,
    labels=None,
    **options,
) -> TunedModel:
    """Train a model for `task` on `train`; evaluate on `eval_data`; save to `out` if given.

    Data is a file path or the task's dataset (a `TextDataset` for text classification). The
    task is `task`, else the config's, else what the training file's shape says (see
    `tuneforge.tasks.detect_task`): text classification unless the data has token tags.

    Validation for early stopping is `val_data`, or a stratified split of `train`; `eval_data`
    is only scored at the end, so its figures are honest. `monitor_data` is scored at every
    evaluation of the training loop, for a learning curve, and never selected on. With `labels`
    (names, a list, or a labels YAML) a zero-shot model is built; `train` is then optional
    unlabelled text.
    """
    cfg = _config_with(config, method=method, base=base, task=task, **options)
    cfg, task_impl = _resolve_task(cfg, train)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    zero_shot = labels is not None
    if zero_shot:
        from tuneforge.methods.zeroshot.data import zero_shot_setup

        cfg, train_ds, label_names = zero_shot_setup(cfg, train, labels, text_col)
    else:
        train_ds = _as_dataset(task_impl, train, text_col, label_col)
        task_impl.check_trainable(train_ds)
        label_names = task_impl.label_names(train_ds)
    read = lambda data: _as_dataset(task_impl, data, text_col, label_col)  # noqa: E731
    eval_ds = read(eval_data) if eval_data is not None else None
    if zero_shot:
        fit_ds = val_ds = train_ds
    elif val_data is not None:
        fit_ds, val_ds = train_ds, read(val_data)
    else:
        fit_ds, val_ds = task_impl.split(train_ds, cfg.val_fraction, cfg.seed)
    base_model = resolve_base(cfg.base)
    name, reason = (
        choose_for_task(cfg.task, train_ds, cfg.max_minutes, cfg.base, model_scale(base_model))
        if cfg.method == "auto"
        else (cfg.method, "chosen by the user")
    )
    if base_model.pair_of and name in METHODS and not METHODS[name].trains_pairs:
        name, reason = _pair_fallback(name, reason, cfg)
    method_impl = get_method(name, cfg.method_options, task=cfg.task)
    if cfg.method == "auto":
        console.print(f"[bold]method auto → {name}[/]: {reason}")
    for warning in _ignored_flags(method_impl, cfg, resume):
        console.print(f"[yellow]warning:[/] {warning}")
    workdir = Path(str(out) + ".ckpt") if out else Path(tempfile.mkdtemp(prefix="tuneforge-"))
    if workdir.exists() and not resume:
        shutil.rmtree(workdir)
    ctx = MethodContext(
        cfg,
        base_model,
        fit_ds,
        val_ds,
        label_names,
        workdir=workdir,
        resume=resume,
        progress=progress,
        log_dir=workdir / "logs",
        on_step=on_step,
        monitor=read(monitor_data) if monitor_data else None,
        task=task_impl,
    )
    for warning in [] if zero_shot else task_impl.warnings(train_ds, eval_ds, ctx):
        console.print(f"[yellow]warning:[/] {warning}")
    for split, ds in ctx.splits().items():  # e.g. long sentences cut into windows
        setattr(ctx, {"eval": "val"}.get(split, split), task_impl.prepare(ctx, ds, split))
    classifier = method_impl.fit(ctx)
    config_out = ArtifactConfig(
        task=cfg.task,
        labels=label_names,
        task_config=task_impl.task_config(classifier, ctx),
        method=name,
        method_reason=reason,
        base=cfg.base,
        text_prefix=classifier.spec.get("text_prefix", base_model.text_prefix),
        max_length=ctx.max_length,
        train_config=cfg.model_dump(mode="json"),
        data=task_impl.stats(train_ds, ctx) if len(train_ds) else {},
        method_details=classifier.spec.get("details", {}),
        versions=environment_versions(),
        created=now_iso(),
        command=invoking_command(),
    )
    model = TunedModel(
        TorchRuntime(classifier),
        task_impl.processor(ctx, classifier),
        config_out,
        log=_read_log(workdir / "logs" / LOG_FILE),
    )
    model.extra_files = [lambda d: _copy_tensorboard(workdir / "logs", d)]
    if getattr(val_ds, "labels", None) is not None:
        model.metrics["validation"] = model.evaluate(val_ds).summary()
        if config_out.method_details.get("trained_on_validation"):
            model.metrics["validation"]["held_out"] = False  # fitted on: an optimistic score
    elif (best := _best_evaluation(model.log, cfg.metric or task_impl.default_metric)) is not None:
        # no labels to score (a chat model): the validation scores of the restored checkpoint
        model.metrics["validation"] = best
    if eval_ds is not None:
        result = model.evaluate(eval_ds)
        model.metrics["eval"] = result.to_dict()
        model.eval_result = result
    if out:
        model.save(out)
    shutil.rmtree(workdir, ignore_errors=True)  # the run finished: checkpoints are spent
    return model


def _resolve_task(cfg: TrainConfig, train) -> tuple[TrainConfig, Task]:
    """The config with its task (given, else detected from the training file) and the
    task's metric (given and valid for the task, else its default)."""
    name = cfg.task or detect_task(train if isinstance(train, str | Path) else None)
    impl = get_task(name).configured(cfg.task_options)
    metric = cfg.metric or impl.default_metric
    if metric not in impl.metrics:
        raise ConfigError(
            f"Metric '{metric}' is not one of the {name} task's: {', '.join(impl.metrics)}. "
            "Pass --metric with one of them."
        )
    # the task's own defaults (a decoder's batch size) for what the user did not set
    defaults = {k: v for k, v in impl.default_config.items() if k not in cfg.model_fields_set}
    return cfg.model_copy(update={"task": impl.name, "metric": metric, **defaults}), impl


def _config_with(config: TrainConfig | None, **values) -> TrainConfig:
    """`config` with the given values over it (None = not given), validated like the CLI's."""
    given = {k: v for k, v in values.items() if v is not None}
    if config is None:
        return TrainConfig.build(**given)
    # only what the config set, so a task's defaults can still fill the rest
    return TrainConfig.build(**{**config.model_dump(exclude_unset=True), **given})


def _ignored_flags(method, cfg: TrainConfig, resume: bool) -> list[str]:
    """A warning for each run flag the user set that the chosen method does not apply."""
    asked = {"resume": resume, "compile": cfg.compile, "max_minutes": cfg.max_minutes is not None}
    applied = method.run_flags(cfg.task)
    return [
        f"--{flag.replace('_', '-')} is ignored by method '{method.name}', which does not train "
        "with the Trainer loop"
        for flag, on in asked.items()
        if on and flag not in applied
    ]


def _pair_fallback(name: str, reason: str, cfg: TrainConfig) -> tuple[str, str]:
    """`auto` on a base pair falls back to `head`; an explicit method that cannot is an error."""
    usable = pair_capable_methods()
    if cfg.method != "auto":
        raise ConfigError(
            f"Method '{name}' trains a single encoder, and base '{cfg.base}' is a pair. Use "
            f"--method {' or '.join(usable)}, or one base model."
        )
    only = ", ".join(usable)
    return "head", f"{reason}; but base '{cfg.base}' is a pair, which only {only} train: head"


def _read_log(file: Path) -> list[dict]:
    import json

    return [json.loads(x) for x in file.read_text().splitlines()] if file.exists() else []


def _copy_tensorboard(log_dir: Path, target: Path) -> None:
    events = list(log_dir.glob("events.out.tfevents.*")) if log_dir.exists() else []
    if events:
        (target / "logs").mkdir(exist_ok=True)
        for file in events:
            shutil.copy2(file, target / "logs" / file.name)


def _best_evaluation(log: list[dict], metric: str) -> dict | None:
    """The logged validation scores with the best `metric` (the weights the loop restored)."""
    evals = [e for e in log if metric in e and "train_seconds" in e]
    if not evals:
        return None
    best = max(evals, key=lambda e: e[metric])
    skip = {"wall_time", "eval_seconds_before", "train_seconds"}
    return {k: v for k, v in best.items() if k not in skip and not k.startswith("monitor_")}
