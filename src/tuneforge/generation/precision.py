"""Lower-precision copies of a decoder for generation (`GenerationOptions.precision`).

Decoding one token is a matrix-vector product per weight, so on a CPU it is bound by how fast
the weights stream from memory and how well small matrix products use the vector units:

- `bf16`: the whole model in bfloat16, for CPUs with bf16 matrix units (AMX, AVX512-BF16),
  where oneDNN runs batched products several times faster than fp32; elsewhere bf16 is slower,
  so it is refused with a note.
- `int8`: dynamic int8 (per-channel weights, activations quantized per call) for every linear
  layer except those that read a small LM's activation outliers: the MLP's projection back to
  the model width (`down_proj`; in_features > out_features) and the output layer. Measured on
  SmolLM2-135M, quantizing `down_proj` alone dropped last-token argmax agreement with fp32 to
  0.35; every other kind alone kept >= 0.87 (the output layer 0.84, so it stays fp32 too).

A copy is made once per model and precision and kept while the model lives; the fp32 model is
left untouched (training and scoring use it).
"""

from __future__ import annotations

import copy
import weakref
from typing import Any

import torch
from torch import nn

from tuneforge.errors import ConfigError
from tuneforge.generation.options import Precision

_COPIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def bf16_supported() -> bool:
    """Does this CPU have bf16 matrix instructions (where bf16 is faster, not slower)?"""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def for_generation(model: Any, precision: Precision) -> Any:
    """`model` itself for fp32, else its cached copy in `precision`."""
    if precision == "fp32":
        return model
    found = _COPIES.setdefault(model, {})
    if precision not in found:
        found[precision] = _convert(model, precision)
    return found[precision]


def _convert(model: nn.Module, precision: Precision) -> nn.Module:
    if precision == "bf16":
        if not bf16_supported():
            raise ConfigError(
                "precision bf16: this CPU has no bf16 matrix instructions (AMX or AVX512-BF16), "
                "so bf16 would be slower than fp32; use precision fp32 or int8."
            )
        return copy.deepcopy(model).to(torch.bfloat16).eval()
    if precision == "int8":
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        out = copy.deepcopy(model).eval()
        head = out.get_output_embeddings()
        spec = {
            name: per_channel_dynamic_qconfig
            for name, module in out.named_modules()
            if isinstance(module, nn.Linear)
            and module is not head
            and module.in_features <= module.out_features
        }
        return quantize_dynamic(out, spec, dtype=torch.qint8)
    raise ConfigError(f"Unknown precision {precision!r}; use fp32, bf16 or int8.")
