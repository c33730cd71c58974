"""`TunedModel`: a trained classifier you can predict with, evaluate, save and load."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tuneforge.artifact import ArtifactConfig, model_card
from tuneforge.data.dataset import TextDataset, load_data
from tuneforge.errors import ArtifactError
from tuneforge.evaluation.metrics import EvalResult, evaluate_predictions
from tuneforge.models.encode import map_batches
from tuneforge.paths import write_dir_atomically
from tuneforge.runtime import load_tokenizer, runtime_class

METRICS_FILE, LOG_FILE = "metrics.json", "training_log.jsonl"


@dataclass
class Prediction:
    label: str | list[str]
    score: float
    scores: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"label": self.label, "score": self.score, "scores": self.scores}


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

    # ---- inference -------------------------------------------------------------------------
    def _run(
        self, fn, texts: list[str], batch_size: int, progress: str | None = None
    ) -> np.ndarray:
        if isinstance(texts, str):
            texts = [texts]
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        rows = map_batches(
            lambda b: list(fn(b)),
            self.tokenizer,
            list(texts),
            self.config.max_length,
            batch_size,
            self.config.text_prefix,
            progress,
        )
        return np.stack(rows)

    def logits(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        return self._run(self.runtime.logits, texts, batch_size)

    def embed(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        return self._run(self.runtime.embed, texts, batch_size)

    def predict_proba(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Class probabilities (temperature-calibrated when the artifact has a temperature)."""
        z = self.logits(texts, batch_size) / self.config.calibration.temperature
        if self.config.multi_label:
            return 1.0 / (1.0 + np.exp(-z))
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def predict(
        self, texts: list[str] | str, batch_size: int = 64, top_k: int | None = 5
    ) -> list[Prediction]:
        probs = self.predict_proba([texts] if isinstance(texts, str) else texts, batch_size)
        return [self._decide(p, top_k) for p in probs]

    def _decide(self, p: np.ndarray, top_k: int | None) -> Prediction:
        order = np.argsort(-p)[: top_k or len(p)]
        scores = {self.labels[i]: round(float(p[i]), 6) for i in order}
        cal = self.config.calibration
        if self.config.multi_label:
            chosen = [self.labels[i] for i in np.flatnonzero(p >= 0.5)]
            return Prediction(chosen, float(p.max()), scores)
        best = int(order[0])
        if cal.abstain_threshold is not None and p[best] < cal.abstain_threshold:
            return Prediction(cal.abstain_label, float(p[best]), scores)
        return Prediction(self.labels[best], float(p[best]), scores)

    # ---- evaluation ------------------------------------------------------------------------
    def evaluate(
        self,
        data: str | Path | TextDataset,
        text_col: str | None = None,
        label_col: str | None = None,
        batch_size: int = 64,
    ) -> EvalResult:
        ds = (
            data
            if isinstance(data, TextDataset)
            else load_data(data, text_col, label_col, multi_label=self.config.multi_label or None)
        )
        if ds.labels is None:
            raise ArtifactError(
                f"{ds.source} has no label column to evaluate against; pass "
                "--label-col, or use `tuneforge predict` for unlabelled data."
            )
        probs = self.predict_proba(ds.texts, batch_size)
        if self.config.multi_label:
            pred = [[self.labels[i] for i in np.flatnonzero(p >= 0.5)] for p in probs]
        else:
            pred = [self.labels[i] for i in probs.argmax(1)]
        return evaluate_predictions(ds.labels, pred, self.labels, self.config.multi_label)

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
        model = cls(runtime, load_tokenizer(path), config, metrics, log)
        model.path = path
        return model

    def iter_predict_frames(self, frames: Iterator, text_col: str, batch_size: int = 64):
        """Add `label`/`score` columns to each chunk of a stream (constant memory)."""
        for frame in frames:
            preds = self.predict(frame[text_col].astype(str).tolist(), batch_size, top_k=1)
            frame["label"] = [
                "|".join(p.label) if isinstance(p.label, list) else p.label for p in preds
            ]
            frame["score"] = [round(p.score, 6) for p in preds]
            yield frame
