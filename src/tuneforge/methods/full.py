"""`full`: every weight of the encoder and the head is trained."""

from __future__ import annotations

from tuneforge.methods.base import Method, MethodContext, register_method
from tuneforge.models.classifier import TextClassifier


@register_method
class FullMethod(Method):
    name = "full"
    default_lr = 1e-4

    def fit(self, ctx: MethodContext) -> TextClassifier:
        model = ctx.new_classifier(ctx.load_encoder())
        ctx.trainer(self.lr(ctx.config)).fit(ctx.token_task(model))
        return model
