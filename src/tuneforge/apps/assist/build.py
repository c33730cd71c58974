"""Create an assistant directory (`init`) and train it: intent model, then thresholds (`train`)."""

from __future__ import annotations

import shutil
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
from tuneforge.errors import ConfigError, DataError
from tuneforge.evaluation.calibration import abstain_threshold
from tuneforge.paths import write_text_atomically

VAL_FRACTION = 0.2
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
    """(intents dataset, answers, articles) checked against each other."""
    intents = load_intents(directory / cfg.intents)
    answers = load_answers(directory / cfg.answers)
    check_answers_cover(intents.label_names, answers, directory / cfg.answers)
    articles = load_articles(directory / cfg.articles) if cfg.articles else []
    return intents, answers, articles


def train_assistant(directory: Path, progress: bool = True) -> Calibration:
    """Train the intent model on 80% of the examples, calibrate thresholds on the other 20%."""
    from tuneforge.data import stratified_split
    from tuneforge.tuning import tune

    directory = Path(directory)
    cfg = AssistConfig.load(directory)
    intents, _, articles = load_knowledge(directory, cfg)  # answers: checked only
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
    calibration = calibrate(model, fit, val, cfg)
    calibration.retrieval, retrieval_measured = _retrieval_threshold(
        directory, cfg, articles, model.embed
    )
    calibration.measured["retrieval"] = retrieval_measured
    calibration.save(directory)
    return calibration


def calibrate(model, fit, val, cfg: AssistConfig) -> Calibration:
    """Answer thresholds per score kind, chosen on held-out `val` for cfg.target_accuracy."""
    if val.labels is None or not len(val):
        raise DataError("Calibration needs labelled validation examples; add more per intent.")
    reference = Reference.build(model.embed(fit.texts), fit.labels, model.labels)
    logits, embeddings = model.logits(val.texts), model.embed(val.texts)
    correct = np.array(
        [model.labels[i] == y for i, y in zip(logits.argmax(1), val.labels, strict=True)]
    )
    answer, measured = {}, {"validation_examples": len(val), "accuracy": float(correct.mean())}
    for kind in SCORES:
        scores = in_scope_score(kind, logits, embeddings, reference)
        try:
            answer[kind], coverage, accuracy = abstain_threshold(
                scores, correct, cfg.target_accuracy
            )
        except ConfigError:
            if kind == cfg.oos_score:
                raise
            answer[kind], coverage, accuracy = None, 0.0, None  # unusable; reported as such
        measured[kind] = {"answered": coverage, "accuracy_of_answered": accuracy}
    measured["target_accuracy"] = cfg.target_accuracy
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
