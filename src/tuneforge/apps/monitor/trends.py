"""Trends: per window (minute, 5min, 15min, hour, day) and per scope, the volume, the negative
and positive shares and the mean score, computed by GROUP BY in the database.

A scope is "all", "topic:NAME" or "entity:KEY" (e.g. "entity:$AAPL"). Series are dense:
windows without items appear with n = 0, so charts and the detector see gaps as gaps.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import case, func, literal, select

from tuneforge.apps.monitor.store import Item, ItemEntity
from tuneforge.errors import ConfigError


@dataclass
class WindowStats:
    start: int
    n: int = 0
    negatives: int = 0
    positives: int = 0
    score_sum: float = 0.0

    @property
    def neg_share(self) -> float:
        return self.negatives / self.n if self.n else 0.0

    @property
    def pos_share(self) -> float:
        return self.positives / self.n if self.n else 0.0

    @property
    def mean_score(self) -> float:
        return self.score_sum / self.n if self.n else 0.0

    def to_dict(self) -> dict:
        return {
            "start": self.start,
            "n": self.n,
            "neg_share": round(self.neg_share, 4),
            "pos_share": round(self.pos_share, 4),
            "mean_score": round(self.mean_score, 4),
        }


def window_start(ts: int, width: int) -> int:
    return ts - ts % width


def _grouped(conn, width: int | None, start: int, end: int, by: str | None):
    """Rows (key, bucket, n, negatives, positives, score_sum) for start <= ts < end.

    `width` None: one bucket (labelled `start`) for the whole range."""
    bucket = (Item.ts - Item.ts % width if width else literal(start)).label("bucket")
    columns = [
        bucket,
        func.count().label("n"),
        func.sum(case((Item.polarity < 0, 1), else_=0)).label("neg"),
        func.sum(case((Item.polarity > 0, 1), else_=0)).label("pos"),
        func.sum(Item.score).label("score"),
    ]
    if by == "topic":
        query = select(Item.topic, *columns).where(Item.topic != "")
        keys = [Item.topic]
    elif by == "entity":
        query = select(ItemEntity.entity, *columns).join(ItemEntity, ItemEntity.item_id == Item.id)
        keys = [ItemEntity.entity]
    else:
        query, keys = select(*columns), []
    query = query.where(Item.ts >= start, Item.ts < end)
    query = query.group_by(*keys, bucket) if width else query.group_by(*keys)
    for row in conn.execute(query):
        key = row[0] if keys else "all"
        yield key, *row[-5:]


def _dense(rows: dict[int, WindowStats], width: int, start: int, end: int) -> list[WindowStats]:
    return [rows.get(t, WindowStats(t)) for t in range(start, end, width)]


def series_by(conn, width: int, start: int, end: int, by: str | None) -> dict[str, list]:
    """{scope: dense list of WindowStats} for every scope of kind `by` (None: just "all")."""
    start, end = window_start(start, width), window_start(end - 1, width) + width
    prefix = f"{by}:" if by else ""
    found: dict[str, dict[int, WindowStats]] = {}
    for key, bucket, n, neg, pos, score in _grouped(conn, width, start, end, by):
        found.setdefault(prefix + key if by else key, {})[int(bucket)] = WindowStats(
            int(bucket), int(n), int(neg or 0), int(pos or 0), float(score or 0.0)
        )
    return {scope: _dense(rows, width, start, end) for scope, rows in found.items()}


def series(conn, width: int, start: int, end: int, scope: str = "all") -> list[WindowStats]:
    """The dense series of one scope."""
    kind, _, name = scope.partition(":")
    if scope == "all":
        by = None
    elif kind in ("topic", "entity") and name:
        by = kind
    else:
        raise ConfigError(f"Unknown scope {scope!r}: use all, topic:NAME or entity:KEY.")
    found = series_by(conn, width, start, end, by)
    empty = _dense({}, width, window_start(start, width), window_start(end - 1, width) + width)
    return found.get(scope, empty)


def scope_table(conn, start: int, end: int, limit: int = 50) -> list[dict]:
    """Totals per topic and per entity over [start, end), busiest first."""
    rows = []
    for by in ("topic", "entity"):
        for key, _, n, neg, pos, score in _grouped(conn, None, start, end, by):
            total = WindowStats(start, int(n), int(neg or 0), int(pos or 0), float(score or 0))
            rows.append({"scope": f"{by}:{key}", **total.to_dict()})
    return sorted(rows, key=lambda r: -r["n"])[:limit]


def latest_ts(conn) -> int | None:
    return conn.execute(select(func.max(Item.ts))).scalar()


def time_range(conn) -> tuple[int | None, int | None]:
    """(oldest, newest) item timestamps; (None, None) when there are no items."""
    oldest, newest = conn.execute(select(func.min(Item.ts), func.max(Item.ts))).one()
    return oldest, newest
