"""Request limits: body size (413), per-key rate (429), texts per request and text length,
and for image models bytes per image, pixels per image and images per request.

Body size is enforced while the body streams in (a lying or absent Content-Length cannot get
past it); an image model's predict and infer requests get `max_image_request_bytes` instead of
`max_body_bytes`. The rate limit is a token bucket per API key (per client address without auth).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from tuneforge.serving.auth import send_json


@dataclass
class Limits:
    max_body_bytes: int = 1 << 20
    max_texts: int = 256
    max_text_chars: int = 10_000
    max_explain_texts: int = 8
    rate_per_second: float = 50.0  # sustained requests per key; 0 disables
    burst: int = 100
    max_inflight: int = 256  # concurrent requests being handled; beyond: 503 (0 disables)
    max_loop_lag_ms: float = 100.0  # event loop this late: 503 (0 disables)
    target_latency_ms: float = 500.0  # in-flight bound adapts to keep answers this fast (0: off)
    # image models
    max_image_bytes: int = 10 << 20  # one encoded image (a file part, or base64 once decoded)
    max_image_request_bytes: int = 32 << 20  # an image model's request body, instead of the above
    max_image_pixels: int = 40_000_000  # width x height from the header: decompression bombs
    max_images: int = 16  # images per request

    def check_texts(self, texts: list[str]) -> tuple[int, str] | None:
        """(status, message) when `texts` break a limit, else None."""
        if len(texts) > self.max_texts:
            return 413, (
                f"Too many texts: {len(texts)} in one request, the limit is {self.max_texts}. "
                "Split the request."
            )
        for i, text in enumerate(texts):
            if len(text) > self.max_text_chars:
                return 422, (
                    f"Text {i} has {len(text)} characters, the limit is {self.max_text_chars}. "
                    "Shorten it (the model reads only the first few hundred tokens anyway)."
                )
        return None

    def check_images(self, n: int) -> tuple[int, str] | None:
        """(status, message) when `n` images in one request are too many, else None."""
        if n > self.max_images:
            return 413, (
                f"Too many images: {n} in one request, the limit is {self.max_images}. "
                "Split the request."
            )
        return None


class _TooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """413 beyond `max_bytes`, or `image_bytes` for requests `for_images(scope)` says carry
    images (an image model's predict and infer)."""

    def __init__(
        self,
        app,
        max_bytes: int,
        image_bytes: int | None = None,
        for_images: Callable[[dict], bool] | None = None,
    ) -> None:
        self.app, self.max_bytes = app, max_bytes
        self.image_bytes, self.for_images = image_bytes, for_images

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        images = self.image_bytes is not None and self.for_images and self.for_images(scope)
        limit = self.image_bytes if images else self.max_bytes
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                return await send_json(send, 413, {"detail": self._message(limit, images)})
        received, started = 0, False

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge
            return message

        async def tracking_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await send_json(send, 413, {"detail": self._message(limit, images)})

    @staticmethod
    def _message(limit: int, images: bool) -> str:
        if images:
            return (
                f"Request body larger than {limit} bytes (the limit for an image model's "
                "request). Send fewer or smaller images per request."
            )
        return f"Request body larger than {limit} bytes. Send fewer or shorter texts per request."


class RateLimitMiddleware:
    """Token bucket per key: `rate` requests per second sustained, `burst` at once."""

    def __init__(self, app, rate: float, burst: int, open_paths: tuple[str, ...]) -> None:
        self.app, self.rate, self.burst, self.open_paths = app, rate, burst, open_paths
        self._buckets: dict[str, tuple[float, float]] = {}

    def _take(self, who: str) -> float:
        """0 when allowed, else seconds until a token is available."""
        now = time.monotonic()
        tokens, last = self._buckets.get(who, (float(self.burst), now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1:
            self._buckets[who] = (tokens - 1, now)
            return 0.0
        self._buckets[who] = (tokens, now)
        if len(self._buckets) > 100_000:  # bounded memory under address churn
            self._buckets.clear()
        return (1 - tokens) / self.rate

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or self.rate <= 0 or scope["path"] in self.open_paths:
            return await self.app(scope, receive, send)
        state = scope.get("state") or {}
        who = state.get("key_id") or (scope.get("client") or ("?",))[0]
        wait = self._take(who)
        if wait > 0:
            return await send_json(
                send,
                429,
                {"detail": f"Rate limit of {self.rate:g} requests/s exceeded; retry later."},
                [(b"retry-after", str(max(1, round(wait + 0.5))).encode())],
            )
        return await self.app(scope, receive, send)


class LoopLag:
    """How late the event loop runs a short timer: fast to rise, decaying with a 100 ms
    half-life. Under a flood the loop itself becomes the queue (parsing, rejecting, writing
    answers), and a request accepted then is answered late whatever the model's queue says."""

    def __init__(self, tick: float = 0.01, half_life: float = 0.1) -> None:
        self.tick, self.half_life = tick, half_life
        self.seconds = 0.0
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(self.tick)
            elapsed = loop.time() - before
            decayed = self.seconds * 0.5 ** (elapsed / self.half_life)
            self.seconds = max(elapsed - self.tick, decayed)


class LatencyLimit:
    """The in-flight bound that keeps answers near `target` seconds.

    By Little's law the time in the server is what is in flight over the throughput, and under
    a flood the throughput falls (the loop spends its time refusing), so a fixed bound answers
    late just when it matters. Every `window` seconds the 90th percentile of the answers' times
    is compared with the target: above it, the bound shrinks in proportion; well under it, the
    bound grows back by a tenth towards `ceiling`. It never goes below `floor`.
    """

    def __init__(self, ceiling: int, target: float, floor: int, window: float = 0.25) -> None:
        self.ceiling, self.target, self.floor, self.window = ceiling, target, floor, window
        self.limit = float(ceiling)
        self._times: list[float] = []
        self._since = time.monotonic()

    def record(self, seconds: float) -> None:
        self._times.append(seconds)
        now = time.monotonic()
        if now - self._since < self.window or len(self._times) < 8:
            return
        times = sorted(self._times)
        p90 = times[int(0.9 * (len(times) - 1))]
        if p90 > self.target:
            self.limit = max(self.floor, self.limit * max(0.5, self.target / p90))
        elif p90 < 0.8 * self.target:
            self.limit = min(self.ceiling, self.limit * 1.1 + 1)
        self._times.clear()
        self._since = now


class AdmissionMiddleware:
    """Sheds load before any parsing: 503 at once beyond the in-flight bound, or while the
    event loop runs more than `max_loop_lag` seconds late with at least an eighth of
    `max_inflight` in flight.

    The bound is `max_inflight`, lowered under load to keep answers near `target_latency`
    (`LatencyLimit`; 0 keeps it fixed). The batcher's own admission only sees requests that
    got as far as the model; under a flood the event loop itself becomes the queue, and these
    bounds keep that queue short.
    """

    def __init__(
        self,
        app,
        max_inflight: int,
        open_paths: tuple[str, ...],
        max_loop_lag: float = 0.1,
        target_latency: float = 0.0,
    ) -> None:
        self.app, self.max_inflight, self.open_paths = app, max_inflight, open_paths
        self.max_loop_lag = max_loop_lag
        self.inflight = 0
        self.lag = LoopLag()
        self.bound = (
            LatencyLimit(max_inflight, target_latency, floor=max(1, max_inflight // 8))
            if target_latency and max_inflight
            else None
        )

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not self.max_inflight or scope["path"] in self.open_paths:
            return await self.app(scope, receive, send)
        self.lag.start()
        # Lag with little in flight is a stall (a reload, a GC pause), not a flood: serve on.
        flooded = self.inflight >= self.max_inflight // 8
        lagging = self.max_loop_lag and flooded and self.lag.seconds > self.max_loop_lag
        limit = self.bound.limit if self.bound else self.max_inflight
        if self.inflight >= limit or lagging:
            return await send_json(
                send,
                503,
                {"detail": "Server at capacity; request not queued. Retry after Retry-After."},
                [(b"retry-after", b"1")],
            )
        self.inflight += 1
        start = time.monotonic()
        try:
            return await self.app(scope, receive, send)
        finally:
            self.inflight -= 1
            if self.bound:
                self.bound.record(time.monotonic() - start)
