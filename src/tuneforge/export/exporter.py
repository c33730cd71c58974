"""`export_model`: artifact in, ONNX artifact out — only if it keeps its accuracy.

The accuracy gate evaluates the source (PyTorch) model and the exported one on the same
validation set; a drop of more than `max_loss` accuracy points refuses the export (nothing is
written) unless `force=True`. Both figures are recorded in the artifact's `tuneforge.yaml`
(`export:` section), so whoever serves the model can see what was traded for speed.

Tasks plug in through small hooks: `onnx_inputs(config)` (the graph's inputs: an example to
trace, dynamic axes; default the text ones), `onnx_axes` (outputs), and `onnx_int8` ("dynamic",
the default, or "static": activations calibrated on example inputs the task's `map_inputs`
prepares — an image model's pictures, from `calibrate` or else the `val` data).
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
# Static int8 (image models). Measured on EfficientNet-Lite0 + a `head` on CIFAR-10 (500
# training images, 256 of them calibrating; label agreement with fp32 on 500 other images):
# MinMax 0.884, Percentile 0.892, Entropy 0.884; with the head (the Gemm writing the logits) kept
# in fp32 0.914 / 0.910 / 0.908, at no measurable speed cost. Also in fp32: the first
# convolution 0.892 (MinMax), the projection convolutions 0.888, the last two blocks 0.918 (10%
# slower), depthwise convolutions 0.59 (much worse). 500 calibration images instead of 256:
# 0.916. MinMax calibrates 4x faster than Percentile (histograms) and did as well: the default.
CALIBRATION_SIZE = 256  # inputs whose activations set the ranges (an even sample)
CALIBRATION_BATCH = 16
DEFAULT_KEEP_FP32 = ("head",)


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
    calibration: dict = field(default_factory=dict)

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
    calibrate: str | Path | None = None,
    calibration_method: str = "minmax",
    calibration_size: int = CALIBRATION_SIZE,
    keep_fp32: tuple[str, ...] | None = None,
) -> ExportReport:
    """Export `model` (a `TunedModel` or its directory) to `out` as an ONNX artifact.

    quantize: None or "int8" (text: dynamic quantization; images: static, calibrated).
    prune_layers: drop that many encoder layers, then re-tune from the original on
    `distil_data` (its labels too, when it has them) for 3 epochs or `distil_seconds`,
    whichever comes first.
    val: labelled data for the accuracy gate (required unless `skip_gate`).
    calibrate: static int8's calibration inputs (the training pictures are best; default:
    `val`), `calibration_size` of them at most (an even sample); `calibration_method`
    "minmax", "percentile" or "entropy"; `keep_fp32`: node kinds left unquantized
    ("first", "depthwise", "head"; see `onnx_export.quantize_static_int8`; default: the head).
    """
    from tuneforge.data.dataset import load_data
    from tuneforge.tuned_model import TunedModel

    source = model if isinstance(model, TunedModel) else TunedModel.load(model)
    _check_args(source, quantize, prune_layers, val, skip_gate, distil_data)
    static = quantize == "int8" and _int8_kind(source) == "static"
    _check_calibration(source, static, calibrate, val, calibration_method, keep_fp32)
    val_ds = source_out = None
    if val is not None:
        val_ds = _load_val(source, val, text_col, label_col)
        if _classifies(source):  # first, so unusable data stops before the export's work
            with _exact(source):
                source_out = source.forward(val_ds.texts, progress="scoring --val (source)")
    calibration = None
    if static:
        data = calibrate if calibrate is not None else val
        calibration = _calibration_feeds(source, data, calibration_size)
        calibration[1].update(method=calibration_method, from_val=calibrate is None)
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
    keep = DEFAULT_KEEP_FP32 if keep_fp32 is None else tuple(keep_fp32)
    int8 = {"calibration": calibration, "keep_fp32": keep}

    def write(tmp: Path) -> None:
        _write_onnx_artifact(source, classifier, tmp, quantize, fuse, report, **int8)
        if val_ds is not None:
            exported = TunedModel.load(tmp)
            report.gate, report.parity = _gate(
                source, exported, val_ds, max_loss, force, source_out
            )
        elif calibration is not None:  # no gate: at least how close it is on a few inputs
            report.parity = _feed_parity(source, TunedModel.load(tmp), calibration[0][:4])
        _finish_config(source, tmp, report)

    from tuneforge.paths import write_dir_atomically

    report.path = str(write_dir_atomically(Path(out), write))
    return report


def _int8_kind(source) -> str:
    return getattr(source.task, "onnx_int8", "dynamic")


def _classifies(source) -> bool:
    """Text and image classification: the gate compares labels from logits."""
    from tuneforge.tasks.text_classification import TextClassification

    return isinstance(source.task, TextClassification)


def _check_calibration(source, static, calibrate, val, method, keep_fp32) -> None:
    from tuneforge.export.onnx_export import CALIBRATION_METHODS, FP32_CHOICES

    if not static:
        if calibrate is not None or keep_fp32 is not None:
            raise ConfigError(
                "--calibrate and --keep-fp32 are for static int8, which image models use; "
                f"this {source.config.task} model quantizes dynamically (no data needed)."
            )
        return
    if calibrate is None and val is None:
        raise ConfigError(
            "Static int8 calibrates its activation ranges on example inputs: pass --calibrate "
            "DIR (the training images are best; a few hundred are used) or --val FILE."
        )
    if method not in CALIBRATION_METHODS:
        raise ConfigError(
            f"--calibration must be one of {', '.join(CALIBRATION_METHODS)} (got {method!r})."
        )
    unknown = sorted(set(keep_fp32 or ()) - set(FP32_CHOICES))
    if unknown:
        raise ConfigError(
            f"--keep-fp32 takes {', '.join(FP32_CHOICES)} (got {', '.join(unknown)})."
        )


def _load_val(source, val, text_col, label_col):
    """The gate's data (a file, or a data set already read), read by the model's task; labels
    the model does not know are an error (the gate would score a different problem)."""
    from tuneforge.errors import DataError

    try:
        ds = source.task.load_for(source, _as_path(val), text_col, label_col)
    except DataError as exc:
        raise DataError(f"--val: {exc}") from None
    val = getattr(ds, "source", val)
    labels = getattr(ds, "labels", None)
    if _classifies(source) and not source.config.multi_label and labels is not None:
        unknown = sorted(set(labels) - set(source.labels))
        if unknown:
            raise DataError(
                f"--val {val}: labels the model does not know: {', '.join(map(str, unknown[:10]))}"
                f" (it knows {', '.join(source.labels[:10])}). Pass validation data of the task "
                "the model was trained on."
            )
    return ds


def _exact(source):
    """The source computes in float32 while it is compared, as the exported graph does: an
    image model that runs in bf16 autocast (`precision`) differs from its own float32 numbers
    by more than an export does (Lite0 + head on CIFAR-10: 5% of labels flip in bf16)."""
    from tuneforge.export.onnx_export import fp32_arithmetic

    return fp32_arithmetic(source.runtime.classifier)


def _as_path(data):
    return Path(data) if isinstance(data, str | Path) else data


def _calibration_feeds(source, data, size: int) -> tuple[list[dict], dict]:
    """Up to `size` inputs of `data` (a file or data set; an even random sample), as the
    graph's input batches."""
    from tuneforge.errors import DataError

    try:
        ds = data
        if isinstance(data, str | Path):
            ds = source.task.load(Path(data), require_labels=False)
    except DataError as exc:
        raise DataError(f"--calibrate: {exc}") from None
    data = getattr(ds, "source", data)
    inputs = source.task.inputs(ds)
    if len(inputs) > size:
        keep = np.sort(np.random.default_rng(0).choice(len(inputs), size, replace=False))
        inputs = [inputs[i] for i in keep]
    feeds: list[dict] = []

    def keep_batch(batch: dict) -> list:
        feeds.append({name: np.asarray(value) for name, value in batch.items()})
        return []

    source.task.map_inputs(source, keep_batch, inputs, CALIBRATION_BATCH, "calibration inputs")
    return feeds, {"source": str(data), "inputs": len(inputs)}


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


