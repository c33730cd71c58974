"""`TunedModel`: a trained model you can predict with, evaluate, save and load.

What a prediction is, and how a model is scored, belong to its task (`tuneforge.tasks`);
`TunedModel` runs the model and keeps the artifact.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from tuneforge.artifact import ArtifactConfig, model_card
from tuneforge.errors import ArtifactError
from tuneforge.paths import write_dir_atomically
from tuneforge.runtime import runtime_class
from tuneforge.tasks import Task, get_task
from tuneforge.tasks.text_classification import Prediction

METRICS_FILE, LOG_FILE = "metrics.json", "training_log.jsonl"

__all__ = ["Prediction", "TunedModel"]


class TunedModel:
    def __init__(
        self,
        runtime,
        tokenizer,
        config: ArtifactConfig,
        metrics: dict | None = None,
        log: list[dict] | None = None,
    ) -> None:
        self.runtime, self.tokenizer, self.config = runtime, tokenizer, config
        self.metrics = metrics or {}
        self.log = log or []
        self.path: Path | None = None

    @property
    def labels(self) -> list[str]:
        return self.config.labels

    @property
    def task(self) -> Task:
        return get_task(self.config.task)

    # ---- inference -------------------------------------------------------------------------
    def forward(
        self, texts: list[str], batch_size: int = 64, progress: str | None = None
    ) -> dict[str, np.ndarray]:
        """Every output of one pass over `texts`: {"logits": (n, labels), "embedding": (n, d)}."""
        if isinstance(texts, str):
            texts = [texts]
        if not len(texts):
            return {"logits": np.zeros((0, len(self.labels)), dtype=np.float32)}
        fn = lambda b: _rows(self.runtime.forward(b))  # noqa: E731
        rows = self.task.map_inputs(self, fn, list(texts), batch_size, progress)
        return {name: np.stack([r[name] for r in rows]) for name in rows[0]}

    def logits(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        return self.forward(texts, batch_size)["logits"]

    def embed(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        found = self.forward(texts, batch_size)
        return found.get("embedding", np.zeros((0, 0), dtype=np.float32))

    def predict_proba(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Class probabilities (temperature-calibrated when the artifact has a temperature)."""
        return self.probabilities(self.logits(texts, batch_size))

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Class probabilities of these logits (temperature-calibrated, sigmoid if multi-label)."""
        z = logits / self.config.calibration.temperature
        if self.config.multi_label:
            return 1.0 / (1.0 + np.exp(-z))
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def head_logits(self, embedding: np.ndarray) -> np.ndarray:
        """This model's head on embeddings another model's encoder computed (see
        `shares_encoder_with`): a second classifier at the cost of a matrix product."""
        import torch

        head = self.runtime.classifier.head.eval()
        with torch.inference_mode():
            return head(torch.as_tensor(embedding, dtype=torch.float32)).numpy()

    def shares_encoder_with(self, other) -> bool:
        """Do both models embed a text identically (the same frozen encoder, pooling, window
        and prefix), so one pass serves both heads? PyTorch artifacts only (an ONNX graph
        holds its head)."""
        import torch

        mine, theirs = (getattr(m.runtime, "classifier", None) for m in (self, other))
        if mine is None or theirs is None or self.config.task != other.config.task:
            return False
        same_input = all(
            getattr(self.config, k) == getattr(other.config, k)
            for k in ("text_prefix", "max_length")
        ) and all(
            self.config.task_config.get(k) == other.config.task_config.get(k)
            for k in ("pooling", "normalize")
        )
        if not same_input or self.tokenizer.get_vocab() != other.tokenizer.get_vocab():
            return False
        a, b = mine.encoder.state_dict(), theirs.encoder.state_dict()
        return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    def predict(self, inputs, batch_size: int = 64, **options) -> list:
        """The task's predictions (text classification: a `Prediction` per text; options:
        `top_k`)."""
        return self.task.predict(self, inputs, batch_size=batch_size, **options)

    # ---- evaluation ------------------------------------------------------------------------
    def evaluate(
        self,
        data,
        text_col: str | None = None,
        label_col: str | None = None,
        batch_size: int = 64,
    ):
        """The task's metrics on a labelled file or dataset (`.to_dict()`, `.summary()`)."""
        ds = self.task.load_for(self, data, text_col, label_col)
        return self.task.evaluate(self, ds, batch_size)

    # ---- persistence -----------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the artifact atomically: a crash never leaves a half-written model behind."""

        def write(tmp: Path) -> None:
            self.runtime.save(tmp, self.tokenizer)
            self.config.save(tmp)
            (tmp / METRICS_FILE).write_text(json.dumps(self.metrics, indent=1))
            (tmp / LOG_FILE).write_text("".join(json.dumps(r) + "\n" for r in self.log))
            (tmp / "README.md").write_text(model_card(self.config, self.metrics))
            for extra in getattr(self, "extra_files", []):
                extra(tmp)

        self.path = write_dir_atomically(Path(path), write)
        return self.path

    @classmethod
    def load(cls, path: str | Path) -> TunedModel:
        path = Path(path)
        if not path.is_dir():
            raise ArtifactError(
                f"Model directory {path} not found. Train one with "
                "`tuneforge train DATA --out DIR`."
            )
        config = ArtifactConfig.load(path)
        runtime_cls = runtime_class(config.runtime)
        if runtime_cls is None:
            raise ArtifactError(
                f"{path} needs the '{config.runtime}' runtime; install the "
                "matching extra (pip install 'tuneforge[export]')."
            )
        runtime = runtime_cls.load(path, config)
        metrics_file, log_file = path / METRICS_FILE, path / LOG_FILE
        metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
        log = (
            [json.loads(x) for x in log_file.read_text().splitlines() if x.strip()]
            if log_file.exists()
            else []
        )
        processor = get_task(config.task).load_processor(path, config)
        model = cls(runtime, processor, config, metrics, log)
        model.path = path
        return model

    def iter_predict_frames(self, frames: Iterator, text_col: str, batch_size: int = 64):
        """Add the task's prediction columns to each chunk of a stream (constant memory):
        `label`/`score` for text classification, `entities` (JSON) for token tagging."""
        for frame in frames:
            texts = frame[text_col].astype(str).tolist()
            for column, values in self.task.prediction_columns(self, texts, batch_size).items():
                frame[column] = values
            yield frame


def _rows(outputs: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """A batch's outputs, one dict per row."""
    n = len(next(iter(outputs.values())))
    return [{name: value[i] for name, value in outputs.items()} for i in range(n)]
