"""`build_report`: everything a user needs to trust (or not) a model, gathered from one test set.

The numbers come from this module; `report_html` only lays them out. One pass of the model over
the test set gives the logits every section reads; robustness and explanations add passes on a
seeded sample of rows, so a 3,000-row report takes well under two minutes on a CPU.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tuneforge.data.dataset import TextDataset
from tuneforge.evaluation import calibration as cal
from tuneforge.evaluation import plots
from tuneforge.evaluation.metrics import evaluate_predictions
from tuneforge.evaluation.stats import bootstrap_metrics

MANY_CLASSES = 20  # above this, a heatmap is unreadable: list the top confused pairs instead


@dataclass
class ReportOptions:
    target_accuracy: float = 0.95
    bootstrap_resamples: int = 300
    # Inference dominates the cost: each integrated-gradients text costs ~3 x ig_steps forward
    # passes, each robustness row 3 more. These defaults keep a 3,000-row report near a minute.
    robustness_rows: int = 400
    explain_errors: int = 4
    faithfulness_texts: int = 12
    ig_steps: int = 12
    faithfulness_k: int = 3
    top_errors: int = 15
    confused_pairs: int = 10
    seed: int = 0
    # image models (image_report): thumbnails are capped so the HTML stays a few hundred KB
    image_mistakes: int = 24
    image_pairs: int = 5
    images_per_pair: int = 4
    image_heatmaps: int = 6  # integrated gradients, heatmap_steps forward + backward passes each
    heatmap_steps: int = 16
    thumbnail_px: int = 96
    heatmap_px: int = 160


@dataclass
class Scored:
    """One model's pass over the test set."""

    logits: np.ndarray
    probs: np.ndarray  # with the artifact's temperature
    pred: list[str]
    conf: np.ndarray
    correct: np.ndarray


@dataclass
class Report:
    title: str
    sections: dict = field(default_factory=dict)  # name -> dict of figures, tables, svg
    seconds: float = 0.0

    def figures(self) -> dict:
        """The headline numbers (for the CLI, JSON and the README)."""
        s = self.sections
        if "spans" in s:
            return s["spans"]["result"].summary()
        if "generative" in s:
            return s["generative"]["result"].summary()
        out = {k: v.value for k, v in s["summary"]["intervals"].items()}
        out.update({k: s["calibration"][k] for k in ("ece_before", "ece_after", "temperature")})
        a = s["abstention"]
        out["abstain"] = {k: a.get(k) for k in ("threshold", "coverage", "accuracy", "source")}
        if "faithfulness" in s.get("explanations", {}):
            out["faithfulness"] = s["explanations"]["faithfulness"].to_dict()
        return out


def score(model, ds: TextDataset) -> Scored:
    logits = model.logits(ds.texts)
    probs = cal.softmax(logits, model.config.calibration.temperature)
    pred = [model.labels[i] for i in probs.argmax(1)]
    correct = np.array([p == g for p, g in zip(pred, ds.labels, strict=True)], dtype=bool)
    return Scored(logits, probs, pred, probs.max(1), correct)


def build_report(
    model,
    test: TextDataset,
    options: ReportOptions | None = None,
    train: TextDataset | None = None,
    calibration_fit: cal.CalibrationFit | None = None,
    compare=None,
) -> Report:
    """Gather every section for `model` on labelled `test` (single-label models; a model of
    another task gets that task's own section, see `token_report`; an image model gets the
    pictures, see `image_report.image_sections`)."""
    from tuneforge.errors import ConfigError

    if model.config.task == "token-classification":
        return token_report(model, test)
    if model.config.task == "chat":
        return chat_report(model, test)
    if model.config.multi_label:
        raise ConfigError("The report supports single-label models; use `tuneforge eval`.")
    opts = options or ReportOptions()
    started = time.monotonic()
    scored = score(model, test)
    name = model.path.name if model.path else "model"
    report = Report(title=f"{name} on {Path(test.source).name}")
    s = report.sections
    s["summary"] = _summary(model, test, scored, opts)
    s["per_class"] = s["summary"]["result"].per_class
    s["confusion"] = _confusion(model, test, scored, s["summary"]["result"].confusion, opts)
    s["calibration"] = _calibration(model, scored, calibration_fit)
    s["abstention"] = _abstention(model, scored, opts)
    if model.config.task == "image-classification":  # pictures where texts were
        from tuneforge.evaluation.image_report import image_sections

        s.update(image_sections(model, test, scored, opts, train))
    else:
        s["errors"] = _top_errors(test, scored, opts.top_errors)
        s["robustness"] = _robustness(model, test, scored, opts)
        s["data"] = _data(model, test, train)
        s["explanations"] = _explanations(model, test, scored, opts)
    s["training"] = {"svg": plots.training_curves(model.log), "records": len(model.log)}
    if compare is not None:
        from tuneforge.evaluation.compare import compare_models

        s["compare"] = compare_models(model, compare, test, scored, opts)
    report.seconds = time.monotonic() - started
    return report


