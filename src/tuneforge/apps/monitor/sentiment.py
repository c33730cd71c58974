"""The sentiment model: a tuneforge artifact, trained on first use when none is given.

The demo model is `method="head"` on the embedded MiniLM encoder, trained on the 1,500-row
sample of Twitter Financial News Sentiment (MIT) shipped in samples/ (about a minute on two
cores). Any artifact works if its labels include a negative and a positive class, named in
monitor.yaml (`negative_labels`, `positive_labels`; bearish/bullish and negative/positive by
default). An item's score is P(positive) - P(negative), in [-1, 1].
"""

from __future__ import annotations

from pathlib import Path

from tuneforge.errors import ConfigError

SAMPLES = Path(__file__).resolve().parent / "samples"
DEMO_TRAIN = SAMPLES / "fin_sentiment_train.csv"
DEMO_REPLAY = SAMPLES / "fin_sentiment_replay.csv"


def train_demo_model(out: Path, base: str = "minilm"):
    """Train the demo sentiment model on the shipped sample and save it at `out`."""
    import tuneforge

    return tuneforge.tune(DEMO_TRAIN, method="head", base=base, out=out)


def polarity_columns(labels: list[str], negative: list[str], positive: list[str]) -> tuple:
    """(index of the negative label, index of the positive label) in the model's labels."""
    lowered = [label.casefold() for label in labels]

    def find(names: list[str], kind: str) -> int:
        for name in names:
            if name.casefold() in lowered:
                return lowered.index(name.casefold())
        raise ConfigError(
            f"The sentiment model's labels {labels} include no {kind} label (looked for "
            f"{names}); set `{kind}_labels` in monitor.yaml to the model's label name."
        )

    return find(negative, "negative"), find(positive, "positive")
