"""Generation for served chat models: batched requests grouped by their options, and streams.

Non-streaming requests go through the model's `MicroBatcher` like predictions do: each item is
`(prompt, GenerationOptions)`, and a pass calls the task's `predict` (`tuneforge.generation`'s
`generate`) once per group of items whose options decode alike (`options_key`), so concurrent
requests with the same settings share one batched `generate` call.

A stream is one prompt on its own `generation.stream` (transformers' streamer is batch-size 1),
at most `max_streams` at a time; the pieces cross from its thread to the event loop by a queue,
and a stream the client left is cancelled, which stops decoding at the next token.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from tuneforge.generation import Generation, GenerationOptions, stream
from tuneforge.serving.batching import Overloaded

Item = tuple[Any, GenerationOptions]  # (prompt string or messages, options)


def options_key(options: GenerationOptions) -> str:
    """Options that decode alike share a key: greedy decoding ignores top_p, top_k and seed.

    Seeded sampling is never batched with another request (its options object is its own
    key): the random stream of a batch is shared by its rows, so a seed would give another
    text depending on who else was in the batch.
    """
    data = options.model_dump(mode="json")
    if not options.do_sample:
        data.update(top_p=1.0, top_k=0, seed=None)
    elif options.seed is not None:
        return f"seeded-{id(options)}"
    return GenerationOptions(**data).model_dump_json()


def generate_grouped(
    task: Any,
    model: Any,
    items: Sequence[Item],
    batch_size: int,
    on_call: Callable[[], None] | None = None,
) -> list[Generation | Exception]:
    """One Generation per item, in order; one `task.predict` call per options group. A group
    that fails gives its exception to its own items only, not to the other groups'."""
    groups: dict[str, list[int]] = {}
    for i, (_, options) in enumerate(items):
        groups.setdefault(options_key(options), []).append(i)
    out: list[Generation | None] = [None] * len(items)
    for indices in groups.values():
        options = items[indices[0]][1]
        prompts = [items[i][0] for i in indices]
        if on_call is not None:
            on_call()
        try:
            results = task.predict(model, prompts, batch_size=batch_size, options=options)
        except Exception as exc:
            results = [exc] * len(indices)
        for i, generation in zip(indices, results, strict=True):
            out[i] = generation
    return out  # type: ignore[return-value]


class StreamSlots:
    """At most `running` streams decode at once; up to `waiting` more wait for a slot, beyond
    that a stream is refused at once (`Overloaded`, a 503 like the batchers' admission)."""

    def __init__(self, running: int, waiting: int) -> None:
        self.running, self.waiting = running, waiting
        self._semaphore: asyncio.Semaphore | None = None
        self._waiters = 0

    def check(self) -> None:
        """Raise `Overloaded` now, before the response starts, if no place is left."""
        busy = self._semaphore is not None and self._semaphore.locked()
        if busy and self._waiters >= self.waiting:
            raise Overloaded(retry_after=1.0)

    @contextlib.asynccontextmanager
    async def slot(self):
        self._semaphore = self._semaphore or asyncio.Semaphore(self.running)
        self._waiters += 1
        try:
            await self._semaphore.acquire()
        finally:
            self._waiters -= 1
        try:
            yield
        finally:
            self._semaphore.release()


async def stream_async(
    model: Any, tokenizer: Any, prompt: Any, options: GenerationOptions
) -> AsyncIterator[str | Generation]:
    """The text pieces of `stream(...)`, then its Generation (counts, finish_reason).

    Leaving early (the client disconnected: the task is cancelled) stops the decoding.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    cancel = threading.Event()

    def put(kind: str, value: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed (server stopped)
            loop.call_soon_threadsafe(queue.put_nowait, (kind, value))

    def produce() -> None:
        try:
            ended: list[Generation] = []
            for piece in stream(
                model, tokenizer, prompt, options, cancel=cancel, on_end=ended.append
            ):
                put("piece", piece)
            put("end", ended[0] if ended else None)
        except Exception as exc:  # re-raised on the loop
            put("error", exc)

    thread = threading.Thread(target=produce, name="tuneforge-serve-stream", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = await queue.get()
            if kind == "error":
                raise value
            if kind == "end":
                if value is not None:
                    yield value
                return
            yield value
    finally:
        cancel.set()  # the generation stops at its next token
