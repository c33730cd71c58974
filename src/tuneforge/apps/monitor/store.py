"""Storage: SQLAlchemy 2 models (the engine, SQLite file or PostgreSQL, is the apps' chassis).

Timestamps are integer epoch seconds (UTC), so a window is `ts - ts % width` in plain SQL on
every database. An item's primary key is its id (given, or a content hash): inserting an item
twice is a no-op (`ON CONFLICT DO NOTHING`), which makes every ingest path idempotent.
The schema is created and upgraded by Alembic (migrations/versions/, run by the chassis),
never by `create_all`.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Float,
    ForeignKey,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    ts: Mapped[int] = mapped_column(BigInteger, index=True)
    source: Mapped[str] = mapped_column(String(200), default="")
    text: Mapped[str] = mapped_column(Text)
    url: Mapped[str] = mapped_column(String(2000), default="")
    label: Mapped[str] = mapped_column(String(64))
    polarity: Mapped[int] = mapped_column(SmallInteger)  # -1 negative, 0 other, +1 positive
    p_neg: Mapped[float] = mapped_column(Float)
    p_pos: Mapped[float] = mapped_column(Float)
    score: Mapped[float] = mapped_column(Float)  # p_pos - p_neg, in [-1, 1]
    topic: Mapped[str] = mapped_column(String(64), default="", index=True)
    ingested_at: Mapped[int] = mapped_column(BigInteger)


class ItemEntity(Base):
    __tablename__ = "item_entities"

    item_id: Mapped[str] = mapped_column(
        ForeignKey("items.id", ondelete="CASCADE"), primary_key=True
    )
    entity: Mapped[str] = mapped_column(String(128), primary_key=True, index=True)


class Alert(Base):
    __tablename__ = "alerts"
    __table_args__ = (UniqueConstraint("scope", "window_start", name="uq_alert_scope_window"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    scope: Mapped[str] = mapped_column(String(200))  # "all", "topic:earnings", "entity:$AAPL"
    window_start: Mapped[int] = mapped_column(BigInteger, index=True)
    window_seconds: Mapped[int] = mapped_column(Integer)
    n: Mapped[int] = mapped_column(Integer)
    negatives: Mapped[int] = mapped_column(Integer)
    share: Mapped[float] = mapped_column(Float)
    baseline_share: Mapped[float] = mapped_column(Float)
    z: Mapped[float] = mapped_column(Float)
    p_value: Mapped[float] = mapped_column(Float)
    created_at: Mapped[int] = mapped_column(BigInteger)


class IngestedFile(Base):
    """Files of a watched directory already ingested completely (name, size, mtime)."""

    __tablename__ = "ingested_files"

    path: Mapped[str] = mapped_column(String(1000), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    items: Mapped[int] = mapped_column(Integer)


def insert_ignore(engine: Engine, table):
    """An INSERT that skips rows whose primary key exists (SQLite and PostgreSQL)."""
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table).on_conflict_do_nothing()
