"""A fake intent model and a tiny assistant directory for the assist unit tests (no real model)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np

KEYWORDS = {
    "card_arrival": ["card", "arrive", "arrived", "delivery"],
    "exchange_charge": ["exchange"],
}


def bag_of_words(texts: list[str], dim: int = 64) -> np.ndarray:
    """Hashed word counts: similar wording → similar vectors, deterministic across runs."""
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for row, text in enumerate(texts):
        for word in re.findall(r"[a-z]+", text.lower()):
            out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % dim] += 1.0
    return out + 1e-3


class FakeModel:
    """Logits = 3 per intent keyword in the message: no keyword → a flat, unsure softmax."""

    def __init__(self) -> None:
        self.labels = list(KEYWORDS)

    def logits(self, texts: list[str]) -> np.ndarray:
        rows = []
        for text in texts:
            words = re.findall(r"[a-z]+", text.lower())
            rows.append([3.0 * sum(w in kws for w in words) for kws in KEYWORDS.values()])
        return np.array(rows, dtype=np.float32)

    def embed(self, texts: list[str]) -> np.ndarray:
        return bag_of_words(texts)

    def forward(self, texts: list[str]) -> dict[str, np.ndarray]:
        self.passes = getattr(self, "passes", 0) + 1  # one per call: what the assistant pays
        return {"logits": self.logits(texts), "embedding": self.embed(texts)}


ANSWERS = """\
card_arrival: Cards arrive within 5 working days.
exchange_charge:
  answer: Exchanging {amount} costs 0.5% above your allowance.
  fallback: Exchanging money costs 0.5% above your allowance.
"""

ARTICLE = """\
# Fees

## ATM fees
Withdrawals above your allowance cost 2% at the ATM. Operators may add their own ATM fee.

## Refund of a merchant
Refunds from a merchant take ten working days.
"""


def write_assistant(root: Path) -> Path:
    (root / "articles").mkdir(parents=True)
    (root / "articles" / "fees.md").write_text(ARTICLE)
    (root / "answers.yaml").write_text(ANSWERS)
    rows = ["text,label"]
    for label, words in KEYWORDS.items():
        rows += [f"where is my {w} {i},{label}" for i, w in enumerate(words * 3)]
    (root / "intents.csv").write_text("\n".join(rows) + "\n")
    (root / "assist.yaml").write_text("intents: intents.csv\n")
    return root


def make_assistant(directory: Path, answer=0.9, retrieval=0.5, store=None):
    """The fake model's assistant over `write_assistant(directory)`, at these thresholds."""
    from tuneforge.apps.assist.calibration import Calibration
    from tuneforge.apps.assist.knowledge import load_answers, load_articles
    from tuneforge.apps.assist.pipeline import Assistant
    from tuneforge.apps.assist.retrieval import Retriever

    return Assistant(
        FakeModel(),
        load_answers(directory / "answers.yaml"),
        Calibration({"msp": answer}, retrieval),
        retriever=Retriever(load_articles(directory / "articles"), bag_of_words),
        store=store,
    )
