"""`full`: every weight of the encoder and the head is trained."""

from __future__ import annotations

from tuneforge.methods.base import Method, MethodContext, register_method


@register_method
class FullMethod(Method):
    name = "full"
    default_lr = 1e-4
    tasks = frozenset(
        {"text-classification", "token-classification", "chat", "image-classification"}
    )

    def fit(self, ctx: MethodContext):
        model = ctx.new_model(ctx.load_encoder())
        ctx.trainer(self.lr(ctx.config)).fit(ctx.token_job(model))
        return model
