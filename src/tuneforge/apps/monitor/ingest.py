"""Ingest: items from CSV/JSONL files, a watched directory or the HTTP API, classified in
batches and stored idempotently.

An item is {id?, timestamp?, source?, text, url?}. Without an id, the id is a hash of source
and text, so the same post ingested twice is one item. Each batch is one transaction: items
already stored are skipped before classification (a restart re-reads a file cheaply), and the
INSERT skips ids that exist (ON CONFLICT DO NOTHING) in case another process stored them
meanwhile. Killing the process therefore loses at most the batch in flight, which the next run
stores; nothing is ever stored twice. Timestamps: ISO 8601 or epoch seconds; absent: now.
"""

from __future__ import annotations

import csv
import hashlib
import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path

from sqlalchemy import delete, insert, select

from tuneforge.apps.monitor.store import IngestedFile, Item, ItemEntity, insert_ignore
from tuneforge.apps.monitor.trends import latest_ts
from tuneforge.errors import DataError

TIME_KEYS = ("timestamp", "ts", "time", "created_at")
MAX_TEXT_CHARS = 20_000
SUFFIXES = (".csv", ".jsonl")


@dataclass
class RawItem:
    id: str
    ts: int
    source: str
    text: str
    url: str = ""


@dataclass
class IngestResult:
    received: int = 0
    inserted: int = 0

    @property
    def duplicates(self) -> int:
        return self.received - self.inserted

    def add(self, other: IngestResult) -> None:
        self.received += other.received
        self.inserted += other.inserted

    def to_dict(self) -> dict:
        return {"received": self.received, "inserted": self.inserted, "duplicates": self.duplicates}


def parse_timestamp(value, where: str) -> int:
    if value is None or value == "":
        return int(time.time())
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    text = str(value).strip()
    try:
        return int(float(text))
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise DataError(
            f"{where}: timestamp {text[:40]!r} is neither ISO 8601 (2024-05-01T13:45:00Z) nor "
            "epoch seconds."
        ) from None
    return int((parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp())


def to_item(record: dict, where: str, default_source: str = "") -> RawItem:
    """A validated RawItem from a dict (a CSV row, a JSON line, an API item)."""
    text = record.get("text")
    if not isinstance(text, str) or not text.strip():
        raise DataError(f"{where}: column 'text' is missing or empty; every item needs a text.")
    if len(text) > MAX_TEXT_CHARS:
        raise DataError(
            f"{where}: text has {len(text)} characters, the limit is {MAX_TEXT_CHARS}; "
            "split long documents into posts or paragraphs."
        )
    source = str(record.get("source") or default_source)[:200]
    url = str(record.get("url") or "")
    if url and not url.startswith(("http://", "https://")):
        raise DataError(f"{where}: url {url[:60]!r} must start with http:// or https://.")
    stamp = next((record[k] for k in TIME_KEYS if record.get(k) not in (None, "")), None)
    given = record.get("id")
    item_id = str(given).strip() if given not in (None, "") else content_id(source, text)
    if len(item_id) > 128:
        raise DataError(f"{where}: id is {len(item_id)} characters long, the limit is 128.")
    return RawItem(item_id, parse_timestamp(stamp, where), source, text, url[:2000])


def content_id(source: str, text: str) -> str:
    return "h:" + hashlib.sha256(f"{source}\x1f{text}".encode()).hexdigest()[:40]


def read_items(path: Path) -> Iterator[RawItem]:
    """Items of a .csv (header with a `text` column) or .jsonl file, row by row."""
    path = Path(path)
    if path.suffix not in SUFFIXES:
        raise DataError(f"{path}: unsupported file type; use .csv or .jsonl.")
    if path.suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if "text" not in (reader.fieldnames or []):
                raise DataError(f"{path}: no 'text' column in the header {reader.fieldnames}.")
            for row_number, row in enumerate(reader, 2):
                yield to_item(row, f"{path}, row {row_number}", path.stem)
        return
    with open(path, encoding="utf-8") as fh:
        for line_number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}, line {line_number}: invalid JSON ({exc.msg}).") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}, line {line_number}: expected a JSON object per line.")
            yield to_item(record, f"{path}, line {line_number}", path.stem)


