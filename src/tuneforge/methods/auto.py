"""`auto`: choose a method from the data, the base model and the time budget, and say why.

The decision table (first matching row wins) is in the README (`auto`) and tested:

| no labelled rows, only label names           | zeroshot |
| time budget under 2 minutes                  | head     |
| < 30 examples per class (median), short texts,
|   estimated contrastive tuning within budget | fewshot  |
| < 30 examples per class otherwise            | head     |
| more than 200,000 rows                       | head     |
| otherwise                                    | partial  |

A non-English-looking corpus on an English-only base adds a hint to use `e5-multilingual`; a
many-class English few-shot set on `minilm` adds a hint to use `mpnet+minilm` when it fits
the budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import median

from tuneforge.data.dataset import TextDataset
from tuneforge.models.registry import PAIR_SEPARATOR

FEW_SHOT_MAX_PER_CLASS = 30
FEW_SHOT_MAX_WORDS = 128  # contrastive tuning truncates long texts and its cost grows with length
HEAD_MAX_MINUTES = 2
HEAD_MIN_ROWS = 200_000
DEFAULT_BUDGET_MINUTES = 30  # what `fewshot` may take when no --max-minutes is given
# fewshot cost, an upper estimate: rows x words x model size. On 2 CPU cores banking77 10-shot
# (770 rows, ~12 words) took 69 s on MiniLM-L6 (0.0075 s per row-word) and ~4x that on
# all-mpnet-base-v2 (model scale 8). Small sets cost more per row-word (a fixed number of
# steps) but take seconds: the floor covers them.
SECONDS_PER_ROW_WORD = 0.015
MIN_FEWSHOT_MINUTES = 0.5
ENGLISH_ONLY_BASES = ("minilm", "mpnet")
MANY_CLASSES = 20  # intent-style sets: where the larger English base paid off (banking77)
MPNET_SCALE = 8.0  # all-mpnet-base-v2: 12 layers x 768^2 against MiniLM-L6's 6 x 384^2
HINTED_BASE = "mpnet+minilm"  # the most accurate English base on many-class few-shot sets
HINTED_SCALE = MPNET_SCALE + 1.0  # as model_scale counts a pair


@dataclass(frozen=True)
class DataProfile:
    rows: int
    classes: int
    per_class: float  # median examples per class
    words: float  # median words per text (characters / 2 for scripts without spaces)
    non_latin: float  # share of letters outside the Latin script

    @classmethod
    def of(cls, train: TextDataset) -> DataProfile:
        counts = train.class_counts()
        sample = train.texts[:2000]
        return cls(
            rows=len(train),
            classes=len(counts),
            per_class=median(counts.values()) if counts else 0,
            words=median(_words(t) for t in sample) if sample else 0,
            non_latin=_non_latin_share(sample),
        )


def choose_method(
    train: TextDataset | None,
    max_minutes: float | None = None,
    base: str | None = None,
    model_scale: float = 1.0,
) -> tuple[str, str]:
    """Return (method, reason). `model_scale`: base model cost relative to MiniLM-L6."""
    if train is None or train.labels is None or len(train) == 0:
        return "zeroshot", "no labelled examples, only label names: zero-shot by similarity"
    p = DataProfile.of(train)
    name, reason = _decide(p, max_minutes, model_scale)
    english_only = bool(base) and set(base.split(PAIR_SEPARATOR)) <= set(ENGLISH_ONLY_BASES)
    if english_only and p.non_latin > 0.3:
        reason += (
            f"; {p.non_latin:.0%} of the letters are not Latin but base '{base}' is "
            "English-only: use --base e5-multilingual"
        )
    elif name == "fewshot" and base == "minilm" and p.classes >= MANY_CLASSES:
        cost = fewshot_minutes(p, HINTED_SCALE)
        if cost <= (max_minutes or DEFAULT_BUDGET_MINUTES):
            reason += (
                f"; --base {HINTED_BASE} (~{cost:.0f} min at most) is more accurate on "
                "many-class sets: banking77 10-shot 87.8% vs 85.3%"
            )
    return name, reason


def choose_for_task(
    task: str,
    train,
    max_minutes: float | None = None,
    base: str | None = None,
    model_scale: float = 1.0,
) -> tuple[str, str]:
    """`auto` for `task`: each task keeps its own decision table."""
    from tuneforge.tasks import get_task

    table = get_task(task).choose_method
    return table(train, max_minutes, base, model_scale)


def fewshot_minutes(p: DataProfile, model_scale: float = 1.0) -> float:
    minutes = p.rows * max(p.words, 1.0) * SECONDS_PER_ROW_WORD * model_scale / 60
    return max(minutes, MIN_FEWSHOT_MINUTES * model_scale)


def _decide(p: DataProfile, max_minutes: float | None, model_scale: float) -> tuple[str, str]:
    if max_minutes is not None and max_minutes < HEAD_MAX_MINUTES:
        return "head", (
            f"time budget {max_minutes:g} min < {HEAD_MAX_MINUTES} min: frozen encoder + "
            "linear head"
        )
    shots = f"{p.per_class:g} examples per class (median, {p.classes} classes)"
    if p.per_class < FEW_SHOT_MAX_PER_CLASS:
        budget = max_minutes or DEFAULT_BUDGET_MINUTES
        cost = fewshot_minutes(p, model_scale)
        if p.words > FEW_SHOT_MAX_WORDS:
            return "head", (
                f"{shots} but long texts ({p.words:g} words median > {FEW_SHOT_MAX_WORDS}): "
                "frozen embeddings + logistic regression"
            )
        if cost > budget:
            return "head", (
                f"{shots}, but contrastive tuning would take ~{cost:.0f} min > "
                f"{budget:g} min budget: frozen embeddings + logistic regression"
            )
        return "fewshot", (
            f"{shots} < {FEW_SHOT_MAX_PER_CLASS}: contrastive tuning of the encoder on "
            f"bounded pairs (~{max(cost, 0.1):.1f} min estimated), then a linear head"
        )
    if p.rows > HEAD_MIN_ROWS:
        return "head", (
            f"{p.rows} rows > {HEAD_MIN_ROWS:,}: frozen embeddings keep training within minutes"
        )
    return "partial", (
        f"{shots}, {p.rows} rows: tune the top layers on cached lower-layer outputs "
        "(best accuracy per CPU minute)"
    )


def _words(text: str) -> float:
    spaced = len(text.split())
    # Chinese/Japanese/Thai text has no spaces: count ~2 characters as a word
    return max(spaced, len(text) / 2) if spaced <= 2 else spaced


def _non_latin_share(texts: list[str]) -> float:
    letters = non_latin = 0
    for text in texts:
        for ch in text[:500]:
            if ch.isalpha():
                letters += 1
                non_latin += ord(ch) > 0x24F  # beyond Latin Extended-B
    return non_latin / letters if letters else 0.0


def model_scale(base) -> float:
    """Training cost of a resolved base model relative to MiniLM-L6 (layers x width^2); a base
    pair counts the sum of its members (an upper estimate: by default fewshot tunes only the
    first, the second just embeds the texts)."""
    import json

    def scale(path) -> float:
        try:
            cfg = json.loads((path / "config.json").read_text())
            return cfg["num_hidden_layers"] * cfg["hidden_size"] ** 2 / (6 * 384**2)
        except (OSError, KeyError, ValueError):
            return 1.0

    return sum(scale(member.path) for member in base.members())
