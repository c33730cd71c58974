"""The conversation log and hand-off tickets (SQLAlchemy 2; SQLite by default, PostgreSQL by URL).

Only masked text is ever written: `Store` masks every text itself, whatever its caller did,
so a raw card number or e-mail address cannot reach the database through a new code path.
The schema is made and kept up to date by the Alembic migrations in `migrations/versions/`
(run by the apps' chassis): a change to the models below needs a new revision there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from sqlalchemy import (
    DateTime,
    Float,
    ForeignKey,
    Index,
    String,
    Text,
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from tuneforge.apps.assist import APP
from tuneforge.apps.chassis.migrations import open_database
from tuneforge.serving.pii import mask_pii


def _now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Conversation(Base):
    __tablename__ = "assist_conversations"
    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[str] = mapped_column(String(128), unique=True, index=True)
    started: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    messages: Mapped[list[Message]] = relationship(order_by="Message.id")


class Message(Base):
    __tablename__ = "assist_messages"
    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("assist_conversations.id"), index=True)
    role: Mapped[str] = mapped_column(String(16))  # "customer" or "assistant"
    text: Mapped[str] = mapped_column(Text)  # masked
    path: Mapped[str | None] = mapped_column(String(16))
    confidence: Mapped[float | None] = mapped_column(Float)
    intent: Mapped[str | None] = mapped_column(String(128))
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class Ticket(Base):
    __tablename__ = "assist_tickets"
    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("assist_conversations.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="open")
    reason: Mapped[str] = mapped_column(Text)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    # The transcript is the conversation's (masked) messages, including any sent after hand-off.
    conversation: Mapped[Conversation] = relationship()
    # One open ticket per conversation, even when two of its messages are handed off at once.
    __table_args__ = (
        Index(
            "assist_one_open_ticket",
            "conversation_id",
            unique=True,
            sqlite_where=status == "open",
            postgresql_where=status == "open",
        ),
    )


T = TypeVar("T")


@dataclass(frozen=True)
class TicketView:
    id: int
    session_id: str
    status: str
    reason: str
    transcript: list[dict]


class Store:
    def __init__(self, url: str = "sqlite:///assist.db") -> None:
        # A new database, or one an older tuneforge wrote: migrated in place (the chassis).
        self.engine = open_database(APP, url)

    def _write(self, work: Callable[[Session], T]) -> T:
        """`work` in a transaction, tried again once if a concurrent request of the same session
        created the same conversation or open ticket first (a unique constraint fails): the
        second try finds that row instead of adding its own."""
        try:
            return self._transaction(work)
        except IntegrityError:
            return self._transaction(work)

    def _transaction(self, work: Callable[[Session], T]) -> T:
        with Session(self.engine) as db, db.begin():
            return work(db)

    def _conversation(self, db: Session, session_id: str) -> Conversation:
        conv = db.scalar(select(Conversation).where(Conversation.session_id == session_id))
        if conv is None:
            conv = Conversation(session_id=session_id)
            db.add(conv)
            db.flush()
        return conv

    def log_exchange(
        self,
        session_id: str,
        customer_text: str,
        reply: str,
        path: str,
        confidence: float,
        intent: str | None,
    ) -> None:
        def work(db: Session) -> None:
            conv = self._conversation(db, session_id)
            db.add(Message(conversation_id=conv.id, role="customer", text=mask_pii(customer_text)))
            db.add(
                Message(
                    conversation_id=conv.id,
                    role="assistant",
                    text=mask_pii(reply),
                    path=path,
                    confidence=confidence,
                    intent=intent,
                )
            )

        self._write(work)

    def open_ticket(self, session_id: str, reason: str) -> int:
        """The session's open ticket, else a new one: one ticket per conversation at a time."""

        def work(db: Session) -> int:
            conv = self._conversation(db, session_id)
            ticket = db.scalar(
                select(Ticket).where(Ticket.conversation_id == conv.id, Ticket.status == "open")
            )
            if ticket is None:
                ticket = Ticket(conversation_id=conv.id, reason=mask_pii(reason))
                db.add(ticket)
                db.flush()
            return ticket.id

        return self._write(work)

    def tickets(self, status: str | None = "open") -> list[TicketView]:
        with Session(self.engine) as db:
            query = select(Ticket)
            if status:
                query = query.where(Ticket.status == status)
            return [
                TicketView(
                    t.id,
                    t.conversation.session_id,
                    t.status,
                    t.reason,
                    [{"role": m.role, "text": m.text} for m in t.conversation.messages],
                )
                for t in db.scalars(query.order_by(Ticket.id))
            ]

    def messages(self, session_id: str) -> list[dict]:
        with Session(self.engine) as db:
            conv = db.scalar(select(Conversation).where(Conversation.session_id == session_id))
            return [
                {"role": m.role, "text": m.text, "path": m.path, "confidence": m.confidence}
                for m in (conv.messages if conv else [])
            ]

    def close(self) -> None:
        self.engine.dispose()
