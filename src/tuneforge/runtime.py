"""Runtimes turn padded token batches into every output of one pass (`forward` ->
{"logits", "embedding"}): PyTorch here, ONNX in `export`.

`TunedModel` only talks to a runtime, so an exported model predicts through the same API; what
needs both outputs (the assistant's intent and its out-of-scope score) pays for one pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from tuneforge.artifact import ArtifactConfig
from tuneforge.models.registry import quiet_hf

ENCODER_DIR, HEAD_FILE = "encoder", "head.safetensors"


class Runtime(Protocol):
    def forward(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


class TorchRuntime:
    """Runs a task's model (`.encoder`, `.head`; forward -> logits, `embed` -> vectors)."""

    def __init__(self, classifier) -> None:
        self.classifier = classifier.eval()

    @torch.inference_mode()
    def forward(self, batch: dict) -> dict[str, np.ndarray]:
        """Every output of one pass: `logits` and `embedding`."""
        found = self.classifier.outputs(**_tensors(batch))
        return {name: value.float().numpy() for name, value in found.items()}

    def save(self, directory: Path, tokenizer) -> None:
        self.classifier.encoder.save_pretrained(directory / ENCODER_DIR)
        tokenizer.save_pretrained(directory / ENCODER_DIR)
        head = {k: v.contiguous() for k, v in self.classifier.head.state_dict().items()}
        save_file(head, directory / HEAD_FILE)

    @classmethod
    def load(cls, directory: Path, config: ArtifactConfig) -> TorchRuntime:
        from tuneforge.tasks import get_task

        quiet_hf()
        task = get_task(config.task)
        model = task.load_model(task.load_encoder(directory / ENCODER_DIR), config)
        model.head.load_state_dict(load_file(directory / HEAD_FILE))
        return cls(model)


def _tensors(batch: dict) -> dict[str, torch.Tensor]:
    return {k: torch.as_tensor(v) for k, v in batch.items()}


RUNTIMES: dict[str, type] = {"torch": TorchRuntime}
# Optional runtimes register themselves in RUNTIMES when their module is imported; importing on
# first use keeps `import tuneforge` free of onnxruntime.
OPTIONAL_RUNTIMES = {"onnx": "tuneforge.export.onnx_runtime"}


def runtime_class(name: str) -> type | None:
    """The runtime class for an artifact's `runtime` name, or None if it is not installed."""
    if name not in RUNTIMES and name in OPTIONAL_RUNTIMES:
        import importlib

        try:
            importlib.import_module(OPTIONAL_RUNTIMES[name])
        except ImportError:
            return None
    return RUNTIMES.get(name)


def load_tokenizer(directory: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(Path(directory) / ENCODER_DIR))
