"""What every method gets (`MethodContext`) and must provide (`Method.fit`), plus the registry."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import BaseModel as Options
from pydantic import ConfigDict, ValidationError

from tuneforge.config import TrainConfig
from tuneforge.data.dataset import TextDataset
from tuneforge.errors import ConfigError
from tuneforge.models.classifier import Pooler, TextClassifier, build_head
from tuneforge.models.registry import BaseModel, quiet_hf
from tuneforge.training import Trainer, TrainTask, balanced_class_weights, encode_targets
from tuneforge.training.batching import pad_token_batch


class MethodOptions(Options):
    model_config = ConfigDict(extra="forbid")


@dataclass
class MethodContext:
    """Data, base model and run settings, with the helpers methods share."""

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

    @property
    def multi_label(self) -> bool:
        return self.train.multi_label

    def load_tokenizer(self):
        from transformers import AutoTokenizer

        if not hasattr(self, "_tokenizer"):
            self._tokenizer = AutoTokenizer.from_pretrained(str(self.base.path))
        return self._tokenizer

    def load_encoder(self) -> torch.nn.Module:
        """The base's encoder; for a base pair an `EncoderPair` reading our tokenizer's ids."""
        from transformers import AutoModel

        quiet_hf()
        torch.manual_seed(self.config.seed)
        encoder = AutoModel.from_pretrained(str(self.base.path))
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

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        tok = self.load_tokenizer()
        max_len = min(self.config.max_length, self.base.max_length)
        texts = [self.base.text_prefix + t for t in texts]
        return tok(texts, truncation=True, max_length=max_len)["input_ids"]

    def token_lengths(self, texts: list[str]) -> list[int]:
        """Untruncated token counts, to report how many texts max_length will cut."""
        tok = self.load_tokenizer()
        ids = tok([self.base.text_prefix + t for t in texts], truncation=False, verbose=False)
        return [len(x) for x in ids["input_ids"]]

    def targets(self, ds: TextDataset) -> torch.Tensor:
        return encode_targets(ds.labels, self.label_names, self.multi_label)

    def new_classifier(
        self,
        encoder: torch.nn.Module,
        head: str = "linear",
        normalize: bool = False,
        hidden: int = 0,
    ) -> TextClassifier:
        from tuneforge.models.pair import member_widths

        torch.manual_seed(self.config.seed)
        dim = encoder.config.hidden_size
        model = TextClassifier(
            encoder,
            build_head(dim, len(self.label_names), head, hidden),
            Pooler(self.base.pooling, normalize, segments=member_widths(encoder)),
        )
        model.spec = {
            "head": head,
            "hidden": hidden,
            "dim": dim,
            "pooling": self.base.pooling,
            "normalize": normalize,
        }
        return model

    def task(self, module: torch.nn.Module, featurize, collate_one, lengths=len) -> TrainTask:
        """A TrainTask over per-example features (token ids, cached states, embeddings).

        `featurize(texts, split)` gives one feature per text, for the training and validation
        rows and, when the run has monitor data, for those too.
        """
        splits = {"train": self.train, "eval": self.val}
        if self.monitor is not None:
            splits["monitor"] = self.monitor
        feats = {split: featurize(ds.texts, split) for split, ds in splits.items()}
        train_targets = self.targets(self.train)
        return TrainTask(
            module=module,
            collate=lambda split, ix: collate_one([feats[split][i] for i in ix]),
            train_lengths=[lengths(f) for f in feats["train"]],
            eval_lengths=[lengths(f) for f in feats["eval"]],
            train_targets=train_targets,
            eval_targets=self.targets(self.val),
            multi_label=self.multi_label,
            class_weights=balanced_class_weights(
                train_targets, len(self.label_names), self.config.class_weights
            ),
            monitor_lengths=[lengths(f) for f in feats["monitor"]] if "monitor" in feats else None,
            monitor_targets=self.targets(self.monitor) if "monitor" in feats else None,
        )

    def token_task(self, module: torch.nn.Module) -> TrainTask:
        pad = self.load_tokenizer().pad_token_id or 0
        return self.task(
            module,
            lambda texts, split: self.tokenize(texts),
            lambda ids: pad_token_batch(ids, pad),
        )

    def trainer(self, lr: float) -> Trainer:
        return Trainer(
            self.config,
            lr,
            workdir=self.workdir,
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
        return config.lr or self.default_lr

    def run_flags(self) -> frozenset[str]:
        """Which of the Trainer's run flags (`RUN_FLAGS`) this method applies; methods that
        train without the Trainer override it, so `tune` can warn about the others."""
        return RUN_FLAGS

    def fit(self, ctx: MethodContext) -> TextClassifier:
        raise NotImplementedError


METHODS: dict[str, type[Method]] = {}


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: make a method available by its `name` to `tune` and the CLI."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a `name`")
    METHODS[cls.name] = cls
    return cls


def pair_capable_methods() -> list[str]:
    return sorted(name for name, cls in METHODS.items() if cls.trains_pairs)


def get_method(name: str, options: dict | None = None) -> Method:
    if name not in METHODS:
        raise ConfigError(
            f"Unknown method '{name}'. Choose one of: {', '.join(sorted(METHODS))} (or 'auto')."
        )
    return METHODS[name](options)