class Ingestor:
    """Classify and store items in batches; run the surge detector after each batch."""

    def __init__(self, engine, classifier, detector=None, batch_size: int = 64, mask=None):
        self.engine, self.classifier, self.detector = engine, classifier, detector
        self.batch_size, self.mask = batch_size, mask  # mask: e.g. serving.pii.mask_pii

    def ingest(
        self, items: Iterable[RawItem], on_batch: Callable[[IngestResult], None] | None = None
    ) -> IngestResult:
        total, iterator = IngestResult(), iter(items)
        while batch := list(islice(iterator, self.batch_size)):
            result = self._store(batch)
            total.add(result)
            if on_batch is not None:
                on_batch(result)
        return total

    def _store(self, batch: list[RawItem]) -> IngestResult:
        unique: dict[str, RawItem] = {}
        for item in batch:
            unique.setdefault(item.id, item)  # the first of repeated ids wins
        with self.engine.connect() as conn:
            stored = set(conn.scalars(select(Item.id).where(Item.id.in_(list(unique)))))
        todo = [item for item in unique.values() if item.id not in stored]
        if self.mask is not None:
            for item in todo:
                item.text = self.mask(item.text)
        results = self.classifier.classify([item.text for item in todo])
        rows = [_row(item, result) for item, result in zip(todo, results, strict=True)]
        inserted: list[str] = []
        with self.engine.begin() as conn:  # items and their entities commit together
            if rows:
                query = insert_ignore(self.engine, Item.__table__).returning(Item.id)
                inserted = list(conn.scalars(query, rows))
            entities = _entity_rows(todo, results, set(inserted))
            if entities:
                conn.execute(insert(ItemEntity.__table__), entities)
            newest = latest_ts(conn)
        if self.detector is not None and inserted and newest is not None:
            self.detector.check(newest)
        return IngestResult(len(batch), len(inserted))

    def ingest_file(self, path: Path, on_batch=None) -> IngestResult:
        return self.ingest(read_items(path), on_batch)


def _row(item: RawItem, result) -> dict:
    return {
        "id": item.id,
        "ts": item.ts,
        "source": item.source,
        "text": item.text,
        "url": item.url,
        "label": result.label,
        "polarity": result.polarity,
        "p_neg": result.p_neg,
        "p_pos": result.p_pos,
        "score": result.score,
        "topic": result.topic,
        "ingested_at": int(time.time()),
    }


def _entity_rows(items: list[RawItem], results, inserted: set[str]) -> list[dict]:
    return [
        {"item_id": item.id, "entity": entity[:128]}
        for item, result in zip(items, results, strict=True)
        if item.id in inserted
        for entity in result.entities
    ]


def watch_directory(
    directory: Path,
    ingestor: Ingestor,
    interval: float = 2.0,
    settle: float = 1.0,
    rounds: int | None = None,
    on_file: Callable[[Path, IngestResult], None] | None = None,
) -> None:
    """Ingest every .csv/.jsonl file that appears or changes in `directory`, polling every
    `interval` seconds (`rounds`: stop after that many polls; None: forever). A file is read
    once it has not changed for `settle` seconds; files done are recorded in the database, so
    a restart does not re-read them (and re-reading would change nothing anyway)."""
    directory = Path(directory)
    done_round = 0
    while rounds is None or done_round < rounds:
        for path in sorted(p for p in directory.iterdir() if p.suffix in SUFFIXES):
            stat = path.stat()
            if time.time() - stat.st_mtime < settle or _seen(ingestor.engine, path, stat):
                continue
            result = ingestor.ingest_file(path)
            _record(ingestor.engine, path, stat, result.received)
            if on_file is not None:
                on_file(path, result)
        done_round += 1
        if rounds is None or done_round < rounds:
            time.sleep(interval)


def _seen(engine, path: Path, stat) -> bool:
    with engine.connect() as conn:
        row = conn.execute(
            select(IngestedFile.size, IngestedFile.mtime_ns).where(
                IngestedFile.path == str(path.resolve())
            )
        ).first()
    return row is not None and tuple(row) == (stat.st_size, stat.st_mtime_ns)


def _record(engine, path: Path, stat, items: int) -> None:
    key = str(path.resolve())
    with engine.begin() as conn:
        conn.execute(delete(IngestedFile).where(IngestedFile.path == key))
        conn.execute(
            insert(IngestedFile).values(
                path=key, size=stat.st_size, mtime_ns=stat.st_mtime_ns, items=items
            )
        )
