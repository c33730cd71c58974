"""`prompt`: soft prompt tuning (Lester et al. 2021) or p-tuning (Liu et al. 2021) via PEFT.

k virtual tokens are learned in front of every text while the encoder stays frozen; only the
prompt (and the head) train. PEFT provides the prompt modules: `PromptEmbedding` (prompt
tuning, optionally initialised from a text) and `PromptEncoder` (p-tuning's MLP/LSTM
reparametrisation). Unlike PEFT's own wrapper, the virtual tokens sit right after the first
special token ([CLS] / <s>) as k new vocabulary entries, so "merging" is exact: their learned
vectors are written into those vocabulary rows, the tokenizer gets the k tokens, and the
artifact's text prefix names them. The result is an ordinary encoder + head artifact that
predicts, exports and serves like any other, and keeps the base weights untouched.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from tuneforge.methods.base import Method, MethodContext, MethodOptions, register_method
from tuneforge.models.classifier import TextClassifier
from tuneforge.training.batching import pad_token_batch

TOKEN = "<tf_prompt_{}>"


class PromptOptions(MethodOptions):
    variant: Literal["prompt_tuning", "p_tuning"] = "prompt_tuning"
    num_virtual_tokens: int = Field(16, ge=1)
    init_text: str | None = Field(None, description="prompt tuning: start from this text")
    encoder_hidden_size: int = Field(128, ge=1, description="p-tuning MLP width")


class PromptedClassifier(nn.Module):
    """TextClassifier whose prompt-token embeddings come from a PEFT prompt module."""

    def __init__(self, classifier: TextClassifier, prompt: nn.Module, first_id: int, k: int):
        super().__init__()
        self.classifier, self.prompt, self.first_id, self.k = classifier, prompt, first_id, k

    def prompt_vectors(self) -> torch.Tensor:
        return self.prompt(torch.arange(self.k))  # (k, dim)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        encoder = self.classifier.encoder
        embeds = encoder.get_input_embeddings()(input_ids)
        offset = input_ids - self.first_id
        is_prompt = (offset >= 0) & (offset < self.k)
        learned = self.prompt_vectors()[offset.clamp(0, self.k - 1)]
        embeds = torch.where(is_prompt[..., None], learned.to(embeds.dtype), embeds)
        out = encoder(inputs_embeds=embeds, attention_mask=attention_mask)
        return self.classifier.head(self.classifier.pooler(out.last_hidden_state, attention_mask))


@register_method
class PromptMethod(Method):
    name = "prompt"
    Options = PromptOptions
    default_lr = 1e-2

    def fit(self, ctx: MethodContext) -> TextClassifier:
        k = self.options.num_virtual_tokens
        tokenizer = ctx.load_tokenizer()
        tokens = [TOKEN.format(i) for i in range(k)]
        tokenizer.add_special_tokens({"additional_special_tokens": tokens})
        first_id = tokenizer.convert_tokens_to_ids(tokens[0])
        if tokenizer.convert_tokens_to_ids(tokens) != list(range(first_id, first_id + k)):
            raise RuntimeError("prompt tokens did not get consecutive ids")
        encoder = ctx.load_encoder()
        # ids past the tokenizer may already have (unused) rows: padded vocabularies
        rows = encoder.get_input_embeddings().weight.shape[0]
        encoder.resize_token_embeddings(max(len(tokenizer), rows))
        encoder.requires_grad_(False)
        classifier = ctx.new_model(encoder)
        prompt = self._prompt_module(ctx, encoder)
        module = PromptedClassifier(classifier, prompt, first_id, k)
        prefix = "".join(tokens) + " " + ctx.base.text_prefix
        max_len = min(ctx.config.max_length, ctx.base.max_length)

        def tokenize(texts):
            return tokenizer([prefix + t for t in texts], truncation=True, max_length=max_len)[
                "input_ids"
            ]

        pad = tokenizer.pad_token_id or 0
        job = ctx.job(
            module, lambda texts, split: tokenize(texts), lambda ids: pad_token_batch(ids, pad)
        )
        ctx.trainer(self.lr(ctx.config)).fit(job)
        with torch.no_grad():  # merge: the learned vectors become the prompt tokens' rows
            rows = encoder.get_input_embeddings().weight
            rows[first_id : first_id + k] = module.prompt_vectors().to(rows.dtype)
        classifier.spec["text_prefix"] = prefix
        return classifier

    def _prompt_module(self, ctx, encoder) -> nn.Module:
        from peft import (
            PromptEmbedding,
            PromptEncoder,
            PromptEncoderConfig,
            PromptTuningConfig,
            PromptTuningInit,
            TaskType,
        )

        opts, cfg = self.options, encoder.config
        common = dict(
            task_type=TaskType.SEQ_CLS,
            num_virtual_tokens=opts.num_virtual_tokens,
            token_dim=cfg.hidden_size,
            num_transformer_submodules=1,
            num_attention_heads=cfg.num_attention_heads,
            num_layers=cfg.num_hidden_layers,
        )
        torch.manual_seed(ctx.config.seed)
        if opts.variant == "p_tuning":
            config = PromptEncoderConfig(encoder_hidden_size=opts.encoder_hidden_size, **common)
            return PromptEncoder(config)
        if opts.init_text:
            config = PromptTuningConfig(
                prompt_tuning_init=PromptTuningInit.TEXT,
                prompt_tuning_init_text=opts.init_text,
                tokenizer_name_or_path=str(ctx.base.path),
                **common,
            )
        else:  # start from real word vectors: random vectors of the wrong scale train slowly
            config = PromptTuningConfig(prompt_tuning_init=PromptTuningInit.SAMPLE_VOCAB, **common)
        return PromptEmbedding(config, encoder.get_input_embeddings())
