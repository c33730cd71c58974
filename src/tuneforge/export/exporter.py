"""`export_model`: artifact in, ONNX artifact out — only if it keeps its accuracy.

The accuracy gate evaluates the source (PyTorch) model and the exported one on the same
validation set; a drop of more than `max_loss` accuracy points refuses the export (nothing is
written) unless `force=True`. Both figures are recorded in the artifact's `tuneforge.yaml`
(`export:` section), so whoever serves the model can see what was traded for speed.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from tuneforge.errors import ArtifactError, ConfigError, TuneforgeError

log = logging.getLogger(__name__)


class AccuracyGateError(TuneforgeError):
    """The exported model loses more accuracy than allowed."""


@dataclass
class ExportReport:
    path: str
    quantize: str | None
    prune_layers: int
    fused: bool
    size_mb: float
    gate: dict = field(default_factory=dict)
    parity: dict = field(default_factory=dict)
    distillation: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def export_model(
    model,
    out: str | Path,
    *,
    quantize: str | None = None,
    prune_layers: int = 0,
    val: str | Path | None = None,
    text_col: str | None = None,
    label_col: str | None = None,
    max_loss: float = 0.5,
    force: bool = False,
    skip_gate: bool = False,
    fuse: bool = True,
    distil_data: str | Path | None = None,
    distil_seconds: float = 900.0,
) -> ExportReport:
    """Export `model` (a `TunedModel` or its directory) to `out` as an ONNX artifact.

    quantize: None or "int8" (dynamic quantization). prune_layers: drop that many encoder layers,
    then re-tune from the original on `distil_data` (its labels too, when it has them) for
    3 epochs or `distil_seconds`, whichever comes first.
    val: labelled data for the accuracy gate (required unless `skip_gate`).
    """
    from tuneforge.data.dataset import load_data
    from tuneforge.tuned_model import TunedModel

    source = model if isinstance(model, TunedModel) else TunedModel.load(model)
    _check_args(source, quantize, prune_layers, val, skip_gate, distil_data)
    val_ds = None
    if val is not None:
        val_ds = source.task.load_for(source, Path(val), text_col, label_col)
    classifier, distillation = source.runtime.classifier, {}
    if prune_layers:
        from tuneforge.export.prune import distil, label_targets
        from tuneforge.export.prune import prune_layers as prune

        data = load_data(
            distil_data,
            text_col,
            label_col,
            require_labels=False,
            multi_label=source.config.multi_label or None,
        )
        targets = label_targets(data.labels, source.labels, source.config.multi_label, data.source)
        classifier = prune(classifier, prune_layers)
        distillation = distil(classifier, source, data.texts, targets, max_seconds=distil_seconds)
    report = ExportReport(str(out), quantize, prune_layers, False, 0.0, distillation=distillation)

    def write(tmp: Path) -> None:
        _write_onnx_artifact(source, classifier, tmp, quantize, fuse, report)
        if val_ds is not None:
            exported = TunedModel.load(tmp)
            report.gate, report.parity = _gate(source, exported, val_ds, max_loss, force)
        _finish_config(source, tmp, report)

    from tuneforge.paths import write_dir_atomically

    report.path = str(write_dir_atomically(Path(out), write))
    return report


def _check_args(source, quantize, prune_layers, val, skip_gate, distil_data) -> None:
    from tuneforge.models.pair import member_widths

    if not hasattr(source.runtime, "classifier"):
        raise ArtifactError(
            "Only PyTorch artifacts can be exported; this one already runs on "
            f"'{source.config.runtime}'. Export the model it came from."
        )
    if source.config.task == "chat":
        raise ConfigError(
            "ONNX export is for encoder models; export a chat model with --format gguf "
            "(llama.cpp, Ollama) or --format hf (a merged Hugging Face directory)."
        )
    if quantize not in (None, "int8"):
        raise ConfigError(f"--quantize must be 'int8' (got {quantize!r}).")
    if val is None and not skip_gate:
        raise ConfigError(
            "The accuracy gate needs labelled validation data: pass --val FILE "
            "(or --skip-gate to export without checking accuracy)."
        )
    if prune_layers < 0:
        raise ConfigError("--prune-layers must be >= 0.")
    if prune_layers and source.config.task != "text-classification":
        raise ConfigError(
            f"--prune-layers distils text classifiers; this model is {source.config.task}. "
            "Export it without pruning (int8 works)."
        )
    if prune_layers and member_widths(source.runtime.classifier.encoder):
        raise ConfigError(
            "--prune-layers works on one encoder; this model's base is a pair "
            f"({source.config.base}). Export it without pruning."
        )
    if prune_layers and distil_data is None:
        raise ConfigError(
            "A pruned model is re-tuned from the original: pass --distil-data FILE (the "
            "training file is best: its labels are used too; texts alone also work)."
        )


def _write_onnx_artifact(source, classifier, tmp: Path, quantize, fuse, report) -> None:
    from tuneforge.export.onnx_export import fuse_transformer, quantize_int8, to_onnx
    from tuneforge.export.onnx_runtime import ONNX_FILE, copy_tokenizer

    with tempfile.TemporaryDirectory() as scratch:
        current = to_onnx(classifier, Path(scratch) / "traced.onnx", source.task.onnx_axes)
        enc = classifier.encoder.config
        heads = getattr(enc, "num_attention_heads", None)  # a base pair has two attention shapes
        if (
            fuse
            and heads
            and fuse_transformer(current, Path(scratch) / "fused.onnx", heads, enc.hidden_size)
        ):
            current, report.fused = Path(scratch) / "fused.onnx", True
        if quantize == "int8":
            current = quantize_int8(current, Path(scratch) / "int8.onnx")
        (tmp / ONNX_FILE).write_bytes(current.read_bytes())
    report.size_mb = round((tmp / ONNX_FILE).stat().st_size / 2**20, 2)
    if source.path is not None:
        copy_tokenizer(source.path, tmp)
    else:
        source.tokenizer.save_pretrained(tmp / "encoder")
    _finish_config(source, tmp, report)


def _finish_config(source, tmp: Path, report: ExportReport) -> None:
    from tuneforge.artifact import ArtifactConfig, model_card
    from tuneforge.tuned_model import METRICS_FILE

    info = {k: v for k, v in report.to_dict().items() if k != "path"}
    config = ArtifactConfig(
        **{**source.config.model_dump(mode="json"), "runtime": "onnx", "export": info}
    )
    config.save(tmp)
    (tmp / METRICS_FILE).write_text(json.dumps(source.metrics, indent=1))
    card = model_card(config, source.metrics)
    (tmp / "README.md").write_text(card + "\n## Export\n\n```json\n" + json.dumps(info, indent=1))


def _gate(source, exported, val_ds, max_loss: float, force: bool) -> tuple[dict, dict]:
    """The task's headline score of both models on `val_ds` (accuracy; a tagger's span F1);
    raise when the drop exceeds `max_loss` points."""
    if source.config.task != "text-classification":
        return _task_gate(source, exported, val_ds, max_loss, force)
    from tuneforge.evaluation.metrics import evaluate_predictions

    z_src, z_exp = source.logits(val_ds.texts), exported.logits(val_ds.texts)
    labels, multi = source.labels, source.config.multi_label

    def decide(z):
        if multi:
            return [[labels[i] for i in np.flatnonzero(row >= 0)] for row in z]
        return [labels[i] for i in z.argmax(1)]

    acc_src = evaluate_predictions(val_ds.labels, decide(z_src), labels, multi).accuracy
    acc_exp = evaluate_predictions(val_ds.labels, decide(z_exp), labels, multi).accuracy
    loss = round((acc_src - acc_exp) * 100, 3)
    gate = {
        "val_rows": len(val_ds),
        "accuracy_source": round(acc_src, 5),
        "accuracy_export": round(acc_exp, 5),
        "loss_points": loss,
        "max_loss_points": max_loss,
        "passed": loss <= max_loss,
        "forced": force and loss > max_loss,
    }
    parity = _parity(source, exported, val_ds.texts, z_src, z_exp, multi)
    if loss > max_loss and not force:
        raise AccuracyGateError(
            f"The export loses {loss:.2f} accuracy points on {val_ds.source} "
            f"({acc_src:.4f} → {acc_exp:.4f}; allowed {max_loss}). Nothing was written. "
            "Export without --quantize/--prune-layers, raise --max-loss, or pass --force."
        )
    return gate, parity


def _task_gate(source, exported, val_ds, max_loss: float, force: bool) -> tuple[dict, dict]:
    metric = source.task.default_metric
    before = source.evaluate(val_ds).summary()[metric]
    after = exported.evaluate(val_ds).summary()[metric]
    loss = round((before - after) * 100, 3)
    gate = {
        "metric": metric,
        "val_rows": len(val_ds),
        f"{metric}_source": round(before, 5),
        f"{metric}_export": round(after, 5),
        "loss_points": loss,
        "max_loss_points": max_loss,
        "passed": loss <= max_loss,
        "forced": force and loss > max_loss,
    }
    if loss > max_loss and not force:
        raise AccuracyGateError(
            f"The export loses {loss:.2f} {metric} points on {val_ds.source} "
            f"({before:.4f} → {after:.4f}; allowed {max_loss}). Nothing was written. "
            "Export without --quantize, raise --max-loss, or pass --force."
        )
    inputs = val_ds.words[:256] if hasattr(val_ds, "words") else val_ds.texts[:256]
    p_src = source.task.word_probabilities(source, inputs)
    p_exp = exported.task.word_probabilities(exported, inputs)
    same = np.concatenate([a.argmax(-1) == b.argmax(-1) for a, b in zip(p_src, p_exp, strict=True)])
    diff = max(float(np.abs(a - b).max()) for a, b in zip(p_src, p_exp, strict=True))
    return gate, {
        "tag_agreement": round(float(same.mean()), 5),
        "max_abs_prob_diff": round(diff, 5),
    }


def _parity(source, exported, texts, z_src, z_exp, multi: bool) -> dict:
    """How close the exported outputs are to PyTorch's (on up to 512 validation texts)."""
    sample = texts[:512]
    e_src, e_exp = source.embed(sample), exported.embed(sample)
    cos = (e_src * e_exp).sum(1) / (
        np.linalg.norm(e_src, axis=1) * np.linalg.norm(e_exp, axis=1) + 1e-12
    )
    same = (z_src >= 0) == (z_exp >= 0) if multi else z_src.argmax(1) == z_exp.argmax(1)
    return {
        "label_agreement": round(float(np.mean(same)), 5),
        "max_abs_logit_diff": round(float(np.abs(z_src - z_exp).max()), 5),
        "embedding_cosine_mean": round(float(cos.mean()), 5),
        "embedding_cosine_min": round(float(cos.min()), 5),
    }
