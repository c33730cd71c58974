"""`auto`: choose a method from the data and the time budget, and say why."""

from __future__ import annotations

from statistics import median

from tuneforge.data.dataset import TextDataset


def choose_method(train: TextDataset, max_minutes: float | None = None) -> tuple[str, str]:
    """Return (method, reason). The table is documented in the README and tested."""
    counts = train.class_counts()
    per_class = median(counts.values()) if counts else 0
    rows = len(train)
    if max_minutes is not None and max_minutes < 2:
        return "head", f"time budget {max_minutes} min < 2 min: frozen encoder + linear head"
    if per_class < 30:
        return "head", (
            f"{per_class:g} examples per class (median) < 30: tuning the encoder "
            "would over-fit; frozen embeddings + logistic regression"
        )
    if rows > 200_000:
        return "head", f"{rows} rows > 200,000: frozen embeddings keep training within minutes"
    return "partial", (
        f"{per_class:g} examples per class (median), {rows} rows: tune the top "
        "layers on cached lower-layer outputs (best accuracy per CPU minute)"
    )
