"""Create an assistant directory (`init`) and train it: intent model, then thresholds (`train`)."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import asdict
from importlib import resources
from pathlib import Path

import numpy as np
import yaml

from tuneforge.apps.assist.calibration import Calibration
from tuneforge.apps.assist.knowledge import (
    CONFIG_FILE,
    Article,
    AssistConfig,
    check_answers_cover,
    load_answers,
    load_articles,
    load_intents,
    load_retrieval_queries,
)
from tuneforge.apps.assist.oos import (
    SCORES,
    Reference,
    in_scope_score,
    recall_threshold,
)
from tuneforge.apps.assist.retrieval import Retriever
from tuneforge.apps.assist.thresholds import Targets, choose_threshold
from tuneforge.apps.assist.unknown_intents import expected_handoff
from tuneforge.data.dataset import load_data
from tuneforge.data.yaml_text import load_text_yaml
from tuneforge.errors import ConfigError, DataError
from tuneforge.paths import write_text_atomically

VAL_FRACTION = 0.2
OOS_LABEL = "oos"  # intent rows with this label are out-of-scope examples (as in CLINC150)
DEMO_FILES = (
    "intents.csv",
    "answers.yaml",
    "retrieval_queries.csv",
    "retrieval_test.csv",
    "NOTICE",
)


def demo_dir() -> Path:
    return Path(str(resources.files("tuneforge.apps.assist") / "demo"))


def init_assistant(directory: Path, force: bool = False) -> Path:
    """A new assistant directory with the banking77 demo knowledge, ready to `train`."""
    directory = Path(directory)
    if (directory / CONFIG_FILE).exists() and not force:
        raise ConfigError(f"{directory} already has an {CONFIG_FILE}; pass --force to overwrite.")
    directory.mkdir(parents=True, exist_ok=True)
    demo = demo_dir()
    for name in DEMO_FILES:
        shutil.copy2(demo / name, directory / name)
    shutil.copytree(demo / "articles", directory / "articles", dirs_exist_ok=True)
    settings = AssistConfig().model_dump()
    write_text_atomically(
        directory / CONFIG_FILE,
        "# tuneforge assistant: paths are relative to this file's folder.\n"
        + yaml.safe_dump(settings, sort_keys=False),
    )
    return directory


def load_knowledge(directory: Path, cfg: AssistConfig):
    """(intents, answers, articles, out-of-scope questions), checked against each other.

    Intent rows labelled `oos` (CLINC150's convention) are out-of-scope examples, not an
    intent; so are the questions in cfg.oos_examples."""
    intents = load_intents(directory / cfg.intents)
    is_oos = [label == OOS_LABEL for label in intents.labels]
    out_of_scope = [t for t, oos in zip(intents.texts, is_oos, strict=True) if oos]
    intents = intents.subset([i for i, oos in enumerate(is_oos) if not oos])
    if cfg.oos_examples:
        out_of_scope += load_oos_examples(directory / cfg.oos_examples)
    answers = load_answers(directory / cfg.answers)
    check_answers_cover(intents.label_names, answers, directory / cfg.answers)
    articles = load_articles(directory / cfg.articles) if cfg.articles else []
    return intents, answers, articles, out_of_scope


def load_oos_examples(file: Path) -> list[str]:
    """Out-of-scope questions: a YAML list (`- question`), or a CSV/JSONL/... text column."""
    file = Path(file)
    if not file.exists():
        raise DataError(
            f"oos_examples: {file} not found; write one out-of-scope question per row, or "
            "remove the setting from assist.yaml."
        )
    if file.suffix.lower() not in (".yaml", ".yml"):
        return load_data(file, require_labels=False).texts
    raw = load_text_yaml(file.read_text(encoding="utf-8"))
    if not isinstance(raw, list) or not raw or not all(isinstance(q, str) for q in raw):
        raise DataError(f"{file}: expected a list of out-of-scope questions ('- text' per line).")
    return [q.strip() for q in raw if q.strip()]


def train_assistant(directory: Path, progress: bool = True) -> Calibration:
    """Train the intent model on 80% of the examples, calibrate thresholds on the other 20%."""
    from tuneforge.data import stratified_split
    from tuneforge.tuning import tune

    directory = Path(directory)
    cfg = AssistConfig.load(directory)
    intents, _, articles, out_of_scope = load_knowledge(directory, cfg)  # answers: checked only
    fit, val = stratified_split(intents, VAL_FRACTION, seed=0)
    model = tune(
        fit,
        val_data=val,
        method="head",
        method_options={"refit": False},  # the thresholds below need `val` held out
        base=cfg.base,
        out=directory / cfg.model,
        progress=progress,
    )
    head_c = model.config.method_details.get("C")  # the folds' heads are fit alike
    calibration = calibrate(model, fit, val, cfg, out_of_scope, head_c)
    calibration.retrieval, retrieval_measured = _retrieval_threshold(
        directory, cfg, articles, model.embed
    )
    calibration.measured["retrieval"] = retrieval_measured
    calibration.save(directory)
    return calibration


def calibrate(
    model,
    fit,
    val,
    cfg: AssistConfig,
    out_of_scope: Sequence[str] = (),
    head_c: float | None = None,
) -> Calibration:
    """Answer thresholds per score kind, chosen on held-out `val` (and the out-of-scope
    questions) by the rule of thresholds.py, with the share of questions about unknown intents
    they are expected to hand off (unknown_intents.py: intents left out of `fit`)."""
    if val.labels is None or not len(val):
        raise DataError("Calibration needs labelled validation examples; add more per intent.")
    x_fit, x_val = model.embed(fit.texts), model.embed(val.texts)
    reference = Reference.build(x_fit, fit.labels, model.labels)
    logits = model.logits(val.texts)
    correct = np.array(model.labels)[logits.argmax(1)] == np.array(val.labels)
    oos = None  # (logits, embeddings) of the out-of-scope questions
    if out_of_scope:
        oos = (model.logits(list(out_of_scope)), model.embed(list(out_of_scope)))
    targets = Targets.of(cfg)
    answer, measured = {}, {"validation_examples": len(val), "accuracy": float(correct.mean())}
    for kind in SCORES:
        scores = in_scope_score(kind, logits, x_val, reference)
        oos_scores = in_scope_score(kind, *oos, reference) if oos else None
        try:
            choice = choose_threshold(scores, correct, targets, oos_scores)
        except ConfigError:
            if kind == cfg.oos_score:
                raise
            answer[kind] = None  # unusable; reported as such
            measured[kind] = {"answered": 0.0, "accuracy_of_answered": None}
            continue
        answer[kind], measured[kind] = choice.threshold, choice.to_dict()
    unknown = expected_handoff(
        x_fit, fit.labels, x_val, val.labels, targets, oos[1] if oos else None, c=head_c
    )
    for kind, share in unknown.get("handoff", {}).items():
        measured[kind]["expected_unknown_handoff"] = share
    measured |= {
        "target_accuracy": cfg.target_accuracy,
        "targets": asdict(targets),
        "oos_examples": len(out_of_scope),
        "unknown_intents": unknown,
    }
    return Calibration(answer, 0.0, reference, measured)


def _retrieval_threshold(directory: Path, cfg: AssistConfig, articles: list[Article], embed):
    """The similarity that cfg.retrieval_recall of the queries' right articles reach."""
    if not articles:
        return float("inf"), {"note": "no articles: retrieval is off"}
    if not cfg.retrieval_queries or not (directory / cfg.retrieval_queries).exists():
        raise ConfigError(
            f"Retrieval needs example queries to calibrate its threshold: write "
            f"{directory / (cfg.retrieval_queries or 'retrieval_queries.csv')} with columns "
            "query,article (a question and the article file that answers it), and set "
            "retrieval_queries in assist.yaml."
        )
    queries = load_retrieval_queries(directory / cfg.retrieval_queries, articles)
    retriever = Retriever(articles, embed)
    similarities = []
    for query, article in queries:
        hits = {h.chunk.article: h.similarity for h in retriever.search(query, len(articles))}
        similarities.append(hits.get(article, 0.0))
    threshold = recall_threshold(np.array(similarities), cfg.retrieval_recall)
    return threshold, {"queries": len(queries), "recall_target": cfg.retrieval_recall}


def load_parts(directory: Path):
    """(config, model, answers, articles, calibration) of a trained assistant."""
    from tuneforge.tuned_model import TunedModel

    cfg = AssistConfig.load(directory)
    model = TunedModel.load(directory / cfg.model)
    answers = load_answers(directory / cfg.answers)
    check_answers_cover(model.labels, answers, directory / cfg.answers)
    articles = load_articles(directory / cfg.articles) if cfg.articles else []
    return cfg, model, answers, articles, Calibration.load(directory)
