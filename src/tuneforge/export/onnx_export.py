"""Graph-level steps: trace a task's model to ONNX, fuse transformer ops, quantize to int8."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from tuneforge.export.onnx_runtime import INPUTS, OUTPUTS

log = logging.getLogger(__name__)
OPSET = 17


def _wrapper(classifier):
    from torch import nn

    class LogitsAndEmbedding(nn.Module):
        def __init__(self, clf) -> None:
            super().__init__()
            self.clf = clf

        def forward(self, input_ids, attention_mask):
            found = self.clf.outputs(input_ids, attention_mask)  # one encoder pass for both
            return tuple(found[name] for name in OUTPUTS)

    # eval() on the wrapper: the exporter restores the wrapper's train flag recursively after
    # tracing, which would switch dropout back on in the caller's model.
    return LogitsAndEmbedding(classifier).eval()


def to_onnx(classifier, path: Path, output_axes: dict[str, dict] | None = None) -> Path:
    """Trace with a padded example batch so the attention-mask path is part of the graph.

    `output_axes`: the task's dynamic axes per output (default: batch only; a tagger's logits
    also vary along the sequence)."""
    import torch

    ids = torch.full((2, 12), 5, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUTS}
    axes |= {name: (output_axes or {}).get(name, {0: "batch"}) for name in OUTPUTS}
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python-side shape checks
        torch.onnx.export(
            _wrapper(classifier),
            (ids, mask),
            str(path),
            dynamo=False,  # the TorchScript exporter needs no onnxscript and handles HF BERTs
            input_names=list(INPUTS),
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
