"""What every method gets (`MethodContext`) and must provide (`Method.fit`), plus the registry."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import BaseModel as Options
from pydantic import ConfigDict, ValidationError

from tuneforge.config import TrainConfig
from tuneforge.data.dataset import TextDataset
from tuneforge.errors import ConfigError
from tuneforge.models.registry import BaseModel, quiet_hf
from tuneforge.tasks import Task, get_task
from tuneforge.training import Trainer, TrainJob


class MethodOptions(Options):
    model_config = ConfigDict(extra="forbid")


@dataclass
class MethodContext:
    """Data, base model, task and run settings, with the helpers methods share.

    `train`, `val` and `monitor` are the task's datasets (a `TextDataset` for text
    classification); methods reach their rows through `inputs` and the task.
    """

    config: TrainConfig
    base: BaseModel
    train: TextDataset
    val: TextDataset
    label_names: list[str]
    workdir: Path | None = None
    resume: bool = False
    progress: bool = True
    log_dir: Path | None = None
    on_step: Any = None
    # scored at every evaluation for the learning curve (a benchmark's test set), never used
    # to choose anything: selection is on `val`
    monitor: TextDataset | None = None
    task: Task = field(default_factory=lambda: get_task("text-classification"))

    @property
    def multi_label(self) -> bool:
        return bool(getattr(self.train, "multi_label", False))

    @property
    def max_length(self) -> int:
        """The token window: the config's max_length, capped by the base model's."""
        return min(self.config.max_length, self.base.max_length)

    def splits(self) -> dict:
        """{split name: dataset}: "train", "eval" (validation) and, if given, "monitor"."""
        found = {"train": self.train, "eval": self.val}
        if self.monitor is not None:
            found["monitor"] = self.monitor
        return found

    def inputs(self, ds) -> list:
        """The rows of a dataset as the task's methods see them (texts, or word lists)."""
        return self.task.inputs(ds)

    def load_tokenizer(self):
        from transformers import AutoTokenizer

        if not hasattr(self, "_tokenizer"):
            self._tokenizer = AutoTokenizer.from_pretrained(str(self.base.path))
        return self._tokenizer

    def load_encoder(self) -> torch.nn.Module:
        """The base's encoder (a causal LM, with its LM head, for a causal-LM base); for a base
        pair an `EncoderPair` reading our tokenizer's ids."""
        from transformers import AutoModel, AutoModelForCausalLM

        from tuneforge.models.registry import CAUSAL_LM, IMAGE

        quiet_hf()
        torch.manual_seed(self.config.seed)
        if self.base.kind == IMAGE:
            from tuneforge.models.vision import load_backbone

            return load_backbone(self.base)
        auto = AutoModelForCausalLM if self.base.kind == CAUSAL_LM else AutoModel
        encoder = auto.from_pretrained(str(self.base.path))
        if not self.base.pair_of:
            return encoder
        others = [self.for_base(b) for b in self.base.members()[1:]]
        return self.join_encoders([encoder, *(o.load_encoder() for o in others)])

    def for_base(self, base: BaseModel) -> MethodContext:
        """This context with another base model (a member of a base pair)."""
        return replace(self, base=base)

    def join_encoders(self, encoders: list[torch.nn.Module]) -> torch.nn.Module:
        """The base pair's members, loaded (and maybe tuned) one by one, as one encoder."""
        from tuneforge.models.pair import build_pair

        members = self.base.members()
        tokenizers = [
            self.load_tokenizer(),
            *(self.for_base(b).load_tokenizer() for b in members[1:]),
        ]
        return build_pair(members, tokenizers, encoders, self.train.texts)

    def tokenize(self, inputs: list) -> list[list[int]]:
        """Token ids of each input (a text, or a task's row such as a word list)."""
        return self.task.token_ids(self, inputs)

    def token_lengths(self, texts: list[str]) -> list[int]:
        """Untruncated token counts, to report how many texts max_length will cut."""
        tok = self.load_tokenizer()
        ids = tok([self.base.text_prefix + t for t in texts], truncation=False, verbose=False)
        return [len(x) for x in ids["input_ids"]]

    def targets(self, ds) -> torch.Tensor:
        """Text classification's targets: class ids, or 0/1 rows when multi-label."""
        return self.task.targets(self, ds)

    def new_model(self, encoder: torch.nn.Module, **head) -> torch.nn.Module:
        """The task's model: a fresh head on `encoder` (head options: the task's)."""
        return self.task.new_model(self, encoder, **head)

    def job(self, module: torch.nn.Module, featurize, collate_one, lengths=len) -> TrainJob:
        """A TrainJob over per-row features (token ids, cached states, embeddings).

        `featurize(inputs, split)` gives one feature per row of `inputs` (see `inputs`), for
        the training and validation rows and, when the run has monitor data, for those too.
        """
        features = {split: featurize(self.inputs(ds), split) for split, ds in self.splits().items()}
        return self.task.job(self, module, features, collate_one, lengths)

    def token_job(self, module: torch.nn.Module) -> TrainJob:
        """A TrainJob over the raw inputs (token ids; pictures): the whole model trains."""
        return self.task.input_job(self, module)

    def trainer(self, lr: float, part: str | None = None, **config) -> Trainer:
        """The Trainer for this run; `part` names one of several trainings of a run (its own
        checkpoint), `config` overrides settings for it (e.g. the time left)."""
        workdir = self.workdir / part if self.workdir and part else self.workdir
        return Trainer(
            self.config.model_copy(update=config) if config else self.config,
            lr,
            workdir=workdir,
            resume=self.resume,
            progress=self.progress,
            log_dir=self.log_dir,
            on_step=self.on_step,
        )


