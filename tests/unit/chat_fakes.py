"""Shared fakes for chat tests: an in-memory ChatML tokenizer and a tiny random Llama."""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

# SmolLM2-Instruct's template: ChatML, with a default system turn; no {% generation %} markers
CHATML = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CORPUS = [
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face",
    "What is the capital of France? The capital of France is Paris.",
    "And of Italy? Rome is the capital of Italy.",
    "Translate hello into French. Bonjour.",
]


def chatml_tokenizer(corpus: list[str] = CORPUS, vocab_size: int = 400) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained here in milliseconds; pad == EOS == <|im_end|>."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(corpus, trainer=trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        bos_token="<|im_start|>",
        additional_special_tokens=["<|endoftext|>"],
    )
    tok.chat_template = CHATML
    return tok


def tiny_llama(tokenizer: PreTrainedTokenizerFast, seed: int = 0):
    """A random 2-layer LlamaForCausalLM over the tokenizer's vocabulary (milliseconds a token)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval()


def tiny_chat_run(root, pairs: list[tuple[str, str]], seed: int = 0):
    """A 1-epoch `full` chat run (seconds) on a tiny random Llama; returns its directory."""
    import json

    import torch

    import tuneforge

    tok = chatml_tokenizer([*CORPUS, *(f"{q} {a}" for q, a in pairs)])
    lm = tiny_llama(tok, seed)
    with torch.no_grad():  # confident logits, so greedy choices are not near-ties
        lm.lm_head.weight.mul_(25)
    lm.save_pretrained(root / "base")
    tok.save_pretrained(root / "base")
    rows = [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
        for q, a in pairs
    ]
    data = root / "chats.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tuneforge.tune(data, task="chat", base=str(root / "base"), method="full", epochs=1,
                   batch_size=4, early_stopping=0, progress=False, max_length=64,
                   out=root / "run")  # fmt: skip
    return root / "run"
