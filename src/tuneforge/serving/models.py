"""Served models: a `ServedModel` wraps one loaded `TunedModel` version with its micro-batchers;
`ModelRepository` maps names to them and swaps in new versions without dropping requests.

Protocol modules (native, v2, openai, openai_chat) only call `predict` / `embed` / `explain` /
`generate` / `stream` here: one internal request path, whatever the wire format.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tuneforge.serving.batching import Closed, MicroBatcher
from tuneforge.serving.generating import StreamSlots, generate_grouped, stream_async
from tuneforge.serving.pii import mask_pii


@dataclass
class BatchSettings:
    max_batch: int = 32
    max_wait_ms: float = 5.0
    max_queue: int = 512
    mask_pii: bool = False
    max_delay_ms: float = 500.0
    # A micro-batch is length-sorted and cut into forward passes of this size: a random batch
    # of 32 short texts padded to its longest ran at a third of the sorted throughput.
    forward_batch: int = 8
    # generation (chat models): a pass decodes many tokens, so answers take seconds, not ms
    generate_max_delay_ms: float = 60_000.0
    max_streams: int = 4  # streams decoding at once (each is its own batch-size-1 generate)


def artifact_version(path: Path) -> str:
    """A short content hash of the artifact's config: changes whenever a new model is saved."""
    data = (Path(path) / "tuneforge.yaml").read_bytes()
    return hashlib.sha256(data).hexdigest()[:12]


class ServedModel:
    def __init__(self, name: str, path: Path, model, settings: BatchSettings, metrics=None):
        self.name, self.path, self.model, self.settings = name, Path(path), model, settings
        self.version = artifact_version(path)
        self.loaded_at = int(time.time())
        self.labels = list(model.labels)

        def observe(n: int, seconds: float) -> None:
            if metrics is not None:
                metrics.observe_batch(name, n, seconds)

        common = {
            "max_batch": settings.max_batch,
            "max_wait_ms": settings.max_wait_ms,
            "max_queue": settings.max_queue,
            "max_delay_ms": settings.max_delay_ms,
            "on_batch": observe,
            "name": name,
        }
        self._predict = MicroBatcher(self._predict_batch, **common)
        self._embed = MicroBatcher(self._embed_batch, **common)
        # A pass is one forward batch of prompts (one generate call when their options agree):
        # each request is answered when its own batch is done, not when the queue's last is.
        generating = {
            **common,
            "max_batch": settings.forward_batch,
            "max_delay_ms": settings.generate_max_delay_ms,
            "cost_unit": settings.forward_batch,
        }
        self._generate = MicroBatcher(self._generate_batch, **generating)
        self.streams = StreamSlots(settings.max_streams, settings.max_queue)
        self.metrics = metrics

    @classmethod
    def load(cls, name: str, path: Path, settings: BatchSettings, metrics=None) -> ServedModel:
        from tuneforge.tuned_model import TunedModel

        return cls(name, path, TunedModel.load(path), settings, metrics)

    # Run in the batcher's inference thread (an image model's "texts" are decoded pictures).
    def _predict_batch(self, texts: list) -> list:
        return self.model.predict(texts, batch_size=self.settings.forward_batch, top_k=5)

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        return self.model.embed(texts, batch_size=self.settings.forward_batch)

    def _generate_batch(self, items: list) -> list:
        def counted() -> None:
            if self.metrics is not None:
                self.metrics.generate_calls.labels(self.name).inc()

        batch = self.settings.forward_batch
        return generate_grouped(self.task, self.model, items, batch, counted)

    def _prepare(self, texts: list) -> list:
        """Texts masked with --mask-pii; anything else (an image model's pictures) as it is."""
        if not self.settings.mask_pii:
            return list(texts)
        return [mask_pii(t) if isinstance(t, str) else t for t in texts]

    @property
    def task(self):
        """The model's task (what its predictions are; models without one classify text)."""
        from tuneforge.tasks import get_task

        return getattr(self.model, "task", None) or get_task("text-classification")

    def _prepare_prompt(self, prompt):
        """A prompt string or conversation with its texts masked (with --mask-pii)."""
        if not self.settings.mask_pii:
            return prompt
        if isinstance(prompt, str):
            return mask_pii(prompt)
        return [{**m, "content": mask_pii(m["content"])} for m in prompt]

    @property
    def queued_texts(self) -> int:
        return sum(b.queued_texts for b in (self._predict, self._embed, self._generate))

    async def predict(self, texts: list[str]) -> list:
        return await self._predict.submit(self._prepare(texts))

    async def embed(self, texts: list[str]) -> np.ndarray:
        return np.asarray(await self._embed.submit(self._prepare(texts)), dtype=np.float32)

    async def generate(self, items: list) -> list:
        """A Generation per `(prompt, GenerationOptions)` item, batched with other requests."""
        results = await self._generate.submit([(self._prepare_prompt(p), o) for p, o in items])
        failed = next((r for r in results if isinstance(r, Exception)), None)
        if failed is not None:
            raise failed
        return results

    def stream(self, prompt, options):
        """Text pieces, then the Generation, for one prompt (`generating.stream_async`)."""
        from tuneforge.tasks.chat import hf_model_of

        lm = hf_model_of(self.model)
        return stream_async(lm, self.model.tokenizer, self._prepare_prompt(prompt), options)

    async def explain(self, texts: list[str]) -> list[dict]:
        """Token attributions by occlusion (works for every runtime); outside the batcher."""
        from tuneforge.evaluation.explain import explain

        loop = asyncio.get_running_loop()
        out = []
        for text in self._prepare(texts):
            exp = await loop.run_in_executor(None, explain, self.model, text, "occlusion")
            out.append({"tokens": exp.tokens, "weights": [round(w, 5) for w in exp.weights]})
        return out

    async def close(self) -> None:
        await asyncio.gather(self._predict.close(), self._embed.close(), self._generate.close())


class ModelRepository:
    def __init__(self, settings: BatchSettings, metrics=None) -> None:
        self.settings, self.metrics = settings, metrics
        self.models: dict[str, ServedModel] = {}
        self._reload_lock = asyncio.Lock()

    def add(self, name: str, path: Path) -> ServedModel:
        served = ServedModel.load(name, path, self.settings, self.metrics)
        self.models[name] = served
        return served

    def get(self, name: str) -> ServedModel | None:
        return self.models.get(name)

    async def call(self, name: str, op: str, texts: list[str]) -> tuple[ServedModel, object]:
        """Run `op` ("predict" | "embed" | "explain") on the current version of `name`.

        A request that raced a reload (got the old version just as it closed) is retried on
        the new one.
        """
        for _ in range(3):
            served = self.models[name]
            try:
                return served, await getattr(served, op)(texts)
            except Closed:
                await asyncio.sleep(0)
        raise Closed(f"model {name} is shutting down")

    async def reload(self, name: str, path: Path | None = None) -> ServedModel:
        """Load the new version off the event loop, swap it in, then drain the old one.

        Requests already queued on the old version finish on it; new ones go to the new one,
        so a reload under traffic loses nothing.
        """
        async with self._reload_lock:
            old = self.models[name]
            new = await asyncio.get_running_loop().run_in_executor(
                None, ServedModel.load, name, Path(path or old.path), self.settings, self.metrics
            )
            self.models[name] = new
            await old.close()
            return new

    async def close(self) -> None:
        await asyncio.gather(*(m.close() for m in self.models.values()))
