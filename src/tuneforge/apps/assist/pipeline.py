"""The assistant: mask personal data → intent → approved answer, else article, else a person.

Each step hands over only when the previous one is not confident enough by a threshold that
was calibrated on validation data (`build.py`), and every reply says which path produced it
and with what score, so a support team can audit what the assistant said and why.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from tuneforge.apps.assist.calibration import Calibration
from tuneforge.apps.assist.knowledge import Answer, AssistConfig
from tuneforge.apps.assist.oos import EMBEDDING_SCORES, in_scope_score
from tuneforge.apps.assist.retrieval import Chunk, Retriever
from tuneforge.apps.assist.slots import extract_slots, fill
from tuneforge.apps.assist.store import Store
from tuneforge.apps.assist.writer import grounded_share, question_coverage
from tuneforge.errors import ConfigError
from tuneforge.serving.pii import mask_pii

PATHS = ("answer", "retrieval", "handoff")
HANDOFF_TEXT = (
    "I'm not sure I can answer that correctly, so I've passed your question to a colleague"
    "{ticket}. They will get back to you here as soon as possible."
)
log = logging.getLogger(__name__)


class IntentModel(Protocol):
    """What the assistant needs from a classifier (a `TunedModel` has all of it)."""

    labels: list[str]

    def forward(self, texts: list[str]) -> dict[str, np.ndarray]: ...  # logits, embedding
    def embed(self, texts: list[str]) -> np.ndarray: ...


class AnswerWriter(Protocol):
    """What the retrieval path needs to phrase a passage (`writer.Writer` has it)."""

    def write(self, question: str, source: str, passage: str) -> str: ...


@dataclass
class Reply:
    reply: str
    path: str  # "answer", "retrieval" or "handoff"
    confidence: float  # the score the path was chosen on (see score_kind and thresholds)
    score_kind: str
    intent: str
    intent_score: float
    retrieval_score: float | None = None
    sources: list[dict] = field(default_factory=list)
    slots: dict[str, str] = field(default_factory=dict)
    ticket_id: int | None = None
    written: bool = False  # retrieval: the writer model phrased the passage (else quoted)

    def to_dict(self) -> dict:
        return asdict(self)


class Assistant:
    def __init__(
        self,
        model: IntentModel,
        answers: dict[str, Answer],
        calibration: Calibration,
        *,
        score_kind: str = "msp",
        retriever: Retriever | None = None,
        store: Store | None = None,
        top_k: int = 3,
        writer: AnswerWriter | None = None,
        writer_min_grounding: float = 0.8,
        writer_min_coverage: float = 1.0,
    ) -> None:
        self.model, self.answers, self.calibration = model, answers, calibration
        self.score_kind, self.retriever, self.top_k = score_kind, retriever, top_k
        self.store, self.writer = store, writer
        self.writer_min_grounding, self.writer_min_coverage = (
            writer_min_grounding,
            writer_min_coverage,
        )
        self._lock = threading.Lock()  # one message at a time through the model: bounded CPU

    @classmethod
    def load(cls, directory: Path, store: Store | None = None) -> Assistant:
        """The trained assistant in `directory` (see `tuneforge assist train`)."""
        from tuneforge.apps.assist.build import load_parts

        cfg, model, answers, articles, calibration = load_parts(Path(directory))
        if cfg.oos_score not in calibration.answer:
            raise ConfigError(
                f"oos_score '{cfg.oos_score}' in {directory}/assist.yaml was not calibrated: the "
                f"assistant was trained by an older tuneforge. Run `tuneforge assist train "
                f"{directory}` again."
            )
        if calibration.answer[cfg.oos_score] is None:
            raise ConfigError(
                f"oos_score '{cfg.oos_score}' in {directory}/assist.yaml did not reach the target "
                "accuracy on validation data; pick another score or retrain with a lower "
                "target_accuracy."
            )
        retriever = Retriever(articles, model.embed) if articles else None
        writer = None
        if cfg.writer:
            from tuneforge.apps.assist.writer import Writer

            writer = Writer.load(Path(directory), cfg)
        return cls(
            model,
            answers,
            calibration,
            score_kind=cfg.oos_score,
            retriever=retriever,
            store=store,
            top_k=cfg.top_k,
            writer=writer,
            writer_min_grounding=cfg.writer_min_grounding,
            writer_min_coverage=cfg.writer_min_coverage,
        )

    def intent_scores(self, texts: list[str]) -> tuple[list[str], np.ndarray]:
        """(predicted intent, in-scope score) per text, with the configured score."""
        found = self.model.forward(texts)  # one encoder pass gives the head and the score both
        logits = found["logits"]
        embeddings = found.get("embedding") if self.score_kind in EMBEDDING_SCORES else None
        scores = in_scope_score(self.score_kind, logits, embeddings, self.calibration.reference)
        return [self.model.labels[i] for i in logits.argmax(axis=1)], scores

    def decide(self, message: str) -> Reply:
        """The reply to `message`, without logging it or opening a ticket (e.g. to evaluate)."""
        masked = mask_pii(message)  # nothing downstream ever sees the raw message
        with self._lock:
            return self._decide(masked)

    def respond(self, session_id: str, message: str) -> Reply:
        """The reply to `message`, logged in the store with a ticket when handed off."""
        masked = mask_pii(message)
        reply = self.decide(masked)  # masking twice changes nothing
        if self.store is not None:
            if reply.path == "handoff":
                reason = (
                    f"no confident intent ({reply.intent} {self.score_kind}="
                    f"{reply.intent_score:.3f}) and no matching article"
                )
                reply.ticket_id = self.store.open_ticket(session_id, reason)
                reply.reply = HANDOFF_TEXT.format(ticket=f" (ticket #{reply.ticket_id})")
            self.store.log_exchange(
                session_id, masked, reply.reply, reply.path, reply.confidence, reply.intent
            )
        return reply

    def _decide(self, masked: str) -> Reply:
        thresholds = self.calibration
        [intent], [score] = self.intent_scores([masked])
        base = dict(score_kind=self.score_kind, intent=intent, intent_score=float(score))
        if score >= thresholds.answer[self.score_kind]:
            text, used = fill(self.answers[intent], extract_slots(masked))
            return Reply(text, "answer", float(score), slots=used, **base)
        hits = self.retriever.search(masked, self.top_k) if self.retriever else []
        best = hits[0].similarity if hits else None
        if best is not None and best >= thresholds.retrieval:
            top = hits[0].chunk
            where = citation(top)
            written = self._write(masked, top, where)
            return Reply(
                f"{written or top.text} (from the help article “{where}”)",
                "retrieval",
                best,
                retrieval_score=best,
                sources=[h.to_dict() for h in hits],
                written=bool(written),
                **base,
            )
        return Reply(
            HANDOFF_TEXT.format(ticket=""),
            "handoff",
            float(score),
            retrieval_score=best,
            sources=[h.to_dict() for h in hits],
            **base,
        )

    def _write(self, masked: str, chunk: Chunk, where: str) -> str:
        """The writer's answer from `chunk`, or '' (no writer, it failed, said nothing, said what
        the passage does not, or left out the question's words the passage has): the reply then
        quotes the passage. The citation is the chunk's, whatever the model wrote."""
        if self.writer is None:
            return ""
        try:
            text = self.writer.write(masked, where, chunk.text).strip()
        except Exception as exc:  # a broken writer must not take the assistant down
            # the type only: an exception's message may quote the customer's text
            log.warning("writer failed (%s); the reply quotes the passage", type(exc).__name__)
            return ""
        share = grounded_share(text, chunk.text)
        if share < self.writer_min_grounding:
            log.info("writer's answer %.0f%% from the passage; the reply quotes it", 100 * share)
            return ""
        kept = question_coverage(masked, text, chunk.text)
        if kept < self.writer_min_coverage:
            log.info("writer's answer keeps %.0f%% of the question's words; quoted", 100 * kept)
            return ""
        return text


def citation(chunk: Chunk) -> str:
    """How a reply names its source: the article's title › the section."""
    return f"{chunk.title} › {chunk.section}" if chunk.section else chunk.title


def open_store(directory: Path, cfg: AssistConfig, url: str | None = None) -> Store:
    """The configured database; a relative SQLite path lives in the assistant directory."""
    url = url or cfg.database
    prefix = "sqlite:///"
    file = url[len(prefix) :]
    if url.startswith(prefix) and file != ":memory:" and not Path(file).is_absolute():
        url = prefix + str(Path(directory).resolve() / file)
    return Store(url)