def _write_onnx_artifact(
    source, classifier, tmp: Path, quantize, fuse, report, calibration=None, keep_fp32=()
) -> None:
    from tuneforge.export.onnx_export import (
        fuse_transformer,
        quantize_int8,
        quantize_static_int8,
        to_onnx,
    )
    from tuneforge.export.onnx_runtime import ONNX_FILE, copy_tokenizer

    task = source.task
    inputs = task.onnx_inputs(source.config) if hasattr(task, "onnx_inputs") else None
    with tempfile.TemporaryDirectory() as scratch:
        current = to_onnx(classifier, Path(scratch) / "traced.onnx", task.onnx_axes, inputs)
        enc = classifier.encoder.config
        heads = getattr(enc, "num_attention_heads", None)  # a base pair has two attention shapes
        if (
            fuse
            and heads
            and fuse_transformer(current, Path(scratch) / "fused.onnx", heads, enc.hidden_size)
        ):
            current, report.fused = Path(scratch) / "fused.onnx", True
        if quantize == "int8" and calibration is not None:
            feeds, report.calibration = calibration
            current, done = quantize_static_int8(
                current,
                Path(scratch) / "int8.onnx",
                feeds,
                report.calibration["method"],
                keep_fp32,
            )
            report.calibration |= done
        elif quantize == "int8":
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


def _gate(
    source, exported, val_ds, max_loss: float, force: bool, source_out: dict | None = None
) -> tuple[dict, dict]:
    """The task's headline score of both models on `val_ds` (accuracy; a tagger's span F1);
    raise when the drop exceeds `max_loss` points. `source_out`: the source's `forward` on
    `val_ds`, if already computed."""
    if not _classifies(source):
        return _task_gate(source, exported, val_ds, max_loss, force)
    from tuneforge.evaluation.metrics import evaluate_predictions

    if source_out is None:
        with _exact(source):
            source_out = source.forward(val_ds.texts)
    exported_out = exported.forward(val_ds.texts, progress="scoring --val (export)")
    z_src, z_exp = source_out["logits"], exported_out["logits"]
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
    if getattr(source.runtime.classifier, "precision", None) is not None:
        gate["source_precision"] = "fp32"  # see `_exact`
    parity = _parity(source_out, exported_out, multi)
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


def _parity(source_out: dict, exported_out: dict, multi: bool) -> dict:
    """How close the exported outputs are to PyTorch's (on the validation rows)."""
    z_src, z_exp = source_out["logits"], exported_out["logits"]
    e_src, e_exp = source_out["embedding"], exported_out["embedding"]
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


def _feed_parity(source, exported, feeds: list[dict]) -> dict:
    """`_parity` on input batches (calibration ones) when there is no gate to measure it."""
    with _exact(source):
        outs = [(source.runtime.forward(f), exported.runtime.forward(f)) for f in feeds]
    both = [
        {k: np.concatenate([o[i][k] for o in outs]) for k in ("logits", "embedding")}
        for i in (0, 1)
    ]
    return {"rows": len(both[0]["logits"]), **_parity(*both, source.config.multi_label)}
