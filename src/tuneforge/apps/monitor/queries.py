"""Read-side queries behind the JSON API and the dashboard (plain dicts, JSON-ready)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from tuneforge.apps.monitor import trends as tr
from tuneforge.apps.monitor.settings import window_seconds
from tuneforge.apps.monitor.store import Alert, Item, ItemEntity


@dataclass
class Span:
    """The last `points` windows of `width` seconds up to the newest item (data time, so a
    replay with synthetic timestamps shows its own "now"), or fewer when the data is younger
    (a new monitor's charts are not mostly empty)."""

    width: int
    start: int
    end: int

    @classmethod
    def of(cls, monitor, window: str | None, points: int) -> Span:
        width = window_seconds(window) if window else monitor.settings.window_seconds
        with monitor.engine.connect() as conn:
            oldest, newest = tr.time_range(conn)
        if newest is None:
            import time

            oldest = newest = int(time.time())
        end = tr.window_start(newest, width) + width
        start = max(end - max(1, points) * width, tr.window_start(oldest, width))
        return cls(width, start, end)


def trends(engine, span: Span, scope: str) -> dict:
    with engine.connect() as conn:
        stats = tr.series(conn, span.width, span.start, span.end, scope)
    return {
        "scope": scope,
        "window_seconds": span.width,
        "windows": [s.to_dict() for s in stats],
    }


def scopes(engine, span: Span, limit: int = 50) -> list[dict]:
    with engine.connect() as conn:
        return tr.scope_table(conn, span.start, span.end, limit)


def alerts(engine, limit: int) -> list[dict]:
    query = (
        select(Alert.__table__).order_by(Alert.window_start.desc(), Alert.id.desc()).limit(limit)
    )
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def items(engine, scope: str, limit: int) -> list[dict]:
    query = select(Item.__table__).order_by(Item.ts.desc(), Item.id).limit(limit)
    kind, _, name = scope.partition(":")
    if kind == "topic":
        query = query.where(Item.topic == name)
    elif kind == "entity":
        query = query.join(ItemEntity, ItemEntity.item_id == Item.id).where(
            ItemEntity.entity == name
        )
    with engine.connect() as conn:
        rows = [dict(row._mapping) for row in conn.execute(query)]
        entity_rows = conn.execute(
            select(ItemEntity.item_id, ItemEntity.entity).where(
                ItemEntity.item_id.in_([r["id"] for r in rows])
            )
        ).all()
    for row in rows:
        row["entities"] = [e for i, e in entity_rows if i == row["id"]]
        row["score"] = round(row["score"], 4)
    return rows
