"""`lora`: PEFT low-rank adapters (or IA3 scaling vectors) on a frozen encoder, merged on save.

Merging folds the adapters into plain weights, so the artifact is an ordinary encoder that
exports and serves exactly like a fully fine-tuned one.
"""

from __future__ import annotations

from typing import Literal

from tuneforge.methods.base import Method, MethodContext, MethodOptions, register_method


class LoraOptions(MethodOptions):
    variant: Literal["lora", "ia3"] = "lora"
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] | str | None = "all-linear"  # None: PEFT's default for the model


@register_method
class LoraMethod(Method):
    name = "lora"
    Options = LoraOptions
    default_lr = 1e-3
    tasks = frozenset(
        {"text-classification", "token-classification", "chat", "image-classification"}
    )

    def fit(self, ctx: MethodContext):
        from peft import get_peft_model

        model = ctx.new_model(ctx.load_encoder())
        targets = getattr(model.encoder, "lora_targets", "all-linear")  # an image CNN: 1x1 convs
        model.encoder = get_peft_model(model.encoder, self.peft_config(targets))
        ctx.trainer(self.lr(ctx.config)).fit(ctx.token_job(model))
        model.encoder = model.encoder.merge_and_unload()
        return model

    def peft_config(self, all_linear: str | list[str] = "all-linear"):
        from peft import IA3Config, LoraConfig

        opts = self.options
        if opts.target_modules == "all-linear":
            opts = opts.model_copy(update={"target_modules": all_linear})
        if opts.variant == "ia3":
            return IA3Config(
                target_modules=None if opts.target_modules == "all-linear" else opts.target_modules
            )
        return LoraConfig(
            r=opts.r,
            lora_alpha=opts.alpha,
            lora_dropout=opts.dropout,
            target_modules=opts.target_modules,
        )

    def lr(self, config) -> float:
        if config.lr:
            return config.lr
        return 5e-3 if self.options.variant == "ia3" else super().lr(config)
