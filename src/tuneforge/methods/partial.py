"""`partial`: train only the top k encoder layers and the head; the frozen lower layers run once.

The outputs of the frozen lower layers are computed once and kept, so every later epoch runs
only k layers forward and backward: with k=2 of 6, an epoch costs about a third of a full one,
and the first epoch skips the lower layers' backward pass too. Decoders (the chat task) gain
most: SmolLM2 has 30 layers, and with k=3 an epoch after the first runs a tenth of the model.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from tuneforge.methods.base import Method, MethodContext, MethodOptions, register_method
from tuneforge.models.encode import map_id_batches
from tuneforge.training.batching import pad_hidden_batch


class PartialOptions(MethodOptions):
    top_layers: int = 2
    cache_dtype: Literal["float32", "bfloat16"] = "float32"


def encoder_layers(encoder: nn.Module) -> nn.ModuleList:
    """The transformer block list of a BERT-like encoder or a `*ForCausalLM` decoder."""
    for path in ("encoder.layer", "layers", "transformer.layer", "encoder.layers", "model.layers"):
        module = encoder
        for part in path.split("."):
            module = getattr(module, part, None)
        if isinstance(module, nn.ModuleList):
            return module
    raise TypeError(f"cannot find the layer list of {type(encoder).__name__}; use --method full")


def layer_inputs(encoder: nn.Module):
    """hidden states -> the inputs an encoder gives each layer besides the mask.

    MPNet adds a relative position bias to every layer's attention scores, computed once by its
    encoder: top layers run on cached states without it would train on what inference never
    sees (cosine 0.99 to the real all-mpnet-base-v2 output instead of 1.0).
    """
    inner = getattr(encoder, "encoder", None)
    if hasattr(inner, "compute_position_bias"):
        return lambda hidden: {"position_bias": inner.compute_position_bias(hidden)}
    return lambda hidden: {}


class TopLayers(nn.Module):
    """Runs the trainable top layers on cached hidden states, then the task's readout (for a
    classifier: pooling and head; for a tagger: the per-token head)."""

    def __init__(self, model: nn.Module, layers: nn.ModuleList, readout=None) -> None:
        super().__init__()
        self.config, self.layers, self.head = model.encoder.config, layers, model.head
        # functions, so the frozen encoder is no submodule of what trains
        self.inputs, self.readout = layer_inputs(model.encoder), readout or model.readout

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        from transformers.masking_utils import create_bidirectional_mask

        mask = create_bidirectional_mask(
            config=self.config, inputs_embeds=hidden, attention_mask=attention_mask
        )
        extra = self.inputs(hidden)
        for layer in self.layers:
            out = layer(hidden, mask, **extra)
            hidden = out[0] if isinstance(out, tuple) else out
        return self.readout(hidden, attention_mask)


@register_method
class PartialMethod(Method):
    name = "partial"
    Options = PartialOptions
    default_lr = 2e-4

    tasks = frozenset(
        {"text-classification", "token-classification", "chat", "image-classification"}
    )

    def fit(self, ctx: MethodContext) -> nn.Module:
        return train_top_layers(ctx, self.options.top_layers, self.options, self.lr(ctx.config))


def train_top_layers(ctx: MethodContext, k: int, options: PartialOptions, lr: float) -> nn.Module:
    """Train the top `k` encoder layers (0: the head alone) and the head on cached states."""
    model = ctx.new_model(ctx.load_encoder())
    layers = encoder_layers(model.encoder)
    k = max(0, min(k, len(layers)))
    model.encoder.requires_grad_(False)
    model.encoder.eval()  # frozen part: no dropout, so its cached outputs are exact
    top = nn.ModuleList(layers[len(layers) - k :])
    top.requires_grad_(True)
    dtype = getattr(torch, options.cache_dtype)
    # a task model may run its top layers its own way (a decoder: causal mask, rotary positions)
    make_top = getattr(model, "top_layers_module", None) or (lambda top: TopLayers(model, top))
    # a task may cache its own way (pictures: several augmented views per image)
    lower = getattr(ctx.task, "lower_states", lower_states)
    ctx.trainer(lr).fit(
        ctx.job(
            make_top(top),
            lambda inputs, split: lower(ctx, model, inputs, len(layers) - k, split, dtype),
            pad_hidden_batch,
            lengths=lambda s: s.shape[0],
        )
    )
    return model


def lower_states(ctx, model, inputs, layer: int, split: str, dtype) -> list[torch.Tensor]:
    """Each input's hidden states after encoder layer `layer` (0: the embedding layer's)."""
    # Stop the forward pass right after the last frozen layer: the top layers' outputs would be
    # thrown away, so computing them is wasted time.
    last_frozen = encoder_layers(model.encoder)[layer - 1] if layer else None

    def run(batch):
        try:
            with _stop_after(last_frozen):
                out = model.encoder(**batch, output_hidden_states=True).hidden_states[layer]
        except _Captured as captured:
            out = captured.output
        lengths = batch["attention_mask"].sum(1).tolist()
        return [out[i, :n].to(dtype).clone() for i, n in enumerate(lengths)]

    return map_id_batches(
        run,
        ctx.tokenize(inputs),
        ctx.load_tokenizer().pad_token_id or 0,
        progress=f"caching {_SPLIT_NAMES.get(split, split)} layers",
    )


_SPLIT_NAMES = {"eval": "validation"}


class _Captured(Exception):
    def __init__(self, output: torch.Tensor) -> None:
        super().__init__()
        self.output = output


class _stop_after:  # a context manager: lower-case reads like `with`
    """Raise `_Captured` with a module's output as soon as it is computed."""

    def __init__(self, module: nn.Module | None) -> None:
        self.module, self.handle = module, None

    def __enter__(self):
        if self.module is not None:
            self.handle = self.module.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc) -> None:
        if self.handle is not None:
            self.handle.remove()

    @staticmethod
    def _hook(module, args, output):
        raise _Captured(output[0] if isinstance(output, tuple) else output)
