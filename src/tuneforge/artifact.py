"""The artifact: one self-contained directory that eval, export, serve and apps read.

tuneforge.yaml   task, labels, method, base model, training config, calibration, versions
encoder/         Hugging Face encoder weights (adapters merged) and tokenizer
head.safetensors classification head
metrics.json     evaluation figures;  training_log.jsonl  loss/metric per step
README.md        model card
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tuneforge.errors import ArtifactError

# 2: the task's own settings moved into `task_config` (format 1 kept text classification's
# multi_label, pooling, normalize, head and head_hidden at the top level; it still loads)
FORMAT_VERSION = 2
TEXT_CLASSIFICATION_FIELDS = ("multi_label", "pooling", "normalize", "head", "head_hidden")
CONFIG_FILE = "tuneforge.yaml"


class Calibration(BaseModel):
    temperature: float = Field(1.0, gt=0)
    abstain_threshold: float | None = Field(None, ge=0, le=1)
    abstain_label: str = "abstain"


class ArtifactConfig(BaseModel):
    model_config = ConfigDict(extra="allow")

    format_version: int = FORMAT_VERSION
    task: str = "text-classification"  # a name in the task registry (tuneforge.tasks)
    labels: list[str]  # the model's output names, in output order
    # the task's typed settings (its `Config`): for text classification multi_label, pooling,
    # normalize, head, head_hidden
    task_config: dict[str, Any] = Field(default_factory=dict)
    method: str
    method_reason: str = ""
    base: str
    text_prefix: str = ""
    max_length: int = 128
    runtime: str = "torch"
    calibration: Calibration = Field(default_factory=Calibration)
    train_config: dict[str, Any] = Field(default_factory=dict)
    data: dict[str, Any] = Field(default_factory=dict)
    # what a method did beyond its options, e.g. fewshot's self-training counts per round
    method_details: dict[str, Any] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)
    created: str = ""
    command: str = ""

    @model_validator(mode="before")
    @classmethod
    def _upgrade(cls, values: Any) -> Any:
        """Format 1 (and keyword callers of its shape): move the task's fields into place."""
        if not isinstance(values, dict):
            return values
        moved = {k: values[k] for k in TEXT_CLASSIFICATION_FIELDS if k in values}
        if not moved:
            return values
        rest = {k: v for k, v in values.items() if k not in moved}
        return {**rest, "task_config": {**moved, **(values.get("task_config") or {})}}

    @property
    def multi_label(self) -> bool:
        return bool(self.task_config.get("multi_label", False))

    def save(self, directory: Path) -> None:
        (directory / CONFIG_FILE).write_text(
            yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
        )

    @classmethod
    def load(cls, directory: Path) -> ArtifactConfig:
        file = Path(directory) / CONFIG_FILE
        if not file.exists():
            hint = (
                " It looks like a Hugging Face model: use it as a base with --base."
                if (Path(directory) / "config.json").exists()
                else ""
            )
            raise ArtifactError(
                f"{directory} is not a tuneforge model: {CONFIG_FILE} is missing."
                f"{hint} Train one with `tuneforge train`."
            )
        config = cls(**yaml.safe_load(file.read_text()))
        if config.format_version > FORMAT_VERSION:
            raise ArtifactError(
                f"{directory} was written by a newer tuneforge (format "
                f"{config.format_version}); upgrade: pip install -U tuneforge"
            )
        config.check_task(directory)
        return config

    def check_task(self, directory: Path) -> None:
        """The task is known and `task_config` is valid for it (errors say which file)."""
        from pydantic import ValidationError

        from tuneforge.tasks import get_task

        try:
            get_task(self.task).Config(**self.task_config)
        except ValidationError as exc:
            raise ArtifactError(
                f"{Path(directory) / CONFIG_FILE}: invalid task_config for task '{self.task}': "
                f"{exc.errors()[0]['msg']} at {exc.errors()[0]['loc']}."
            ) from None
        except Exception as exc:  # an unknown task name
            raise ArtifactError(f"{Path(directory) / CONFIG_FILE}: {exc}") from None


def environment_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("tuneforge", "torch", "transformers", "peft"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return out


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


def invoking_command() -> str:
    argv = sys.argv
    if argv and Path(argv[0]).name in ("tuneforge", "__main__.py"):
        return "tuneforge " + shlex.join(argv[1:])
    return ""


def _base_note(base: str) -> str:
    from tuneforge.models.registry import BASE_MODELS

    spec = BASE_MODELS.get(base)
    return spec.card_note if spec else ""


def model_card(config: ArtifactConfig, metrics: dict | None) -> str:
    """A README for the artifact: what it is, how it was made, how well it does."""
    lines = [
        f"# tuneforge model: {config.task}",
        "",
        f"- base model: `{config.base}`; method: `{config.method}`"
        + (f" ({config.method_reason})" if config.method_reason else ""),
        f"- labels ({len(config.labels)}): {', '.join(config.labels[:30])}"
        + (" ..." if len(config.labels) > 30 else ""),
        f"- task: {config.task}"
        + ("; multi-label" if config.multi_label else "")
        + f"; created {config.created}",
        *([f"- about the base: {note}"] if (note := _base_note(config.base)) else []),
        "",
    ]
    if config.data:
        lines += ["## Data", "", "```json", json.dumps(config.data, indent=1)[:3000], "```", ""]
    if metrics:
        lines += ["## Metrics", "", "| split | accuracy | macro-F1 | rows |", "|---|---|---|---|"]
        for split, m in metrics.items():
            if isinstance(m, dict) and "accuracy" in m:
                lines.append(
                    f"| {split} | {m['accuracy']:.4f} | {m.get('macro_f1', 0):.4f} | "
                    f"{m.get('n', '')} |"
                )
        lines.append("")
    lines += [
        "## Training configuration",
        "",
        "```yaml",
        yaml.safe_dump(config.train_config, sort_keys=False).strip(),
        "```",
        "",
        "## Reproduce",
        "",
        "```",
        config.command or "(trained from Python: see config)",
        "```",
        "",
        "## Use",
        "",
        "```python",
        "import tuneforge",
        "model = tuneforge.TunedModel.load('PATH')",
        "model.predict(['some text'])",
        "```",
        "",
    ]
    return "\n".join(lines)
