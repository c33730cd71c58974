"""Graph-level steps: trace a task's model to ONNX, fuse transformer ops, quantize to int8
(dynamic for text; static, calibrated on example inputs, for convolutional image models)."""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path

from tuneforge.export.onnx_runtime import INPUTS, OUTPUTS

log = logging.getLogger(__name__)
OPSET = 17


def text_inputs() -> dict:
    """A text graph's inputs: a padded example batch (so the attention-mask path is part of
    the graph) and their dynamic axes."""
    import torch

    ids = torch.full((2, 12), 5, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    return {
        name: (x, {0: "batch", 1: "sequence"}) for name, x in zip(INPUTS, (ids, mask), strict=True)
    }


def _wrapper(classifier, names: list[str]):
    from torch import nn

    class LogitsAndEmbedding(nn.Module):
        def __init__(self, clf) -> None:
            super().__init__()
            self.clf = clf

        def forward(self, *inputs):
            found = self.clf.outputs(**dict(zip(names, inputs, strict=True)))  # one pass for both
            return tuple(found[name] for name in OUTPUTS)

    # eval() on the wrapper: the exporter restores the wrapper's train flag recursively after
    # tracing, which would switch dropout back on in the caller's model.
    return LogitsAndEmbedding(classifier).eval()


@contextlib.contextmanager
def fp32_arithmetic(classifier):
    """Trace the float32 arithmetic: a bf16 autocast (an image model's `precision`) would put
    its casts into the graph."""
    precision = getattr(classifier, "precision", None)
    if precision is not None:
        classifier.precision = "fp32"
    try:
        yield
    finally:
        if precision is not None:
            classifier.precision = precision


def to_onnx(
    classifier, path: Path, output_axes: dict[str, dict] | None = None, inputs: dict | None = None
) -> Path:
    """Trace `classifier.outputs` to `path`.

    `inputs`: name -> (example tensor, dynamic axes), the task's (default: `text_inputs()`).
    `output_axes`: the task's dynamic axes per output (default: batch only; a tagger's logits
    also vary along the sequence)."""
    import torch

    inputs = inputs or text_inputs()
    names = list(inputs)
    axes = {name: dynamic for name, (_, dynamic) in inputs.items()}
    axes |= {name: (output_axes or {}).get(name, {0: "batch"}) for name in OUTPUTS}
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python-side shape checks
        with fp32_arithmetic(classifier):
            torch.onnx.export(
                _wrapper(classifier, names),
                tuple(example for example, _ in inputs.values()),
                str(path),
                dynamo=False,  # the TorchScript exporter needs no onnxscript, handles HF BERTs
                input_names=names,
                output_names=list(OUTPUTS),
                dynamic_axes=axes,
                opset_version=OPSET,
                do_constant_folding=True,
            )
    classifier.eval()
    return path


def fuse_transformer(src: Path, dst: Path, num_heads: int, hidden_size: int) -> bool:
    """onnxruntime's transformer optimizer fuses attention/LayerNorm/GELU (BERT-family graphs).

    Fused Attention is then quantized as one op, which is most of the int8 speed-up. Returns
    False (and leaves `dst` unwritten) when the graph is not one the optimizer recognises.
    """
    try:
        from onnxruntime.transformers.optimizer import optimize_model

        model = optimize_model(
            str(src), model_type="bert", num_heads=num_heads, hidden_size=hidden_size
        )
        model.save_model_to_file(str(dst))
        return True
    except Exception as exc:  # an unfamiliar architecture: export unfused, still correct
        log.warning("transformer fusion skipped: %s", exc)
        return False


def quantize_int8(src: Path, dst: Path) -> Path:
    """Dynamic int8: weights quantized offline, activations per batch at run time (no data)."""
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Per-channel weight scales: on banking77/MiniLM per-tensor int8 lost 1.1 accuracy points,
    # per-channel 0.06. Fused ops (com.microsoft) defeat ONNX shape inference; they are float.
    quantize_dynamic(
        str(src),
        str(dst),
        weight_type=QuantType.QInt8,
        per_channel=True,
        extra_options={"DefaultTensorType": TensorProto.FLOAT},
    )
    return dst


CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
FP32_CHOICES = ("first", "depthwise", "head")  # what `quantize_static_int8` can leave in fp32


def quantize_static_int8(
    src: Path,
    dst: Path,
    feeds: list[dict],
    method: str = "minmax",
    keep_fp32: tuple[str, ...] = (),
) -> tuple[Path, dict]:
    """Static int8 (QDQ): weights per output channel (int8), activations (uint8) on ranges
    calibrated on `feeds` (input batches), after onnxruntime's pre-processing (shape inference,
    graph optimisation: BatchNorm folded into the convolutions). Convolutions then run as int8
    kernels, which dynamic quantization cannot do for them (it quantizes activations per batch
    at run time, Conv as slow ConvInteger).

    keep_fp32: node kinds left in float32 — "first" (the first convolution, on the pixels),
    "depthwise" (grouped convolutions), "head" (the node writing the logits).
    Returns (dst, what was done)."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        """The batches, in strides: onnxruntime keeps every activation of a stride in memory."""

        def __init__(self) -> None:
            self.start, self.end = 0, len(feeds)
            self._it = iter(feeds)

        def __len__(self) -> int:
            return len(feeds)

        def set_range(self, start_index: int, end_index: int) -> None:
            self._it = iter(feeds[start_index:end_index])

        def get_next(self):
            return next(self._it, None)

    pre = dst.with_name(dst.stem + "-pre.onnx")
    with _quiet_onnxruntime():
        quant_pre_process(str(src), str(pre))
    graph = onnx.load(str(pre)).graph
    excluded = fp32_nodes(graph, keep_fp32)
    methods = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }
    with _quiet_onnxruntime():
        quantize_static(
            str(pre),
            str(dst),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=methods[method],
            nodes_to_exclude=excluded,
            # one batch at a time: activations of a whole calibration set would not fit in memory
            extra_options={"CalibStridedMinMax": 1},
        )
    pre.unlink()
    return dst, {"method": method, "keep_fp32": list(keep_fp32), "fp32_nodes": len(excluded)}


@contextlib.contextmanager
def _quiet_onnxruntime():
    """onnxruntime's quantization tools warn through the root logger (e.g. a warning per
    LayerNorm weight that has no channel axis) and print progress: keep them out of the
    user's terminal, and leave the root logger as it was."""
    import io

    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)
        for handler in root.handlers[len(handlers) :]:  # basicConfig's, if it ran
            root.removeHandler(handler)


def fp32_nodes(graph, kinds: tuple[str, ...]) -> list[str]:
    """Names of the nodes of `graph` of the `kinds` in `FP32_CHOICES`."""
    unknown = set(kinds) - set(FP32_CHOICES)
    if unknown:
        raise ValueError(f"unknown node kinds {sorted(unknown)}; choose from {FP32_CHOICES}")
    convs = [node for node in graph.node if node.op_type == "Conv"]  # in graph order
    names = [convs[0].name] if "first" in kinds and convs else []
    for node in convs if "depthwise" in kinds else []:
        if next((a.i for a in node.attribute if a.name == "group"), 1) > 1:
            names.append(node.name)
    if "head" in kinds:  # the node that writes the logits
        names += [node.name for node in graph.node if "logits" in node.output]
    return list(dict.fromkeys(names))
