"""`GenerationOptions`: how text is generated, typed and validated at the edge, round-trips to YAML.

The defaults are greedy decoding (temperature 0), so the same prompt gives the same text; any
temperature > 0 samples, and only then do top_p, top_k and seed matter. Constraints (one of a list
of `choices`, or JSON that validates against `json_schema`) are options too, so a CLI flag, a YAML
file and a serving request all carry one object.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from tuneforge.config import YamlConfig

Precision = Literal["fp32", "bf16", "int8"]  # weights while decoding (generation/precision.py)


class GenerationOptions(YamlConfig):
    """Decoding settings; defaults work (greedy, 256 new tokens, stop at the end-of-turn token)."""

    option_noun: ClassVar[str] = "generation option"
    config_noun: ClassVar[str] = "generation options"

    max_new_tokens: int = Field(256, ge=1, description="tokens generated at most per prompt")
    temperature: float = Field(0.0, ge=0, le=10, description="0 = greedy; > 0 samples")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling mass; 1 = off")
    top_k: int = Field(0, ge=0, description="sample among the k likeliest tokens; 0 = off")
    repetition_penalty: float = Field(
        1.0, gt=0, le=10, description="> 1 discourages repeating tokens; 1 = off"
    )
    stop: list[str] = Field(default_factory=list, description="strings that end the text")
    seed: int | None = Field(None, description="makes sampling reproducible; None = random")
    choices: list[str] | None = Field(None, description="the output is exactly one of these")
    json_schema: dict[str, Any] | None = Field(
        None, description="the output is JSON that validates against this schema"
    )
    precision: Precision = Field(
        "fp32", description="weights while decoding: bf16 needs AMX/AVX512-BF16; int8 dynamic"
    )

    @property
    def do_sample(self) -> bool:
        return self.temperature > 0

    @field_validator("stop", mode="before")
    @classmethod
    def _one_stop_string(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("stop")
    @classmethod
    def _no_empty_stop(cls, value: list[str]) -> list[str]:
        if any(s == "" for s in value):
            raise ValueError("stop strings must be non-empty (an empty one would stop at once)")
        return value

    @field_validator("choices")
    @classmethod
    def _distinct_choices(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return value
        if not value or any(c == "" for c in value):
            raise ValueError("choices must be a non-empty list of non-empty strings")
        if len(set(value)) != len(value):
            repeated = sorted({c for c in value if value.count(c) > 1})
            raise ValueError(f"choices must be distinct; repeated: {repeated}")
        return value

    @field_validator("json_schema")
    @classmethod
    def _valid_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return value
        import jsonschema

        try:
            jsonschema.validators.validator_for(value).check_schema(value)
        except jsonschema.SchemaError as exc:
            raise ValueError(f"json_schema is not a valid JSON Schema: {exc.message}") from None
        return value

    @model_validator(mode="after")
    def _one_constraint(self) -> GenerationOptions:
        if self.choices is not None and self.json_schema is not None:
            raise ValueError("pass either choices or json_schema, not both")
        return self

    # ---- round trips (build, to_yaml and from_yaml: YamlConfig) --------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> GenerationOptions:
        return cls.build(**(data or {}))

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
