"""Server behaviour with a fake model (no torch): batching, admission control, rate limit,
PII masking of inputs and logs, graceful drain."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path

import httpx
import pytest

from tuneforge.serving.app import build_app
from tuneforge.serving.batching import MicroBatcher, Overloaded
from tuneforge.serving.limits import LatencyLimit, Limits
from tuneforge.serving.models import BatchSettings, ModelRepository, ServedModel
from tuneforge.serving.pii import PiiLogFilter, iban_ok, luhn_ok, mask_pii
from tuneforge.tuned_model import Prediction

KEY = "x" * 32
AUTH = {"Authorization": f"Bearer {KEY}"}


class FakeModel:
    """Labels a text 'long' or 'short'; records every batch it sees; optionally slow."""

    labels = ("short", "long")

    def __init__(self, delay: float = 0.0) -> None:
        self.delay, self.batches, self.seen = delay, [], []

    def predict(self, texts, batch_size=64, top_k=5):
        time.sleep(self.delay)
        self.batches.append(len(texts))
        self.seen.extend(texts)
        return [Prediction("long" if len(t) > 10 else "short", 0.9, {}) for t in texts]


def fake_app(tmp_path: Path, model: FakeModel, settings: BatchSettings, limits: Limits):
    (tmp_path / "tuneforge.yaml").write_text("labels: [short, long]\n")
    repo = ModelRepository(settings)
    repo.models["fake"] = ServedModel("fake", tmp_path, model, settings)
    return build_app(repo, api_keys=[KEY], limits=limits)


async def _post_many(app, n: int, texts: list[str]) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await asyncio.gather(
            *(
                client.post(
                    "/v1/models/fake/predict",
                    json={"texts": texts},
                    headers={"Authorization": f"Bearer {KEY}"},
                )
                for _ in range(n)
            )
        )


def test_concurrent_requests_share_forward_passes(tmp_path):
    model = FakeModel(delay=0.02)
    app = fake_app(tmp_path, model, BatchSettings(max_batch=16, max_wait_ms=20), Limits())
    responses = asyncio.run(_post_many(app, 24, ["hello"]))
    assert [r.status_code for r in responses] == [200] * 24
    assert max(model.batches) > 1 and max(model.batches) <= 16
    assert sum(model.batches) == 24


def test_overload_is_shed_with_503_and_retry_after(tmp_path):
    model = FakeModel(delay=0.05)
    settings = BatchSettings(max_batch=2, max_wait_ms=1, max_queue=4)
    app = fake_app(tmp_path, model, settings, Limits(rate_per_second=0))
    responses = asyncio.run(_post_many(app, 20, ["a", "b"]))
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 503} and 200 in codes and 503 in codes
    shed = next(r for r in responses if r.status_code == 503)
    assert int(shed.headers["retry-after"]) >= 1


def test_rate_limit_per_key_429(tmp_path):
    app = fake_app(tmp_path, FakeModel(), BatchSettings(), Limits(rate_per_second=1, burst=3))
    codes = [r.status_code for r in asyncio.run(_post_many(app, 6, ["a"]))]
    assert codes.count(200) == 3 and codes.count(429) == 3


def test_mask_pii_before_inference(tmp_path):
    model = FakeModel()
    app = fake_app(tmp_path, model, BatchSettings(mask_pii=True), Limits())
    asyncio.run(_post_many(app, 1, ["write to jane@example.org now"]))
    assert model.seen == ["write to [EMAIL] now"]


def test_batcher_drains_queued_work_on_close():
    async def scenario():
        done = []

        def slow(texts):
            time.sleep(0.01)
            return texts

        batcher = MicroBatcher(slow, max_batch=1, max_wait_ms=0)
        tasks = [asyncio.create_task(batcher.submit([f"t{i}"])) for i in range(5)]
        await asyncio.sleep(0)
        await batcher.close()
        for t in tasks:
            done.append(await t)
        return done

    assert asyncio.run(scenario()) == [[f"t{i}"] for i in range(5)]


def test_batcher_refuses_beyond_max_queue():
    async def scenario():
        gate = threading.Event()
        batcher = MicroBatcher(lambda t: (gate.wait(5), t)[1], max_batch=1, max_queue=2)
        first = asyncio.create_task(batcher.submit(["a"]))
        await asyncio.sleep(0.05)  # "a" is running; the queue is empty again
        queued = [asyncio.create_task(batcher.submit([x])) for x in "bc"]
        await asyncio.sleep(0)
        with pytest.raises(Overloaded):
            await batcher.submit(["d"])
        gate.set()
        await asyncio.gather(first, *queued)
        await batcher.close()

    asyncio.run(scenario())


PII = [
    ("mail jane.doe@example.com today", "mail [EMAIL] today"),
    ("card 4111 1111 1111 1111 please", "card [CARD] please"),
    ("card 5500-0000-0000-0004", "card [CARD]"),
    ("IBAN GB82 WEST 1234 5698 7654 32", "IBAN [IBAN]"),
    ("ssn 123-45-6789", "ssn [ID]"),
    ("passport: X1234567 lost", "[ID] lost"),
    ("call +33 6 12 34 56 78", "call [PHONE]"),
]
NOT_PII = [
    "order 12345 of 100.50 on 2024-05-01",
    "my card has not arrived after 3 days",
    "reference 4111 1111 1111 1112",  # fails Luhn: not a card (masked as number? no: 16 digits)
]


@pytest.mark.parametrize(("raw", "masked"), PII)
def test_mask_pii(raw, masked):
    assert mask_pii(raw) == masked


@pytest.mark.parametrize("text", NOT_PII)
def test_non_pii_kept(text):
    assert mask_pii(text) == text


def test_checksums():
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert iban_ok("DE89370400440532013000") and not iban_ok("DE89370400440532013001")


def test_log_filter_masks_message_and_args(caplog):
    logger = logging.getLogger("tuneforge.test.pii")
    logger.addFilter(PiiLogFilter())
    with caplog.at_level(logging.INFO, logger="tuneforge.test.pii"):
        logger.info("user %s paid with %s", "jane@example.com", "4111111111111111")
    assert caplog.records[0].getMessage() == "user [EMAIL] paid with [CARD]"


def test_inflight_bound_sheds_before_parsing(tmp_path):
    model = FakeModel(delay=0.05)
    limits = Limits(rate_per_second=0, max_inflight=3)
    app = fake_app(tmp_path, model, BatchSettings(max_batch=1, max_wait_ms=0), limits)
    codes = [r.status_code for r in asyncio.run(_post_many(app, 12, ["a"]))]
    assert codes.count(200) == 3 and codes.count(503) == 9


@pytest.mark.parametrize(
    "max_lag_ms, max_inflight, shed", [(100.0, 4, True), (0.0, 4, False), (100.0, 256, False)]
)
def test_a_lagging_event_loop_sheds_new_requests(tmp_path, max_lag_ms, max_inflight, shed):
    """When the loop itself runs late under load (a flood of connections to parse and refuse),
    new requests get 503 at once; once the loop catches up they are served again. 0 turns it
    off, and a stall with little in flight (under max_inflight / 8) is not a flood."""
    limits = Limits(rate_per_second=0, max_loop_lag_ms=max_lag_ms, max_inflight=max_inflight)
    app = fake_app(tmp_path, FakeModel(), BatchSettings(max_batch=4), limits)

    async def scenario():
        first = await _post_many(app, 1, ["a"])  # starts the lag monitor
        time.sleep(0.3)  # the loop is blocked: its 10 ms timer fires 300 ms late
        await asyncio.sleep(0.02)
        during = await _post_many(app, 3, ["b"])
        await asyncio.sleep(0.6)  # six half-lives: the lag estimate has decayed
        after = await _post_many(app, 1, ["c"])
        return first + during + after

    codes = [r.status_code for r in asyncio.run(scenario())]
    assert codes == ([200, 503, 503, 503, 200] if shed else [200] * 5)


def test_latency_limit_shrinks_under_slow_answers_and_recovers():
    bound = LatencyLimit(ceiling=64, target=0.5, floor=8, window=0.0)
    for _ in range(8):
        bound.record(1.0)  # twice the target: the bound halves
    assert bound.limit == 32
    for _ in range(40):
        bound.record(5.0)
    assert bound.limit == 8  # never below the floor
    for _ in range(8 * 30):
        bound.record(0.1)
    assert bound.limit == 64  # grows back, never above the ceiling


def test_in_flight_bound_adapts_to_the_latency_target(tmp_path):
    """A fixed bound of 16 on a model taking 50 ms a request answers the 16th after 800 ms;
    with a 200 ms target the bound shrinks, and later waves get fast answers or a 503."""
    model = FakeModel(delay=0.05)
    limits = Limits(rate_per_second=0, max_inflight=16, max_loop_lag_ms=0, target_latency_ms=200)
    app = fake_app(tmp_path, model, BatchSettings(max_batch=1, max_wait_ms=0), limits)

    async def timed_wave():
        start = time.monotonic()
        responses = await _post_many(app, 16, ["a"])
        return [r.status_code for r in responses], time.monotonic() - start

    async def scenario():
        return [await timed_wave() for _ in range(4)]

    waves = asyncio.run(scenario())
    assert waves[0][0] == [200] * 16  # nothing measured yet: the full bound
    last_codes, last_seconds = waves[-1]
    assert 0 < last_codes.count(200) < 16 and last_codes.count(503) > 0
    assert last_seconds < waves[0][1] / 2


def test_expected_delay_bound_refuses_early():
    async def scenario():
        batcher = MicroBatcher(
            lambda t: (time.sleep(0.05 * len(t)), t)[1], max_batch=1, max_delay_ms=120
        )
        await batcher.submit(["warm"])  # measures ~50 ms per text
        tasks = [asyncio.create_task(batcher.submit([str(i)])) for i in range(10)]
        results = await asyncio.gather(*tasks, return_exceptions=True)
        await batcher.close()
        return results

    results = asyncio.run(scenario())
    refused = [r for r in results if isinstance(r, Overloaded)]
    assert 0 < len(refused) < 10


def test_accepted_requests_are_answered_within_the_delay_bound():
    """The estimate counts the pass already running and the request's own pass, so what is
    accepted is answered in about max_delay, however many arrive at once."""

    async def timed(batcher, text):
        start = time.monotonic()
        await batcher.submit([text])
        return time.monotonic() - start

    async def scenario():
        batcher = MicroBatcher(lambda t: (time.sleep(0.04), t)[1], max_batch=2, max_delay_ms=200)
        await batcher.submit(["warm"])
        await batcher.submit(["warm"])  # the running estimate converges towards 40 ms a pass
        results = []
        for _ in range(3):  # waves of 40 arrivals
            wave = [asyncio.create_task(timed(batcher, str(i))) for i in range(40)]
            results += await asyncio.gather(*wave, return_exceptions=True)
        await batcher.close()
        return results

    results = asyncio.run(scenario())
    latencies = [r for r in results if isinstance(r, float)]
    assert 0 < len(latencies) < len(results)
    assert max(latencies) < 0.2 + 0.1, max(latencies)  # bound + one pass of estimation error


def test_servers_require_keys_unless_told_otherwise(tmp_path, monkeypatch):
    from tuneforge.errors import ConfigError
    from tuneforge.serving.auth import server_keys

    monkeypatch.delenv("TUNEFORGE_API_KEYS", raising=False)
    with pytest.raises(ConfigError, match="No API keys"):
        server_keys(None, insecure_no_auth=False)
    assert server_keys(None, insecure_no_auth=True) is None
    keys = tmp_path / "keys.txt"
    keys.write_text("# team keys\n" + "f" * 20 + "\n")
    monkeypatch.setenv("TUNEFORGE_API_KEYS", "e" * 20)
    assert server_keys(keys, insecure_no_auth=False) == ["f" * 20, "e" * 20]
    assert server_keys(keys, insecure_no_auth=True) is None  # explicit: keys are ignored


def test_metrics_labels_stay_bounded_whatever_paths_clients_send(tmp_path):
    """The access log runs before auth: invented model names and paths must not become new
    metric series (anyone could grow the server's memory and /metrics without bound)."""
    app = fake_app(tmp_path, FakeModel(), BatchSettings(max_wait_ms=1), Limits(rate_per_second=0))

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            for i in range(30):
                await client.post(f"/v1/models/made-up-{i}/predict", json={"texts": ["x"]})
                await client.get(f"/v2/models/fake/versions/v{i}/junk-{i}")
                await client.get(f"/no/such/path/{i}")
            ok = await client.post(
                "/v1/models/fake/predict", json={"texts": ["hello"]}, headers=AUTH
            )
            assert ok.status_code == 200
            return (await client.get("/metrics", headers=AUTH)).text

    text = asyncio.run(go())
    assert "made-up" not in text and "junk" not in text and "/no/such" not in text
    assert 'model="fake",route="/v1/models/{name}/predict"' in text
    assert 'model="unknown",route="/v1/models/{name}/predict"' in text
    assert 'route="other"' in text
