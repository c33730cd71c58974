"""Webhook alert sink: HTTP POST of the alert as JSON, retried with exponential backoff.

Posts run on one background thread so a slow or failing receiver never stalls ingestion.
A delivery is retried on connection errors, timeouts, 429 and 5xx (not on other 4xx, which
a retry cannot fix), waiting backoff, 2·backoff, 4·backoff... between attempts.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request

from tuneforge.apps.monitor.settings import WebhookSettings
from tuneforge.errors import ConfigError

log = logging.getLogger("tuneforge.monitor")


def post_with_retry(url: str, payload: dict, cfg: WebhookSettings, sleep=time.sleep) -> bool:
    """POST `payload` to `url`; True once a 2xx arrives, False when the retries are spent."""
    data = json.dumps(payload).encode()
    for attempt in range(cfg.retries + 1):
        request = urllib.request.Request(
            url, data=data, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=cfg.timeout_seconds):
                return True
        except urllib.error.HTTPError as exc:
            if exc.code != 429 and exc.code < 500:
                log.error("webhook refused the alert (HTTP %d): not retrying", exc.code)
                return False
            reason = f"HTTP {exc.code}"
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            reason = str(getattr(exc, "reason", exc))
        if attempt < cfg.retries:
            delay = cfg.backoff_seconds * 2**attempt
            log.warning(
                "webhook attempt %d failed (%s); retrying in %.1fs", attempt + 1, reason, delay
            )
            sleep(delay)
    log.error("webhook delivery failed after %d attempts", cfg.retries + 1)
    return False


class WebhookSink:
    def __init__(self, cfg: WebhookSettings) -> None:
        if not cfg.url or not cfg.url.startswith(("http://", "https://")):
            raise ConfigError(f"Webhook url {cfg.url!r} must start with http:// or https://.")
        self.cfg = cfg
        self._queue: queue.Queue[dict | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="monitor-webhook", daemon=True)
        self._thread.start()

    def post(self, payload: dict) -> None:
        self._queue.put(payload)

    def close(self, timeout: float = 30.0) -> None:
        """Deliver what is queued (up to `timeout` seconds), then stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while (payload := self._queue.get()) is not None:
            post_with_retry(self.cfg.url, payload, self.cfg)
