"""What a task is (`Task`) and the task registry, at right angles to the method registry.

A method says *how* a base model is adapted (which weights train, what is cached); a task says
*what* it is adapted to: the data's shape, targets and loss, the head on the backbone, metrics,
and how outputs become predictions. `full`, `lora` and `partial` train any task that gives them a
model, a tokenizer call and a `TrainJob`; a task is one module here plus one `@register_task`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from tuneforge.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from tuneforge.artifact import ArtifactConfig
    from tuneforge.methods.base import MethodContext
    from tuneforge.training.job import TrainJob


class TaskConfig(BaseModel):
    """A task's typed part of the artifact config (`tuneforge.yaml`'s `task_config`)."""

    model_config = ConfigDict(extra="forbid")


class Task:
    """A kind of problem. Subclasses set the class attributes and implement the methods."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    Config: ClassVar[type[TaskConfig]] = TaskConfig
    metrics: ClassVar[tuple[str, ...]] = ()  # what the training loop can select on
    # the Open Inference Protocol (v2) outputs: name -> datatype, one element per text
    v2_outputs: ClassVar[dict[str, str]] = {}
    # method -> its default learning rate for this task, where it differs from the method's
    default_lrs: ClassVar[dict[str, float]] = {}
    # TrainConfig fields whose default differs for this task (used where the user set none)
    default_config: ClassVar[dict[str, Any]] = {}
    # dynamic axes of the ONNX graph's outputs (`logits`, `embedding`); default: batch only
    onnx_axes: ClassVar[dict[str, dict[int, str]]] = {}
    default_metric: ClassVar[str] = ""
    # method -> its default options for this task (under the user's `-M key=value`)
    default_method_options: ClassVar[dict[str, dict]] = {}
    recognizes_dirs: ClassVar[bool] = False  # can `recognizes` be asked about a directory?
    embeds_rows: ClassVar[bool] = False  # one pooled vector per row (`head`'s logistic regression)

    def configured(self, options: dict) -> Task:
        """This task with the user's task options (its `Config` fields); errors are clear."""
        if options:
            raise ConfigError(f"The {self.name} task takes no options (got {sorted(options)}).")
        return self

    # ---- data --------------------------------------------------------------------------------
    def load(
        self,
        path: str | Path,
        text_col: str | None = None,
        label_col: str | None = None,
        require_labels: bool = True,
    ) -> Any:
        """Read and check a data file; errors name the file, line and column."""
        raise NotImplementedError

    @classmethod
    def recognizes(cls, path: Path) -> bool:
        """Does this file's shape say this task (and no other) without doubt?"""
        return False

    def check_trainable(self, ds) -> None:
        """Raise DataError when `ds` cannot train a model (too few rows, one class, ...)."""

    def split(self, ds, fraction: float, seed: int) -> tuple[Any, Any]:
        """(fit, validation): validation is where every choice is made."""
        raise NotImplementedError

    def choose_method(
        self, train, max_minutes: float | None, base: str | None, model_scale: float
    ) -> tuple[str, str]:
        """`auto`'s decision table for this task: (method, the reason, said to the user)."""
        raise NotImplementedError

    def label_names(self, ds) -> list[str]:
        """The model's output names, in output order."""
        raise NotImplementedError

    def inputs(self, ds) -> list:
        """What a method's `featurize` receives per row: texts, or word lists."""
        raise NotImplementedError

    def token_ids(self, ctx: MethodContext, inputs: list) -> list[list[int]]:
        """The base tokenizer's ids of each input, truncated to the model's window."""
        raise NotImplementedError

    def prepare(self, ctx: MethodContext, ds, split: str):
        """The rows a method trains on (e.g. long sentences cut into windows); warnings printed."""
        return ds

    def warnings(self, train, eval_ds, ctx: MethodContext) -> list[str]:
        return []

    def stats(self, ds, ctx: MethodContext) -> dict:
        return {}

    # ---- model -------------------------------------------------------------------------------
    def new_model(self, ctx: MethodContext, encoder: torch.nn.Module, **head) -> torch.nn.Module:
        """A fresh head on `encoder`; the model has `.encoder`, `.head` and `readout(hidden,
        mask)` (the head on the encoder's last hidden states), plus a `spec` dict."""
        raise NotImplementedError

    def load_model(self, encoder: torch.nn.Module, config: ArtifactConfig) -> torch.nn.Module:
        """The model `new_model` built, shaped from a saved config (weights loaded after)."""
        raise NotImplementedError

    def load_encoder(self, directory: Path) -> torch.nn.Module:
        """An artifact's saved encoder folder (`encoder/`)."""
        from tuneforge.models.pair import load_encoder_dir

        return load_encoder_dir(directory)

    # ---- inputs: what turns rows into model batches (a tokenizer, an image processor) --------
    def processor(self, ctx: MethodContext, model=None):
        """What the artifact keeps to turn inputs into batches (saved with `save_pretrained`)."""
        return ctx.load_tokenizer()

    def load_processor(self, directory: Path, config: ArtifactConfig):
        from tuneforge.runtime import load_tokenizer

        return load_tokenizer(directory)

    def map_inputs(self, model, fn, inputs: list, batch_size: int, progress: str | None) -> list:
        """`fn` (a batch -> one result per row) over a tuned model's inputs, in input order."""
        from tuneforge.models.encode import map_batches

        config = model.config
        return map_batches(
            fn, model.tokenizer, inputs, config.max_length, batch_size, config.text_prefix, progress
        )

    def embed_rows(self, ctx: MethodContext, model, inputs: list, progress: str | None = None):
        """Pooled vectors (n, dim) of `inputs` by the model's current encoder (`model.embed`)."""
        import numpy as np

        from tuneforge.models.encode import map_batches

        model.eval()
        rows = map_batches(
            lambda b: list(model.embed(**b).numpy()),
            ctx.load_tokenizer(),
            inputs,
            ctx.max_length,
            prefix=ctx.base.text_prefix,
            progress=progress,
        )
        return np.stack(rows).astype(np.float32)

    def input_job(self, ctx: MethodContext, module: torch.nn.Module) -> TrainJob:
        """A TrainJob whose features are the raw inputs (token ids): the whole model trains."""
        from tuneforge.training.batching import pad_token_batch

        pad = ctx.load_tokenizer().pad_token_id or 0
        return ctx.job(
            module,
            lambda inputs, split: ctx.tokenize(inputs),
            lambda ids: pad_token_batch(ids, pad),
        )

    def task_config(self, model: torch.nn.Module, ctx: MethodContext) -> dict:
        """This task's part of the artifact config, from the trained model."""
        return {}

    # ---- training ----------------------------------------------------------------------------
    def job(self, ctx: MethodContext, module, features: dict, collate_one, lengths) -> TrainJob:
        """The TrainJob over per-row `features` ({split: [feature per row]})."""
        raise NotImplementedError

    # ---- inference ---------------------------------------------------------------------------
    def load_for(self, model, data, text_col=None, label_col=None):
        """`data` (a path or a dataset) as a dataset to evaluate `model` on."""
        if isinstance(data, str | Path):
            return self.load(data, text_col, label_col)
        return data

    def predict(self, model, inputs, **options) -> list:
        raise NotImplementedError

    def prediction_columns(self, model, texts: list[str], batch_size: int = 64) -> dict:
        """{column: one value per text}: what `predict --file` adds to each row."""
        raise NotImplementedError

    def v2_columns(self, predictions: list) -> dict[str, list]:
        """{output name: one element per prediction} for the v2 protocol's outputs."""
        raise NotImplementedError

    def evaluate(self, model, ds, batch_size: int = 64):
        """An object with `to_dict()` (the metrics JSON) and `summary()` (headline figures)."""
        raise NotImplementedError