def token_report(model, test) -> Report:
    """A tagger's report: span scores per type, missed and spurious spans with their
    sentences, type confusions, and the training curves."""
    return _task_report(model, test, "spans", {"types": model.config.task_config})


def chat_report(model, test) -> Report:
    """A chat model's report: loss, perplexity and answer scores, the worst answers beside
    their references and prompts, and the training curves."""
    return _task_report(model, test, "generative", {"config": model.config})


def _task_report(model, test, section: str, extra: dict) -> Report:
    """The task's own `evaluate` as one section (its result, plus `extra`), then the training
    curves."""
    started = time.monotonic()
    result = model.evaluate(test)
    name = model.path.name if model.path else "model"
    report = Report(title=f"{name} on {Path(test.source).name}")
    report.sections[section] = {"result": result, **extra}
    report.sections["training"] = {
        "svg": plots.training_curves(model.log),
        "records": len(model.log),
    }
    report.seconds = time.monotonic() - started
    return report


def _summary(model, test, scored: Scored, opts: ReportOptions) -> dict:
    result = evaluate_predictions(test.labels, scored.pred, model.labels)
    intervals = bootstrap_metrics(
        test.labels, scored.pred, model.labels, opts.bootstrap_resamples, seed=opts.seed
    )
    return {"result": result, "intervals": intervals, "n": len(test), "config": model.config}


def _confusion(model, test, scored: Scored, matrix: list, opts: ReportOptions) -> dict:
    if len(model.labels) <= MANY_CLASSES:
        return {"svg": plots.confusion_heatmap(matrix, model.labels), "pairs": []}
    m = np.asarray(matrix)
    np.fill_diagonal(m, 0)
    flat = np.argsort(-m, axis=None)[: opts.confused_pairs]
    pairs = []
    for i, j in zip(*np.unravel_index(flat, m.shape), strict=True):
        if not m[i, j]:
            break
        gold, pred = model.labels[i], model.labels[j]
        rows = [r for r in range(len(test)) if test.labels[r] == gold and scored.pred[r] == pred]
        pairs.append(
            {
                "true": gold,
                "predicted": pred,
                "count": int(m[i, j]),
                "examples": [test.texts[r] for r in rows[:3]],
            }
        )
    return {"svg": None, "pairs": pairs}


def _calibration(model, scored: Scored, fit: cal.CalibrationFit | None) -> dict:
    """ECE on the test set before (T=1) and after the artifact's (validation-fitted) T."""
    temperature = model.config.calibration.temperature
    raw = cal.softmax(scored.logits)
    before = cal.reliability(raw.max(1), scored.correct)
    after = cal.reliability(scored.conf, scored.correct)
    return {
        "temperature": temperature,
        "fitted": temperature != 1.0,
        "ece_before": cal.ece(raw.max(1), scored.correct),
        "ece_after": cal.ece(scored.conf, scored.correct),
        "validation_fit": fit,
        "histogram_svg": plots.confidence_histogram(scored.conf, scored.correct),
        "reliability_svg": plots.reliability_diagram(
            {"T = 1 (raw)": before, f"T = {temperature:.2f}": after}
            if temperature != 1.0
            else {"T = 1 (raw)": before}
        ),
    }


