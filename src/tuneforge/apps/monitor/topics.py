"""Topic of a post: a zero-shot tuneforge model over five financial topics (no keywords).

`tune(method="zeroshot", labels=TOPICS)` embeds each topic's description and seed phrases with
the sentence encoder; a post's topic is the nearest prototype (methods/zeroshot/). Building it
takes seconds (no training data), and the result is an ordinary artifact: replace it with a
tuned topic model by pointing `topic_model` in monitor.yaml at any artifact.
"""

from __future__ import annotations

from pathlib import Path

TOPICS = {
    "earnings": {
        "description": "company earnings, quarterly results, revenue, profit, guidance",
        "examples": ["Q3 earnings beat estimates", "revenue guidance cut", "EPS of $1.20"],
    },
    "m&a": {
        "description": "mergers and acquisitions, takeover bids, buyouts, deals",
        "examples": ["agrees to acquire", "merger talks", "takeover offer"],
    },
    "macro": {
        "description": "the economy, inflation, interest rates, central banks, jobs, GDP",
        "examples": ["Fed raises rates", "inflation data", "unemployment claims"],
    },
    "markets": {
        "description": "stock market moves, indexes, trading, share prices, analyst ratings",
        "examples": ["stocks fall", "S&P 500 closes higher", "price target raised"],
    },
    "regulation": {
        "description": "regulators, lawsuits, investigations, fines, government policy",
        "examples": ["SEC probe", "antitrust lawsuit", "fined by regulators"],
    },
}


def build_topic_model(out: Path, base: str = "minilm"):
    """Build and save the zero-shot topic model at `out`; returns the TunedModel."""
    import tuneforge

    return tuneforge.tune(
        None, method="zeroshot", labels=TOPICS, base=base, out=out, progress=False
    )