# Run flags the Trainer implements: resume from a checkpoint, torch.compile, a time budget.
RUN_FLAGS = frozenset({"resume", "compile", "max_minutes"})


class Method:
    """A way to adapt a base model. Subclasses set `name`, `Options`, `default_lr`, and `fit`."""

    name: ClassVar[str] = ""
    Options: ClassVar[type[MethodOptions]] = MethodOptions
    default_lr: ClassVar[float] = 1e-4
    trains_pairs: ClassVar[bool] = False  # can it use a base pair (`--base mpnet+minilm`)?
    tasks: ClassVar[frozenset[str]] = frozenset({"text-classification"})  # what it can train

    def __init__(self, options: dict | None = None) -> None:
        try:
            self.options = self.Options(**(options or {}))
        except ValidationError as exc:
            fields = ", ".join(self.Options.model_fields) or "none"
            raise ConfigError(
                f"Invalid options for method '{self.name}': {exc.errors()[0]['msg']} "
                f"at {exc.errors()[0]['loc']}. Valid options: {fields}."
            ) from None

    def lr(self, config: TrainConfig) -> float:
        """The given lr, else the task's default for this method, else the method's."""
        return config.lr or task_lr(config, self.name) or self.default_lr

    def run_flags(self, task: str = "text-classification") -> frozenset[str]:
        """Which of the Trainer's run flags (`RUN_FLAGS`) this method applies; methods that
        train without the Trainer override it, so `tune` can warn about the others."""
        return RUN_FLAGS

    def fit(self, ctx: MethodContext) -> torch.nn.Module:
        """Train and return the task's model (`ctx.new_model`), with its `spec`."""
        raise NotImplementedError


def task_lr(config: TrainConfig, method: str) -> float | None:
    """A task's own default learning rate for `method`, if it has one (`Task.default_lrs`)."""
    return get_task(config.task or "text-classification").default_lrs.get(method)


METHODS: dict[str, type[Method]] = {}


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: make a method available by its `name` to `tune` and the CLI."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a `name`")
    METHODS[cls.name] = cls
    return cls


def pair_capable_methods() -> list[str]:
    return sorted(name for name, cls in METHODS.items() if cls.trains_pairs)


def methods_for(task: str) -> list[str]:
    return sorted(name for name, cls in METHODS.items() if task in cls.tasks)


def get_method(name: str, options: dict | None = None, task: str | None = None) -> Method:
    if name not in METHODS:
        raise ConfigError(
            f"Unknown method '{name}'. Choose one of: {', '.join(sorted(METHODS))} (or 'auto')."
        )
    if task is not None and task not in METHODS[name].tasks:
        raise ConfigError(
            f"Method '{name}' does not train the {task} task. Use --method "
            f"{' or '.join(methods_for(task))} (or 'auto')."
        )
    defaults = get_task(task).default_method_options.get(name, {}) if task else {}
    return METHODS[name]({**defaults, **(options or {})})
