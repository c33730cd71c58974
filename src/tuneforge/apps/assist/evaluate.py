"""`tuneforge assist eval`: intent accuracy, out-of-scope detection, retrieval recall@k.

Out-of-scope detection is measured the way it fails in production: whole intents the model
never saw (`unknown_intents.py`: per fold a share of the intents is held out and a head is
trained on the embeddings of the others); each score must tell held-out test questions (out
of scope) from known ones (AUROC; FPR at the threshold that keeps 95% of in-scope questions).
The encoder is frozen in the head method, so each text is embedded once, then cached.
Retrieval is measured on the queries its threshold was calibrated on and, with
`--retrieval-test`, on held-out queries that calibration never saw (the honest figure).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tuneforge.apps.assist.oos import SCORES, auroc, fpr_at_tpr
from tuneforge.apps.assist.retrieval import Retriever, recall_at_k
from tuneforge.apps.assist.unknown_intents import fit_fold, held_out_count, unknown_intent_folds
from tuneforge.data.dataset import TextDataset, load_data
from tuneforge.errors import ConfigError, DataError
from tuneforge.evaluation.provenance import run_header
from tuneforge.methods.embedding_cache import texts_key
from tuneforge.paths import cache_dir, write_text_atomically
from tuneforge.training.progress import console

RECALL_K = (1, 3)


@dataclass
class EvalOptions:
    test: Path | None = None
    oos: list[str] = field(default_factory=list)  # NAME=TRAIN,TEST
    out_of_domain: Path | None = None  # messages the assistant should never answer
    retrieval_test: Path | None = None  # held-out query,article,section rows
    folds: int = 5
    held_out: float = 0.25
    seed: int = 0


def parse_oos_spec(spec: str) -> tuple[str, Path, Path]:
    name, sep, files = spec.partition("=")
    train, comma, test = files.partition(",")
    if not (sep and comma and name and train and test):
        raise ConfigError(f"--oos {spec!r}: write NAME=TRAIN_FILE,TEST_FILE.")
    return name, Path(train), Path(test)


def cached_embed(model, texts: list[str]) -> np.ndarray:
    """`model.embed`, cached on disk by model identity and texts (re-runs are instant)."""
    key = texts_key(texts, model.config.base, model.config.method, model.config.created)
    file = cache_dir("assist-eval") / f"{key}.npy"
    if file.exists():
        return np.load(file)
    emb = np.concatenate(
        [model.embed(texts[i : i + 512]) for i in _progress(range(0, len(texts), 512))]
    )
    tmp = file.with_name(f"{file.stem}.{os.getpid()}.tmp.npy")
    np.save(tmp, emb)
    os.replace(tmp, file)
    return emb


def _progress(items):
    from rich.progress import track

    return track(items, description="embedding", console=console, transient=True)


def leave_intents_out(
    x_train: np.ndarray, train: TextDataset, x_test: np.ndarray, test: TextDataset, opts
) -> dict:
    """Mean and spread over folds of AUROC / FPR@95%TPR per score, and in-scope accuracy."""
    names = sorted(set(train.labels))
    y_train, y_test = np.array(train.labels), np.array(test.labels)
    folds = []
    for fold, unknown in enumerate(
        unknown_intent_folds(names, opts.folds, opts.held_out, opts.seed)
    ):
        model = fit_fold(x_train, y_train, unknown, opts.seed + fold)
        predicted, scores = model.score(x_test)
        known = model.is_known(y_test)
        row = {"in_scope_accuracy": float(np.mean(predicted[known] == y_test[known]))}
        for kind, s in scores.items():
            row[kind] = {
                "auroc": auroc(s[known], s[~known]),
                "fpr_at_95tpr": fpr_at_tpr(s[known], s[~known], 0.95),
            }
        folds.append(row)
        console.print(f"  fold {fold + 1}/{opts.folds}: " + _fold_line(row))
    return {
        "intents": len(names),
        "held_out_per_fold": held_out_count(len(names), opts.held_out),
        "folds": opts.folds,
        "in_scope_accuracy": _mean_std([f["in_scope_accuracy"] for f in folds]),
        **{
            kind: {m: _mean_std([f[kind][m] for f in folds]) for m in ("auroc", "fpr_at_95tpr")}
            for kind in SCORES
        },
    }


def _fold_line(row: dict) -> str:
    scores = ", ".join(f"{k} AUROC {row[k]['auroc']:.3f}" for k in SCORES)
    return f"accuracy {row['in_scope_accuracy']:.3f}, {scores}"


def _mean_std(values: list[float]) -> dict:
    return {"mean": round(float(np.mean(values)), 4), "std": round(float(np.std(values)), 4)}


def intent_figures(assistant, test: TextDataset) -> dict:
    """Accuracy on `test`, and how the calibrated answer threshold splits it."""
    from sklearn.metrics import f1_score

    predicted, scores = assistant.intent_scores(test.texts)
    correct = np.array(predicted) == np.array(test.labels)
    answered = scores >= assistant.calibration.answer[assistant.score_kind]
    return {
        "file": str(test.source),
        "examples": len(test),
        "accuracy": round(float(correct.mean()), 4),
        "macro_f1": round(float(f1_score(test.labels, predicted, average="macro")), 4),
        "answered_at_threshold": round(float(answered.mean()), 4),
        "accuracy_of_answered": (
            round(float(correct[answered].mean()), 4) if answered.any() else None
        ),
    }


def path_mix(assistant, texts: list[str]) -> dict:
    """Share of `texts` answered, sent to an article and handed off (no database writes)."""
    _, scores = assistant.intent_scores(texts)
    answered = scores >= assistant.calibration.answer[assistant.score_kind]
    retrieved = 0
    if assistant.retriever is not None:
        for text in (t for t, a in zip(texts, answered, strict=True) if not a):
            hits = assistant.retriever.search(text, 1)
            retrieved += bool(hits) and hits[0].similarity >= assistant.calibration.retrieval
    n = max(len(texts), 1)
    return {
        "messages": len(texts),
        "answer": round(float(answered.sum()) / n, 4),
        "retrieval": round(retrieved / n, 4),
        "handoff": round(1 - (float(answered.sum()) + retrieved) / n, 4),
    }


@dataclass(frozen=True)
class RetrievalCase:
    query: str
    article: str
    section: str  # the heading of the section that answers the query


def load_retrieval_test(file: Path, retriever: Retriever) -> list[RetrievalCase]:
    """Held-out query,article,section rows; each section must be one of the article's."""
    from tuneforge.apps.assist.knowledge import load_retrieval_queries

    pairs = load_retrieval_queries(file, retriever.articles)  # checks the articles exist
    sections = load_data(file, "query", "section")
    known: dict[str, set[str]] = {}
    for chunk in retriever.chunks:
        known.setdefault(chunk.article, set()).add(chunk.section)
    for (_, article), section, line in zip(pairs, sections.labels, sections.lines, strict=True):
        if section not in known[article]:
            raise DataError(
                f"{file} line {line}: {article} has no section '{section}'; its sections: "
                + ", ".join(sorted(known[article]))
            )
    return [RetrievalCase(q, a, s) for (q, a), s in zip(pairs, sections.labels, strict=True)]


