"""Report figures: matplotlib rendered to inline SVG, so the HTML opens offline with no assets."""

from __future__ import annotations

import io

import numpy as np

GREY, BLUE, ORANGE, GREEN = "#8b949e", "#1f6feb", "#f0883e", "#2ea043"


def _figure(width: float = 5.0, height: float = 3.4):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "none", "font.size": 9, "axes.spines.top": False})
    plt.rcParams["axes.spines.right"] = False
    return plt.subplots(figsize=(width, height))


def to_svg(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    fig.tight_layout()
    # no RDF metadata block: it only adds bytes (and dates, so reports would never be identical)
    fig.savefig(
        buf, format="svg", metadata={"Date": None, "Creator": None, "Type": None, "Format": None}
    )
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog: the SVG is inlined in HTML


def confidence_histogram(conf: np.ndarray, correct: np.ndarray) -> str:
    fig, ax = _figure()
    bins = np.linspace(0, 1, 21)
    ax.hist([conf[correct], conf[~correct]], bins=bins, stacked=True, color=[GREEN, ORANGE])
    ax.legend(["correct", "wrong"], frameon=False)
    ax.set(xlabel="confidence (max probability)", ylabel="rows")
    return to_svg(fig)


def reliability_diagram(tables: dict[str, dict[str, list]]) -> str:
    """One line per temperature: accuracy against mean confidence of each bin."""
    fig, ax = _figure(4.2, 3.6)
    ax.plot([0, 1], [0, 1], ls="--", color=GREY, lw=1, label="perfect")
    for (name, table), colour in zip(tables.items(), (ORANGE, BLUE), strict=False):
        conf, acc = np.array(table["confidence"]), np.array(table["accuracy"])
        ok = ~np.isnan(acc)
        ax.plot(conf[ok], acc[ok], marker="o", ms=3, color=colour, label=name)
    ax.set(xlabel="mean confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(frameon=False, loc="upper left")
    return to_svg(fig)


def coverage_plot(curves: dict[str, dict], threshold_coverage: float | None, target: float) -> str:
    fig, ax = _figure()
    for (name, curve), colour in zip(curves.items(), (BLUE, ORANGE, GREEN), strict=False):
        ax.plot(curve["coverage"], curve["accuracy"], color=colour, label=name)
    ax.axhline(target, ls=":", color=GREY, lw=1, label=f"target {target:.2f}")
    if threshold_coverage is not None:
        ax.axvline(threshold_coverage, ls="--", color=GREEN, lw=1, label="chosen threshold")
    ax.set(xlabel="coverage (share of rows answered)", ylabel="accuracy of answered rows")
    ax.set_xlim(0, 1.01)
    ax.legend(frameon=False, loc="lower left")
    return to_svg(fig)


def confusion_heatmap(matrix: list[list[int]], labels: list[str]) -> str:
    m = np.asarray(matrix, dtype=float)
    norm = m / np.maximum(m.sum(1, keepdims=True), 1)
    size = min(9.0, 2.0 + 0.42 * len(labels))
    fig, ax = _figure(size, size * 0.85)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ticks = range(len(labels))
    ax.set_xticks(ticks, labels, rotation=60, ha="right")
    ax.set_yticks(ticks, labels)
    ax.set(xlabel="predicted", ylabel="true")
    if len(labels) <= 12:
        for i in ticks:
            for j in ticks:
                if m[i, j]:
                    colour = "white" if norm[i, j] > 0.6 else "black"
                    ax.text(j, i, int(m[i, j]), ha="center", va="center", color=colour, fontsize=7)
    return to_svg(fig)


def bar_chart(names: list[str], values: list[float], xlabel: str, max_bars: int = 40) -> str:
    """Horizontal bars (long class lists keep only the first `max_bars`, already sorted)."""
    names, values = names[:max_bars], values[:max_bars]
    fig, ax = _figure(5.0, max(2.0, 0.17 * len(names) + 0.8))
    ax.barh(range(len(names)), values, color=BLUE)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.invert_yaxis()
    ax.set(xlabel=xlabel)
    return to_svg(fig)


def length_histogram(lengths: list[int], max_length: int) -> str:
    fig, ax = _figure()
    ax.hist(lengths, bins=40, color=BLUE)
    ax.axvline(max_length, ls="--", color=ORANGE, lw=1, label=f"max_length {max_length}")
    ax.set(xlabel="tokens per text", ylabel="rows")
    ax.legend(frameon=False)
    return to_svg(fig)


def training_curves(log: list[dict]) -> str | None:
    """Loss per step, and each evaluation metric on a second axis."""
    steps = [(r["step"], r["loss"]) for r in log if "loss" in r and not r.get("eval")]
    evals = [r for r in log if r.get("eval")]
    if not steps and not evals:
        return None
    fig, ax = _figure(6.0, 3.2)
    if steps:
        ax.plot(*zip(*steps, strict=True), color=BLUE, lw=1, label="training loss")
        ax.set(xlabel="step", ylabel="loss")
    metric_keys = [k for k in ("accuracy", "macro_f1") if any(k in r for r in evals)]
    if metric_keys:
        ax2 = ax.twinx() if steps else ax
        for key, colour in zip(metric_keys, (GREEN, ORANGE), strict=False):
            pts = [(r["step"], r[key]) for r in evals if key in r]
            ax2.plot(*zip(*pts, strict=True), marker="o", color=colour, label=f"val {key}")
        ax2.set_ylabel("validation metric")
        ax2.legend(frameon=False, loc="center right")
    if steps:
        ax.legend(frameon=False, loc="upper right")
    return to_svg(fig)
