"""Calibration: ECE, reliability data, temperature scaling and an abstain threshold.

Fine-tuned classifiers are usually over-confident: a 0.95 score is right less than 95% of the
time. One temperature fitted on validation logits (Guo et al. 2017) fixes most of it without
changing any prediction; the abstain threshold then turns a target accuracy into "answer only
when the score is at least t". Both are stored in the artifact, so `predict` applies them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import yaml

from tuneforge.artifact import CONFIG_FILE, ArtifactConfig
from tuneforge.errors import ConfigError
from tuneforge.paths import write_text_atomically


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    from scipy.special import softmax as _softmax

    return _softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1)


def ece(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error: the bin-weighted gap between confidence and accuracy."""
    table = reliability(confidence, correct, bins)
    n = max(1, len(confidence))
    return float(sum(c / n * abs(a - m) for a, m, c in zip(*table.values(), strict=False) if c))


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> dict[str, list]:
    """Per equal-width confidence bin: accuracy, mean confidence and count (empty bins: NaN)."""
    from scipy.stats import binned_statistic

    conf = np.asarray(confidence, dtype=np.float64)
    hit = np.asarray(correct, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    acc = binned_statistic(conf, hit, "mean", bins=edges).statistic
    mean_conf = binned_statistic(conf, conf, "mean", bins=edges).statistic
    count = binned_statistic(conf, conf, "count", bins=edges).statistic
    return {"accuracy": acc.tolist(), "confidence": mean_conf.tolist(), "count": count.tolist()}


def nll(logits: np.ndarray, y: np.ndarray, temperature: float = 1.0) -> float:
    from scipy.special import log_softmax

    logp = log_softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1)
    return float(-logp[np.arange(len(y)), y].mean())


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature minimizing validation NLL (searched over log T, so T stays positive)."""
    from scipy.optimize import minimize_scalar

    res = minimize_scalar(
        lambda log_t: nll(logits, y, float(np.exp(log_t))), bounds=(-4.0, 4.0), method="bounded"
    )
    return float(np.exp(res.x))


def coverage_curve(confidence: np.ndarray, correct: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy of the answered rows when only the most confident are answered.

    One point per distinct confidence value (ties are accepted or refused together, as a
    threshold would), from the most confident row to all rows.
    """
    conf = np.asarray(confidence, dtype=np.float64)
    order = np.argsort(-conf, kind="stable")
    sorted_conf, hits = conf[order], np.asarray(correct, dtype=np.float64)[order]
    accuracy = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    last_of_tie = np.r_[sorted_conf[1:] != sorted_conf[:-1], True]
    keep = np.flatnonzero(last_of_tie)
    return {
        "threshold": sorted_conf[keep],
        "coverage": (keep + 1) / max(1, len(hits)),
        "accuracy": accuracy[keep],
    }


def abstain_threshold(
    confidence: np.ndarray, correct: np.ndarray, target_accuracy: float
) -> tuple[float, float, float]:
    """The lowest threshold whose answered rows reach `target_accuracy`: (t, coverage, accuracy).

    Raises ConfigError when even the single most confident group misses the target.
    """
    curve = coverage_curve(confidence, correct)
    ok = np.flatnonzero(curve["accuracy"] >= target_accuracy)
    if not len(ok):
        best = float(curve["accuracy"].max()) if len(curve["accuracy"]) else 0.0
        raise ConfigError(
            f"No confidence threshold reaches accuracy {target_accuracy:.3f} on the validation "
            f"data (best {best:.3f}). Lower --target-accuracy or improve the model."
        )
    i = int(ok[-1])  # the largest coverage that still meets the target
    return float(curve["threshold"][i]), float(curve["coverage"][i]), float(curve["accuracy"][i])


@dataclass
class CalibrationFit:
    temperature: float
    ece_before: float
    ece_after: float
    nll_before: float
    nll_after: float
    target_accuracy: float | None = None
    abstain_threshold: float | None = None
    coverage: float | None = None
    accuracy_answered: float | None = None
    n: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def fit_calibration(
    logits: np.ndarray, y: np.ndarray, target_accuracy: float | None = None
) -> CalibrationFit:
    """Temperature (and, with a target accuracy, the abstain threshold) from validation logits."""
    logits, y = np.asarray(logits, dtype=np.float64), np.asarray(y)
    temperature = fit_temperature(logits, y)
    before, after = softmax(logits), softmax(logits, temperature)
    correct = before.argmax(1) == y  # temperature never changes the argmax
    fit = CalibrationFit(
        temperature=temperature,
        ece_before=ece(before.max(1), correct),
        ece_after=ece(after.max(1), correct),
        nll_before=nll(logits, y),
        nll_after=nll(logits, y, temperature),
        n=len(y),
    )
    if target_accuracy is not None:
        t, cov, acc = abstain_threshold(after.max(1), correct, target_accuracy)
        fit.target_accuracy, fit.abstain_threshold = target_accuracy, t
        fit.coverage, fit.accuracy_answered = cov, acc
    return fit


def calibrate_model(model, data, target_accuracy: float | None = None) -> CalibrationFit:
    """Fit on a labelled TextDataset and set the result on `model.config` (in memory)."""
    if model.config.multi_label:
        raise ConfigError("Calibration supports single-label models only.")
    index = {lab: i for i, lab in enumerate(model.labels)}
    rows = [i for i, lab in enumerate(data.labels) if lab in index]
    if len(rows) < 2:
        raise ConfigError(
            f"{data.source}: fewer than 2 rows carry labels the model knows; calibrate on "
            "labelled validation data from the same task."
        )
    logits = model.logits([data.texts[i] for i in rows])
    y = np.array([index[data.labels[i]] for i in rows])
    fit = fit_calibration(logits, y, target_accuracy)
    cal = model.config.calibration
    cal.temperature = fit.temperature
    if target_accuracy is not None:
        cal.abstain_threshold = fit.abstain_threshold
    return fit


def write_calibration(model_dir: Path, config: ArtifactConfig) -> None:
    """Rewrite only tuneforge.yaml, atomically (a reader never sees a half-written file)."""
    text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
    write_text_atomically(Path(model_dir) / CONFIG_FILE, text)


# The method option that keeps the validation rows out of training, for the refusal below.
_KEEP_OUT_OPTION = {"head": "-O refit=false", "fewshot": "-O train_on_validation=false"}


def validation_split(train_data, config: ArtifactConfig):
    """Re-derive the validation rows a model held out of its training file (same seed/fraction).

    For models trained without --val: those rows were not fitted, so they are fair calibration
    data (the head method picked its regularization on them, which barely touches calibration).
    """
    from tuneforge.data.split import stratified_split

    if config.method_details.get("trained_on_validation"):
        keep_out = _KEEP_OUT_OPTION.get(config.method, "an option that keeps them out")
        raise ConfigError(
            f"This '{config.method}' model was trained on its validation rows too, so "
            "--from-train has no held-out rows to calibrate on. Pass a labelled file the "
            f"model never saw (tuneforge calibrate MODEL val.csv), or retrain with {keep_out}."
        )
    tc = config.train_config
    return stratified_split(
        train_data, float(tc.get("val_fraction", 0.1)), int(tc.get("seed", 42))
    )[1]