def held_out_retrieval(assistant, cases: list[RetrievalCase]) -> dict:
    """Recall@k of the right article, the right section at rank 1, the share of right articles
    that clear the calibrated threshold, and the path the whole assistant takes."""
    retriever, threshold = assistant.retriever, assistant.calibration.retrieval
    ranks, right_section, cleared, paths, right_article = [], 0, 0, Counter(), 0
    right_citation, written = 0, 0
    for case in cases:
        hits = retriever.search(case.query, len(retriever.articles))
        rank = [h.chunk.article for h in hits].index(case.article)
        ranks.append(rank)
        right_section += rank == 0 and hits[0].chunk.section == case.section
        cleared += hits[rank].similarity >= threshold
        reply = assistant.decide(case.query)
        paths[reply.path] += 1
        if reply.path == "retrieval":
            cited = reply.sources[0]
            right_article += cited["article"] == case.article
            right_citation += (cited["article"], cited["section"]) == (case.article, case.section)
            written += reply.written
    n = max(len(cases), 1)
    return {
        "queries": len(cases),
        **{f"recall@{k}": round(sum(r < k for r in ranks) / n, 4) for k in RECALL_K},
        "section@1": round(right_section / n, 4),
        "right_article_above_threshold": round(cleared / n, 4),
        "paths": {p: round(paths[p] / n, 4) for p in ("answer", "retrieval", "handoff")},
        "retrieval_path_right_article": (
            round(right_article / paths["retrieval"], 4) if paths["retrieval"] else None
        ),
        # of all queries: sent to an article citing the right article and section
        "answered_with_right_citation": round(right_citation / n, 4),
        # of the article replies: phrased by the writer model (else the passage is quoted)
        "retrieval_path_written": (
            round(written / paths["retrieval"], 4) if paths["retrieval"] else None
        ),
    }


def retrieval_figures(assistant, directory: Path, cfg, opts: EvalOptions) -> dict:
    from tuneforge.apps.assist.knowledge import load_retrieval_queries

    retriever = assistant.retriever
    result = {"chunks": len(retriever.chunks), "threshold": assistant.calibration.retrieval}
    if cfg.retrieval_queries and (directory / cfg.retrieval_queries).exists():
        queries = load_retrieval_queries(directory / cfg.retrieval_queries, retriever.articles)
        result["calibration_queries"] = {
            "file": cfg.retrieval_queries,
            "queries": len(queries),
            **{f"recall@{k}": round(recall_at_k(retriever, queries, k), 4) for k in RECALL_K},
        }
    if opts.retrieval_test:
        console.print(f"[bold]held-out retrieval queries[/] in {opts.retrieval_test}")
        cases = load_retrieval_test(opts.retrieval_test, retriever)
        result["held_out"] = {"file": str(opts.retrieval_test)} | held_out_retrieval(
            assistant, cases
        )
    return result


