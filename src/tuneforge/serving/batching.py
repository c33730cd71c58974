"""Dynamic micro-batching: concurrent requests are queued and run together in one forward pass.

A request is a list of texts. The worker takes the oldest request, then waits up to `max_wait_ms`
for more until `max_batch` texts are collected, runs them as one call in a single inference
thread (onnxruntime and torch release the GIL, the event loop stays free) and resolves each
request's future with its slice. Admission control: when more than `max_queue` texts are
waiting, or when the measured time per text says the answer would come later than
`max_delay_ms` (the pass running now, the queue and its own pass), new
requests are refused at once (`Overloaded` → 503 + Retry-After) instead of queueing
without bound, so accepted requests keep a bounded latency under overload.

`cost_unit` texts cost about as much together as one alone (generation decodes a forward batch
of prompts in about the time of one): the cost is measured and predicted per group of that
many, not per text, so a queue of prompts that will share passes is not taken for a long one.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field


class Overloaded(Exception):
    """The queue is full; retry after `retry_after` seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"server busy, retry after {retry_after:.0f} s")
        self.retry_after = retry_after


class Closed(Exception):
    """The batcher is shutting down (its model is being replaced or the server stops)."""


@dataclass
class _Item:
    texts: Sequence[str]
    future: asyncio.Future
    enqueued: float = field(default_factory=time.monotonic)


class MicroBatcher:
    def __init__(
        self,
        fn: Callable[[list[str]], Sequence],
        *,
        max_batch: int = 32,
        max_wait_ms: float = 5.0,
        max_queue: int = 1024,
        max_delay_ms: float = 500.0,
        on_batch: Callable[[int, float], None] | None = None,
        name: str = "model",
        cost_unit: int = 1,
    ) -> None:
        self.fn, self.max_batch, self.max_wait = fn, max_batch, max_wait_ms / 1000
        self.max_queue, self.on_batch = max_queue, on_batch
        self.max_delay = max_delay_ms / 1000
        self.cost_unit = max(1, cost_unit)
        self._queue: deque[_Item] = deque()
        self._queued_texts = 0
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._closing = False
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"infer-{name}")
        # Running estimate of the cost of one text in a pass (None until the first pass).
        # Per text rather than per pass: small passes overstate it, so a burst after a quiet
        # spell is refused a little early rather than answered late.
        self._text_seconds: float | None = None
        self._running_since: float | None = None  # start of the pass in the executor, if any
        self._running_texts = 0

    @property
    def queued_texts(self) -> int:
        return self._queued_texts

    def start(self) -> None:
        if self._task is None:
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def submit(self, texts: Sequence[str]) -> list:
        if self._closing:
            raise Closed("model is shutting down")
        # Refuse when the queue is full, or when the measured service time says this request
        # would be answered later than max_delay: accepted requests keep a bounded latency on
        # any hardware. An idle model always accepts.
        expected = self.expected_latency(len(texts))
        busy = self._queued_texts or self._running_since is not None
        if self._queued_texts + len(texts) > self.max_queue or (busy and expected > self.max_delay):
            raise Overloaded(retry_after=min(max(1.0, expected), 30.0))
        self.start()
        future = asyncio.get_running_loop().create_future()
        self._queue.append(_Item(texts, future))
        self._queued_texts += len(texts)
        self._wake.set()
        return await future

    def expected_latency(self, n_texts: int) -> float:
        """Seconds until `n_texts` more would be answered: the rest of the pass running now,
        then every queued text and these, at the measured cost per text."""
        if self._text_seconds is None:
            return 0.0
        running = 0.0
        if self._running_since is not None:
            left = self._units(self._running_texts) * self._text_seconds
            running = max(0.0, left - (time.monotonic() - self._running_since))
        return running + self._units(self._queued_texts + n_texts) * self._text_seconds

    def _units(self, n_texts: int) -> int:
        return math.ceil(n_texts / self.cost_unit)

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = await self._collect()
            await self._execute(batch)

    async def _collect(self) -> list[_Item]:
        """The oldest request, plus whatever arrives within max_wait, up to max_batch texts."""
        deadline = self._queue[0].enqueued + self.max_wait
        while (
            sum(len(i.texts) for i in self._queue) < self.max_batch
            and not self._closing
            and (delay := deadline - time.monotonic()) > 0
        ):
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except TimeoutError:
                break
        batch, n = [], 0
        while self._queue and (not batch or n + len(self._queue[0].texts) <= self.max_batch):
            item = self._queue.popleft()
            batch.append(item)
            n += len(item.texts)
        self._queued_texts -= n
        return batch

    async def _execute(self, batch: list[_Item]) -> None:
        texts = [t for item in batch for t in item.texts]
        start = self._running_since = time.monotonic()
        self._running_texts = len(texts)
        try:
            results = await asyncio.get_running_loop().run_in_executor(
                self._executor, self.fn, texts
            )
        except Exception as exc:
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        finally:
            self._running_since = None
        elapsed = time.monotonic() - start
        per_text = elapsed / self._units(len(texts))  # per cost unit (1 text by default)
        prior = self._text_seconds
        self._text_seconds = per_text if prior is None else 0.7 * prior + 0.3 * per_text
        if self.on_batch:
            self.on_batch(len(texts), elapsed)
        offset = 0
        for item in batch:
            part = results[offset : offset + len(item.texts)]
            offset += len(item.texts)
            if not item.future.done():  # the client may have gone away (cancelled)
                item.future.set_result(part)

    async def close(self) -> None:
        """Stop taking requests, finish every queued one (graceful drain), stop the thread."""
        self._closing = True
        if self._task is not None:
            self._wake.set()
            await self._task
        self._executor.shutdown(wait=True)