TASKS: dict[str, Task] = {}


def with_options(task: Task, options: dict, recorded: tuple[str, ...] = ()) -> Task:
    """A new `task` of the same class with `options` over its own (`Task.configured` for a task
    whose `__init__` takes its options); a bad option is a ConfigError listing the options,
    except the `recorded` fields, which training writes."""
    from pydantic import ValidationError

    try:
        return type(task)({**task.options.model_dump(), **options})
    except ValidationError as exc:
        fields = ", ".join(k for k in task.Config.model_fields if k not in recorded)
        raise ConfigError(
            f"Invalid option for the {task.name} task: {exc.errors()[0]['msg']} "
            f"at {exc.errors()[0]['loc']}. Options: {fields}."
        ) from None


def print_warnings(warnings: list[str]) -> None:
    """A data set's or a tokenization's warnings, on the console, in yellow."""
    if warnings:
        from tuneforge.training.progress import console

        for warning in warnings:
            console.print(f"[yellow]warning:[/] {warning}")


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: make a task available by its `name` to `tune`, the CLI and serving."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a `name`")
    TASKS[cls.name] = cls()
    return cls


# other names a task is known by (e.g. the base model kind that trains it)
TASK_ALIASES: dict[str, str] = {"causal-lm": "chat"}


def get_task(name: str) -> Task:
    name = TASK_ALIASES.get(name, name)
    if name not in TASKS:
        raise ConfigError(f"Unknown task '{name}'. Choose one of: {', '.join(sorted(TASKS))}.")
    return TASKS[name]


DEFAULT_TASK = "text-classification"


def detect_task(path: str | Path | None) -> str:
    """The task a data file's shape says, when only one task recognizes it; else the default."""
    if path is None or not Path(path).exists():
        return DEFAULT_TASK
    asked = [t for t in TASKS.items() if Path(path).is_file() or t[1].recognizes_dirs]
    found = [name for name, task in asked if task.recognizes(Path(path))]
    return found[0] if len(found) == 1 else DEFAULT_TASK
