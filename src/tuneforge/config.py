"""Typed training configuration that validates at the edge and round-trips to YAML."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tuneforge.errors import ConfigError


class YamlConfig(BaseModel):
    """A typed config: unknown keys refused, built from keywords or YAML, errors that name the
    option, its value and the rule (`ConfigError`)."""

    model_config = ConfigDict(extra="forbid")
    # how errors name one option and the whole config, and where to read about them
    option_noun: ClassVar[str] = "config value for"
    config_noun: ClassVar[str] = "config"
    help_hint: ClassVar[str] = ""

    @classmethod
    def build(cls, **values: Any) -> Self:
        """Build from keywords (Nones dropped, so defaults apply); errors become ConfigError."""
        try:
            return cls(**{k: v for k, v in values.items() if v is not None})
        except ValidationError as exc:
            raise ConfigError(cls._explain(exc)) from None

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    @classmethod
    def from_yaml(cls, text_or_path: str | Path) -> Self:
        text = Path(text_or_path).read_text() if _is_path(text_or_path) else str(text_or_path)
        data = yaml.safe_load(text) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"A {cls.config_noun} YAML must be a mapping of option: value.")
        return cls.build(**data)

    @classmethod
    def _explain(cls, exc: ValidationError) -> str:
        lines = []
        for err in exc.errors():
            msg = err["msg"].removeprefix("Value error, ")
            if not err["loc"]:  # a rule across options: the input is the whole mapping
                lines.append(f"Invalid {cls.config_noun}: {msg}.")
                continue
            where = ".".join(str(p) for p in err["loc"])
            lines.append(f"Invalid {cls.option_noun} '{where}': {msg} (got {err.get('input')!r}).")
        return " ".join(lines) + (f" {cls.help_hint}" if cls.help_hint else "")


class TrainConfig(YamlConfig):
    """Everything that decides how a model is trained; defaults that work on a CPU."""

    help_hint: ClassVar[str] = "See `tuneforge train --help` for valid options."

    task: str | None = Field(None, description="a registered task; None = from the data")
    method: str = "auto"
    base: str = "minilm"
    epochs: float = Field(4.0, gt=0, description="passes over the training data")
    lr: float | None = Field(None, gt=0, description="learning rate; None = the method's default")
    batch_size: int = Field(32, ge=1)
    grad_accum: int = Field(1, ge=1, description="batches per optimizer step")
    warmup_ratio: float = Field(0.06, ge=0, lt=1)
    weight_decay: float = Field(0.01, ge=0)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    class_weights: Literal["auto", "balanced", "none"] = "auto"
    max_length: int = Field(128, ge=8)
    seed: int = 42
    eval_every: float = Field(1.0, gt=0, description="evaluate every this many epochs")
    val_fraction: float = Field(0.1, gt=0, lt=0.5, description="held out when no eval data")
    early_stopping: int = Field(2, ge=0, description="evaluations without improvement; 0 = off")
    metric: str | None = Field(None, description="selection metric; None = the task's own")
    max_minutes: float | None = Field(None, gt=0)
    checkpoint_every: int = Field(200, ge=0, description="optimizer steps; 0 = only at evals")
    bf16: bool = Field(False, description="bf16 autocast: 2.7x slower on CPUs without AMX/bf16")
    compile: bool = Field(False, description="torch.compile the training forward (slow start)")
    threads: int | None = Field(None, ge=1)
    method_options: dict[str, Any] = Field(default_factory=dict)
    task_options: dict[str, Any] = Field(default_factory=dict)


def _is_path(value: str | Path) -> bool:
    return isinstance(value, Path) or (
        len(str(value)) < 4096 and "\n" not in str(value) and Path(str(value)).is_file()
    )
