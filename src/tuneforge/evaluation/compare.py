"""Two models on the same test rows: headline metrics side by side and McNemar's paired test."""

from __future__ import annotations

import numpy as np

from tuneforge.evaluation import calibration as cal
from tuneforge.evaluation import plots
from tuneforge.evaluation.metrics import evaluate_predictions
from tuneforge.evaluation.stats import bootstrap_metrics, mcnemar


def compare_models(model_a, model_b, test, scored_a, opts) -> dict:
    """`scored_a` is model A's pass (from the report); B is scored here on the same rows."""
    from tuneforge.errors import ConfigError
    from tuneforge.evaluation.report import score

    if set(model_b.labels) != set(model_a.labels):
        missing = sorted(set(model_a.labels) ^ set(model_b.labels))[:5]
        raise ConfigError(
            f"The models have different label sets (e.g. {missing}); compare models trained "
            "for the same task."
        )
    scored_b = score(model_b, test)
    sides = {}
    for name, model, scored in (("A", model_a, scored_a), ("B", model_b, scored_b)):
        result = evaluate_predictions(test.labels, scored.pred, model_a.labels)
        sides[name] = {
            "name": model.path.name if model.path else name,
            "method": model.config.method,
            "base": model.config.base,
            "intervals": bootstrap_metrics(
                test.labels, scored.pred, model_a.labels, opts.bootstrap_resamples, seed=opts.seed
            ),
            "ece": cal.ece(scored.conf, scored.correct),
            "per_class_f1": {k: v["f1"] for k, v in result.per_class.items()},
            "curve": cal.coverage_curve(scored.conf, scored.correct),
        }
    delta = {
        lab: sides["B"]["per_class_f1"][lab] - sides["A"]["per_class_f1"][lab]
        for lab in model_a.labels
    }
    biggest = sorted(delta.items(), key=lambda kv: -abs(kv[1]))[:10]
    return {
        "sides": sides,
        "mcnemar": mcnemar(test.labels, scored_a.pred, scored_b.pred),
        "f1_changes": [kv for kv in biggest if abs(kv[1]) > 0],
        "agreement": float(np.mean(np.asarray(scored_a.pred) == np.asarray(scored_b.pred))),
        "svg": plots.coverage_plot(
            {
                f"A: {sides['A']['name']}": sides["A"]["curve"],
                f"B: {sides['B']['name']}": sides["B"]["curve"],
            },
            None,
            opts.target_accuracy,
        ),
    }