def _abstention(model, scored: Scored, opts: ReportOptions) -> dict:
    from tuneforge.errors import ConfigError

    settings = model.config.calibration
    curve = cal.coverage_curve(scored.conf, scored.correct)
    out = {"stored_threshold": settings.abstain_threshold, "target": opts.target_accuracy}
    if settings.abstain_threshold is not None:
        answered = scored.conf >= settings.abstain_threshold
        out["threshold"] = settings.abstain_threshold
        out["coverage"] = float(answered.mean())
        out["accuracy"] = float(scored.correct[answered].mean()) if answered.any() else None
        out["source"] = "artifact (fitted on validation data)"
    else:
        try:
            t, cov, acc = cal.abstain_threshold(scored.conf, scored.correct, opts.target_accuracy)
            out.update(threshold=t, coverage=cov, accuracy=acc, source="this test set")
        except ConfigError:  # the target is out of reach: show the curve alone
            out.update(threshold=None, coverage=None, accuracy=None, source="unreachable")
    out["svg"] = plots.coverage_plot({"this model": curve}, out["coverage"], opts.target_accuracy)
    return out


def _top_errors(test, scored: Scored, k: int) -> list[dict]:
    wrong = np.flatnonzero(~scored.correct)
    order = wrong[np.argsort(-scored.conf[wrong])][:k]
    return [
        {
            "text": test.texts[i],
            "line": test.lines[i],
            "true": test.labels[i],
            "predicted": scored.pred[i],
            "confidence": float(scored.conf[i]),
        }
        for i in order
    ]


def _sample(n: int, k: int, seed: int) -> list[int]:
    return sorted(random.Random(seed).sample(range(n), min(n, k)))


def _robustness(model, test, scored: Scored, opts: ReportOptions) -> dict:
    from tuneforge.evaluation.robustness import robustness

    rows = _sample(len(test), opts.robustness_rows, opts.seed)

    def predict(texts: list[str]) -> list[str]:
        return [model.labels[i] for i in model.logits(texts).argmax(1)]

    table = robustness(
        predict,
        [test.texts[i] for i in rows],
        [test.labels[i] for i in rows],
        clean_pred=[scored.pred[i] for i in rows],
        seed=opts.seed,
    )
    return {"rows": len(rows), "table": table}


def _data(model, test, train: TextDataset | None) -> dict:
    from tuneforge.data.validate import _norm

    ids = model.tokenizer([model.config.text_prefix + t for t in test.texts])["input_ids"]
    lengths = [len(x) for x in ids]
    counts = test.class_counts().most_common()
    norm = [_norm(t) for t in test.texts]
    out = {
        "rows": len(test),
        "class_counts": counts,
        "imbalance": counts[0][1] / max(1, counts[-1][1]) if counts else 1.0,
        "truncation_rate": float(np.mean([n > model.config.max_length for n in lengths])),
        "duplicates": len(norm) - len(set(norm)),
        "train_stats": model.config.data,
        "balance_svg": plots.bar_chart(
            [c for c, _ in counts], [n for _, n in counts], "test rows per class"
        ),
        "length_svg": plots.length_histogram(lengths, model.config.max_length),
        "leakage": None,
    }
    if train is not None:
        seen = {_norm(t) for t in train.texts}
        leaked = [i for i, t in enumerate(norm) if t in seen]
        out["leakage"] = {"rows": len(leaked), "examples": [test.texts[i] for i in leaked[:5]]}
    return out


def _explanations(model, test, scored: Scored, opts: ReportOptions) -> dict:
    from tuneforge.evaluation.explain import explain, faithfulness, to_html

    errors = _top_errors(test, scored, opts.explain_errors)
    shown = []
    for err in errors:
        exp = explain(model, err["text"], n_steps=opts.ig_steps)
        shown.append({**err, "html": to_html(exp), "method": exp.method})
    rows = _sample(len(test), opts.faithfulness_texts, opts.seed + 1)
    faith = faithfulness(
        model, [test.texts[i] for i in rows], k=opts.faithfulness_k, n_steps=opts.ig_steps
    )
    return {"errors": shown, "faithfulness": faith}
