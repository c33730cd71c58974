"""One batched pass over a list of texts: sentiment, topic and entities of each.

Models are duck-typed (anything with `.labels` and `.predict_proba(texts)`), so a TunedModel,
an exported ONNX artifact loaded by TunedModel, or a test double all work. When the sentiment
and topic models share their encoder (the demo's: both on frozen MiniLM), one encoder pass
feeds both heads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tuneforge.apps.monitor.entities import EntityMatcher, load_watchlist
from tuneforge.apps.monitor.sentiment import polarity_columns


@dataclass
class Classified:
    label: str
    p_neg: float
    p_pos: float
    topic: str
    entities: list[str] = field(default_factory=list)

    polarity: int = 0  # -1: the negative label won, +1: the positive one, 0: another

    @property
    def score(self) -> float:
        return self.p_pos - self.p_neg


class Classifier:
    def __init__(
        self,
        sentiment,
        entities: EntityMatcher,
        topics=None,
        negative_labels: list[str] = ("bearish", "negative"),
        positive_labels: list[str] = ("bullish", "positive"),
        batch_size: int = 64,
        share_encoder: bool = True,
    ) -> None:
        self.sentiment, self.topics, self.entities = sentiment, topics, entities
        self.neg, self.pos = polarity_columns(
            list(sentiment.labels), list(negative_labels), list(positive_labels)
        )
        self.batch_size = batch_size
        self.share_encoder = share_encoder

    @property
    def one_pass(self) -> bool:
        """Do the sentiment and topic heads run on one encoder pass?"""
        check = getattr(self.sentiment, "shares_encoder_with", None)
        if not self.share_encoder or self.topics is None or check is None:
            return False
        if getattr(self, "_one_pass_for", None) is not self.topics:  # checked once per pair
            self._one_pass, self._one_pass_for = bool(check(self.topics)), self.topics
        return self._one_pass

    def _probabilities(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
        if self.one_pass:
            found = self.sentiment.forward(texts, batch_size=self.batch_size)
            topic_logits = self.topics.head_logits(found["embedding"])
            return self.sentiment.probabilities(found["logits"]), self.topics.probabilities(
                topic_logits
            )
        probs = np.asarray(self.sentiment.predict_proba(texts, batch_size=self.batch_size))
        if self.topics is None:
            return probs, None
        return probs, np.asarray(self.topics.predict_proba(texts, batch_size=self.batch_size))

    def classify(self, texts: list[str]) -> list[Classified]:
        if not texts:
            return []
        probs, topic_probs = self._probabilities(texts)
        winners = probs.argmax(1)
        labels = [self.sentiment.labels[i] for i in winners]
        topics = [""] * len(texts)
        if topic_probs is not None:
            topics = [self.topics.labels[i] for i in topic_probs.argmax(1)]
        return [
            Classified(
                label=labels[i],
                p_neg=float(probs[i, self.neg]),
                p_pos=float(probs[i, self.pos]),
                topic=topics[i],
                entities=self.entities.find(text),
                polarity=-1 if winners[i] == self.neg else int(winners[i] == self.pos),
            )
            for i, text in enumerate(texts)
        ]


def load_classifier(settings) -> Classifier:
    """The classifier a monitor home describes (models must exist: `monitor init`)."""
    from tuneforge.errors import ConfigError
    from tuneforge.tuned_model import TunedModel

    def model(path: str | None):
        if path is None:
            return None
        full = settings.path(path)
        if not Path(full).exists():
            raise ConfigError(f"Model {full} not found: run `tuneforge monitor init` first.")
        return TunedModel.load(full)

    return Classifier(
        model(settings.sentiment_model),
        load_watchlist(settings.path(settings.watchlist)),
        model(settings.topic_model),
        settings.negative_labels,
        settings.positive_labels,
        settings.batch_size,
    )