def run_eval(directory: Path, opts: EvalOptions, out: Path | None = None) -> dict:
    from tuneforge.apps.assist.knowledge import AssistConfig
    from tuneforge.apps.assist.pipeline import Assistant

    directory = Path(directory)
    assistant, cfg = Assistant.load(directory), AssistConfig.load(directory)
    model, calibration, retriever = assistant.model, assistant.calibration, assistant.retriever
    result = run_header("tuneforge", torch_threads=_torch_threads()) | {
        "assistant": str(directory),
        "score_kind": cfg.oos_score,
    }
    result["thresholds"] = {
        "answer": calibration.answer,
        "retrieval": calibration.retrieval,
        # train's estimate, by leaving intents out, of the share of unknown questions not answered
        "expected_unknown_handoff": calibration.measured.get(cfg.oos_score, {}).get(
            "expected_unknown_handoff"
        ),
    }
    if opts.test:
        console.print(f"[bold]intent accuracy[/] on {opts.test}")
        test = load_data(opts.test)
        result["intent"] = intent_figures(assistant, test)
        result["intent"]["paths"] = path_mix(assistant, test.texts)
    if opts.out_of_domain:
        console.print(f"[bold]paths of out-of-domain messages[/] in {opts.out_of_domain}")
        texts = load_data(opts.out_of_domain, require_labels=False).texts
        result["out_of_domain"] = {"file": str(opts.out_of_domain), **path_mix(assistant, texts)}
    result["out_of_scope"] = {}
    for spec in opts.oos:
        name, train_file, test_file = parse_oos_spec(spec)
        console.print(f"[bold]out of scope[/]: {name}, leave {opts.held_out:.0%} of intents out")
        train, test = load_data(train_file), load_data(test_file)
        x_train, x_test = cached_embed(model, train.texts), cached_embed(model, test.texts)
        result["out_of_scope"][name] = leave_intents_out(x_train, train, x_test, test, opts)
    if retriever:
        result["retrieval"] = retrieval_figures(assistant, directory, cfg, opts)
    elif opts.retrieval_test:
        raise ConfigError(f"--retrieval-test: {directory} has no articles to retrieve from.")
    if out:
        write_text_atomically(out, json.dumps(result, indent=1))
    return result


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _pm(stat: dict) -> str:
    return f"{stat['mean']:.3f} ± {stat['std']:.3f}"


def print_summary(result: dict) -> None:
    from rich.table import Table

    if "intent" in result:
        i = result["intent"]
        console.print(
            f"intent accuracy {i['accuracy']:.3f} (macro-F1 {i['macro_f1']:.3f}) on "
            f"{i['examples']} questions; answered at the threshold {i['answered_at_threshold']:.0%}"
            f", {i['accuracy_of_answered']} of them correct"
        )
    for key in ("intent", "out_of_domain"):
        paths = result.get(key, {}).get("paths") if key == "intent" else result.get(key)
        if paths:
            console.print(
                f"{key.replace('_', '-')} messages: answered {paths['answer']:.1%}, article "
                f"{paths['retrieval']:.1%}, handed off {paths['handoff']:.1%}"
            )
    expected = result["thresholds"].get("expected_unknown_handoff")
    if expected is not None:
        console.print(f"train's estimate for unknown questions: {expected:.0%} not answered")
    for name, oos in result["out_of_scope"].items():
        table = Table(
            title=f"out of scope: {name}, {oos['held_out_per_fold']} of "
            f"{oos['intents']} intents held out, {oos['folds']} folds"
        )
        for col in ("score", "AUROC", "FPR@95%TPR"):
            table.add_column(col)
        for kind in SCORES:
            a, f = oos[kind]["auroc"], oos[kind]["fpr_at_95tpr"]
            table.add_row(kind, _pm(a), _pm(f))
        console.print(table)
    retrieval = result.get("retrieval", {})
    for key, what in (("calibration_queries", "calibration"), ("held_out", "held-out")):
        if key in retrieval:
            r = retrieval[key]
            recalls = ", ".join(f"{k} {v:.2f}" for k, v in r.items() if k.startswith("recall"))
            console.print(
                f"retrieval over {retrieval['chunks']} chunks, {r['queries']} {what} queries: "
                + recalls
            )
    if "held_out" in retrieval:
        r = retrieval["held_out"]
        console.print(
            f"held-out queries: right section first {r['section@1']:.0%}, right article above "
            f"the threshold {r['right_article_above_threshold']:.0%}; answered "
            f"{r['paths']['answer']:.0%}, article {r['paths']['retrieval']:.0%} (right one: "
            f"{r['retrieval_path_right_article']}; right article and section: "
            f"{r['answered_with_right_citation']:.0%} of all), handed off "
            f"{r['paths']['handoff']:.0%}"
        )
        if r["retrieval_path_written"]:
            console.print(
                f"article replies phrased by the writer: {r['retrieval_path_written']:.0%}"
            )
