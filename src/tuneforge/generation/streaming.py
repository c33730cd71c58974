"""`stream`: one prompt's text, piece by piece, as `model.generate` produces it.

generate runs in a thread and feeds transformers' `TextIteratorStreamer`; this side holds back any
tail that could begin a stop string, so the pieces never show one and their concatenation equals
`generate(...)[0].text` for the same options. Leaving the loop early stops the thread's decoding,
and so does setting `cancel` from another thread (a server whose client went away); `on_end`
receives the whole `Generation` (token counts, finish_reason) once decoding is over.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

from tuneforge.generation.constrained import end_token_ids
from tuneforge.generation.generate import (
    Generation,
    Prompt,
    encode_prompt,
    finish,
    first_stop,
    generation_kwargs,
    seeded,
)
from tuneforge.generation.options import GenerationOptions
from tuneforge.generation.precision import for_generation


def stream(
    model: Any,
    tokenizer: Any,
    prompt: Prompt,
    options: GenerationOptions | None = None,
    *,
    cancel: threading.Event | None = None,
    on_end: Callable[[Generation], None] | None = None,
) -> Iterator[str]:
    """Yield the generated text for one prompt (string or conversation) in pieces."""
    options = options or GenerationOptions()
    model = for_generation(model, options.precision)
    ids = encode_prompt(tokenizer, prompt)
    input_ids = torch.tensor([ids])
    kwargs, constraint = generation_kwargs(model, tokenizer, options, len(ids))
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    cancel = cancel or threading.Event()
    kwargs["stopping_criteria"] = StoppingCriteriaList([_Cancelled(cancel)])
    failure: list[BaseException] = []
    output: list[torch.Tensor] = []

    def run() -> None:
        try:
            with seeded(options.seed), torch.no_grad():
                out = model.generate(
                    input_ids=input_ids,
                    attention_mask=torch.ones_like(input_ids),
                    streamer=streamer,
                    **kwargs,
                )
            output.append(out[0])
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)
            streamer.on_finalized_text("", stream_end=True)  # unblocks the iterator

    thread = threading.Thread(target=run, name="tuneforge-stream", daemon=True)
    thread.start()
    trimmer = StopTrimmer(options.stop if constraint is None else [])
    try:
        for piece in streamer:
            text = trimmer.push(piece)
            if text:
                yield text
            if trimmer.done:
                break
        if failure:
            raise failure[0]
        rest = trimmer.flush()
        if rest:
            yield rest
    finally:
        cancel.set()
        thread.join()
    if on_end is not None and output:  # counted as `generate` counts (stop strings, EOS)
        new_ids = output[0][len(ids) :].tolist()
        eos_ids = end_token_ids(model, tokenizer)
        on_end(finish(tokenizer, new_ids, len(ids), options, constraint, eos_ids))


class _Cancelled(StoppingCriteria):
    """Ends decoding once the consumer has stopped reading."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any):
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool)


class StopTrimmer:
    """Passes text through until a stop string, holding back a tail that may start one."""

    def __init__(self, stops: Sequence[str]):
        self.stops = list(stops)
        self.buffer = ""
        self.done = False

    def push(self, text: str) -> str:
        if self.done:
            return ""
        self.buffer += text
        cut = first_stop(self.buffer, self.stops)
        if cut >= 0:
            self.done = True
            out, self.buffer = self.buffer[:cut], ""
            return out
        hold = max((self._prefix_tail(s) for s in self.stops), default=0)
        split = len(self.buffer) - hold
        out, self.buffer = self.buffer[:split], self.buffer[split:]
        return out

    def flush(self) -> str:
        out, self.buffer = ("" if self.done else self.buffer), ""
        return out

    def _prefix_tail(self, stop: str) -> int:
        """The longest end of the buffer that is a proper beginning of `stop`."""
        for k in range(min(len(stop) - 1, len(self.buffer)), 0, -1):
            if self.buffer.endswith(stop[:k]):
                return k
        return 0
