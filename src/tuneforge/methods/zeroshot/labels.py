"""Label specifications for zero-shot training: names, optional descriptions and seed phrases.

Accepted forms (`--labels` or `tune(labels=...)`):
    "a,b,c"                          comma-separated names
    ["a", "b"]                       a list of names
    labels.yaml  with  labels: [a, b]                               names only, or
                       labels: {a: {description: ..., examples: [...]}, b: null}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tuneforge.data.yaml_text import load_text_yaml
from tuneforge.errors import ConfigError

ENTRY_KEYS = ("description", "examples")


@dataclass(frozen=True)
class LabelSpec:
    name: str
    description: str = ""
    examples: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        """What the templates describe: the description, else a readable form of the name."""
        return self.description or self.name.replace("_", " ").replace("-", " ").strip()


def parse_labels(value) -> list[LabelSpec]:
    """Any accepted form → a validated list of LabelSpec (errors say how to fix the input)."""
    source = "labels"
    if isinstance(value, Path) or (isinstance(value, str) and _looks_like_file(value)):
        source, value = str(value), _read_yaml(Path(value))
    elif isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list | tuple) and value and isinstance(value[0], LabelSpec):
        specs = list(value)
    elif isinstance(value, dict):
        specs = [_entry(str(name), entry, source) for name, entry in value.items()]
    elif isinstance(value, list | tuple):
        specs = [_list_item(item, source) for item in value]
    else:
        raise ConfigError(
            f"{source}: expected a list of label names or a mapping name → "
            f"{{description, examples}}, got {type(value).__name__}."
        )
    _check(specs, source)
    return specs


def _looks_like_file(value: str) -> bool:
    return value.endswith((".yaml", ".yml")) or Path(value).is_file()


def _read_yaml(path: Path):
    if not path.is_file():
        raise ConfigError(f"Labels file {path} not found. Write one with a `labels:` list.")
    try:
        data = load_text_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict) or "labels" not in data:
        raise ConfigError(
            f"{path} needs a top-level `labels:` key, e.g.\nlabels:\n  - sports\n  - politics"
        )
    return data["labels"]


def _list_item(item, source: str) -> LabelSpec:
    if isinstance(item, dict) and len(item) == 1:  # "- sports: {description: ...}"
        name, entry = next(iter(item.items()))
        return _entry(str(name), entry, source)
    if isinstance(item, str | int | float) and not isinstance(item, bool):
        return LabelSpec(str(item).strip())
    raise ConfigError(f"{source}: label {item!r} must be a name (text), not {type(item).__name__}.")


def _entry(name: str, entry, source: str) -> LabelSpec:
    if entry is None:
        return LabelSpec(name.strip())
    if isinstance(entry, str):
        return LabelSpec(name.strip(), description=entry.strip())
    if not isinstance(entry, dict):
        raise ConfigError(
            f"{source}: label '{name}' must map to {{description, examples}}, got {entry!r}."
        )
    unknown = sorted(set(entry) - set(ENTRY_KEYS))
    if unknown:
        raise ConfigError(
            f"{source}: label '{name}' has unknown key(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(ENTRY_KEYS)}."
        )
    examples = entry.get("examples") or []
    if isinstance(examples, str):
        examples = [examples]
    if not isinstance(examples, list) or not all(isinstance(e, str) for e in examples):
        raise ConfigError(f"{source}: label '{name}': `examples` must be a list of phrases.")
    return LabelSpec(name.strip(), str(entry.get("description") or "").strip(), examples)


def _check(specs: list[LabelSpec], source: str) -> None:
    if len(specs) < 2:
        raise ConfigError(f"{source}: give at least two labels (got {len(specs)}).")
    names = [s.name for s in specs]
    if any(not n for n in names):
        raise ConfigError(f"{source}: a label name is empty.")
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise ConfigError(f"{source}: duplicate label name(s): {', '.join(dups)}.")
