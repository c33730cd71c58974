r"""Surge alerts: an exact one-sided test of a rise in the negative share against a rolling
baseline, scanned over the newest 1, 2 and 4 windows, with minimum volume, minimum rise and
a cooldown.

For one scope (all items, a topic or an entity) and a just-completed window w, the tested
span S is w alone, then w with the window before it, then the last four windows (a sharp
surge is caught in one window; a moderate one, or one straddling a window boundary, gets
more evidence). Let x₁ of n₁ items in S be negative, and x₀ of
n₀ in the B windows before S (the baseline). Under H₀ "S has the baseline's negative rate",
conditioning on the total x₀ + x₁ makes x₁ hypergeometric, and

    p = P(X ≥ x₁),  X ~ Hypergeometric(N = n₀ + n₁, K = x₀ + x₁, draws = n₁)

is Fisher's exact one-sided p-value: exact for any counts (no normal approximation, which
is anti-conservative for small windows), and it accounts for the baseline's own sampling
noise. An alert fires when, for S = one or two windows:
  * p ≤ alpha (default 3e-5; the three spans give at most 3·alpha false alarms per window;
    measured on steady seeded streams: 0 in 200,000 windows, see the unit tests),
  * n₁ ≥ min_volume and n₀ ≥ min_baseline,
  * x₁/n₁ - x₀/n₀ ≥ min_lift (a significant but tiny rise is not news),
  * no alert for the scope in the previous `cooldown_windows` windows (one surge, one alert).
The reported z = (p̂₁ - p̂₀) / sqrt(p̂(1-p̂)(1/n₁ + 1/n₀)) with the pooled p̂ is the familiar
two-proportion statistic, shown for reading only. The baseline rolls (the B windows before
S), so slow drifts are absorbed and only rises sudden relative to B windows are flagged.
Windows are tested once complete (the newest item's timestamp has moved past them), so the
delay is at least the rest of the window in which the surge starts.
Sinks: the alerts table (one row per scope and window: re-running changes nothing), the
`tuneforge.monitor` log (personal data masked) and an optional webhook (webhook.py).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from sqlalchemy import func, select

from tuneforge.apps.monitor.settings import DetectorSettings
from tuneforge.apps.monitor.store import Alert, insert_ignore
from tuneforge.apps.monitor.trends import series_by, window_start

log = logging.getLogger("tuneforge.monitor")
SPANS = (1, 2, 4)  # windows tested together: the newest alone, with 1 and 3 before it


@dataclass
class SurgeTest:
    n: int
    negatives: int
    baseline_n: int
    baseline_negatives: int
    z: float
    p_value: float | None  # None: not tested (too few items, or too small a rise)
    alert: bool

    @property
    def share(self) -> float:
        return self.negatives / self.n if self.n else 0.0

    @property
    def baseline_share(self) -> float:
        return self.baseline_negatives / self.baseline_n if self.baseline_n else 0.0


def hypergeom_sf(x: int, total: int, successes: int, draws: int) -> float:
    """P(X ≥ x) for X ~ Hypergeometric(total, successes, draws), summed in log space."""

    def log_comb(n: int, k: int) -> float:
        return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)

    low, high = max(x, draws - (total - successes), 0), min(draws, successes)
    if low > high:
        return 0.0
    denominator = log_comb(total, draws)
    terms = [
        log_comb(successes, k) + log_comb(total - successes, draws - k) - denominator
        for k in range(low, high + 1)
    ]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def surge_test(n: int, neg: int, base_n: int, base_neg: int, cfg: DetectorSettings) -> SurgeTest:
    """Fisher's one-sided exact test of (n, neg) against its baseline (base_n, base_neg).
    The exact p-value is only computed when the cheap conditions (volumes, lift) hold."""
    z, p_value = 0.0, None
    if n and base_n:
        p1, p0 = neg / n, base_neg / base_n
        pooled = (neg + base_neg) / (n + base_n)
        var = pooled * (1 - pooled) * (1 / n + 1 / base_n)
        z = (p1 - p0) / math.sqrt(var) if var > 0 else 0.0
        if n >= cfg.min_volume and base_n >= cfg.min_baseline and p1 - p0 >= cfg.min_lift:
            p_value = hypergeom_sf(neg, n + base_n, neg + base_neg, n)
    alert = p_value is not None and p_value <= cfg.alpha
    return SurgeTest(n, neg, base_n, base_neg, z, p_value, alert)


def detect(
    counts: list[tuple[int, int]],
    cfg: DetectorSettings,
    first: int = 0,
    last_alert: int | None = None,
) -> list[tuple[int, SurgeTest]]:
    """(index, test) of the windows i >= first of `counts` [(n, negatives), ...] that raise an
    alert, each tested against the `baseline_windows` before it; `last_alert` is the index of
    an earlier alert whose cooldown still applies."""
    found: list[tuple[int, SurgeTest]] = []
    for i in range(max(first, 1), len(counts)):
        if last_alert is not None and i - last_alert <= cfg.cooldown_windows:
            continue
        for span in SPANS:
            test = _span_test(counts, i, span, cfg)
            if test is not None and test.alert:
                found.append((i, test))
                last_alert = i
                break
    return found


def _span_test(counts, i: int, span: int, cfg: DetectorSettings) -> SurgeTest | None:
    """The test of windows i-span+1..i against the baseline windows before them."""
    first = i - span + 1
    if first < 1:
        return None
    tested, base = counts[first : i + 1], counts[max(0, first - cfg.baseline_windows) : first]
    return surge_test(
        sum(c[0] for c in tested),
        sum(c[1] for c in tested),
        sum(b[0] for b in base),
        sum(b[1] for b in base),
        cfg,
    )


class SurgeDetector:
    """Tests each scope's windows as they complete; stores, logs and posts new alerts."""

    def __init__(self, engine, width: int, cfg: DetectorSettings, webhook=None) -> None:
        self.engine, self.width, self.cfg, self.webhook = engine, width, cfg, webhook
        self.checked_until: int | None = None  # windows before this were tested already
        self.found: list[dict] = []  # alerts this detector raised, oldest first

    def check(self, now_ts: int) -> list[dict]:
        """Test the windows completed since the last check (the newest item is at `now_ts`)."""
        end = window_start(now_ts, self.width)  # the window holding now_ts is still open
        first = end - self.width if self.checked_until is None else self.checked_until
        if first >= end:
            return []
        w, history = self.width, self.cfg.baseline_windows + self.cfg.cooldown_windows
        start = first - history * w
        new: list[dict] = []
        with self.engine.begin() as conn:
            last_alert = dict(
                conn.execute(
                    select(Alert.scope, func.max(Alert.window_start))
                    .where(Alert.window_start >= start, Alert.window_start < first)
                    .group_by(Alert.scope)
                ).all()
            )
            for by in (None, "topic", "entity"):
                for scope, stats in series_by(conn, w, start, end, by).items():
                    new += self._scope(conn, scope, stats, first, last_alert.get(scope))
        self.checked_until = end
        self.found += new
        for alert in new:
            self._publish(alert)
        return new

    def _scope(self, conn, scope: str, stats, first: int, last_alert: int | None) -> list[dict]:
        origin = stats[0].start
        found = []
        for i, test in detect(
            [(s.n, s.negatives) for s in stats],
            self.cfg,
            first=(first - origin) // self.width,
            last_alert=None if last_alert is None else (last_alert - origin) // self.width,
        ):
            row = self._row(scope, stats[i].start, test)
            if conn.execute(insert_ignore(self.engine, Alert.__table__).values(**row)).rowcount:
                found.append(row)
        return found

    def _row(self, scope: str, start: int, test: SurgeTest) -> dict:
        return {
            "scope": scope,
            "window_start": start,
            "window_seconds": self.width,
            "n": test.n,
            "negatives": test.negatives,
            "share": round(test.share, 4),
            "baseline_share": round(test.baseline_share, 4),
            "z": round(test.z, 3),
            "p_value": test.p_value,
            "created_at": int(time.time()),
        }

    def _publish(self, alert: dict) -> None:
        log.warning(
            "negative surge in %s: %.0f%% of %d items vs %.0f%% baseline (p=%.1e)",
            alert["scope"],
            100 * alert["share"],
            alert["n"],
            100 * alert["baseline_share"],
            alert["p_value"],
            extra={"json_fields": {"alert": alert}},
        )
        if self.webhook is not None:
            self.webhook.post({"event": "negative_surge", **alert})
