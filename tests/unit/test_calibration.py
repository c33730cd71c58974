"""Calibration, abstention and metric statistics against known values."""

from __future__ import annotations

import numpy as np
import pytest

from tuneforge.errors import ConfigError
from tuneforge.evaluation.calibration import (
    abstain_threshold,
    coverage_curve,
    ece,
    fit_calibration,
    fit_temperature,
    reliability,
)
from tuneforge.evaluation.stats import bootstrap_metrics, mcnemar


def test_ece_known_value():
    # bin 0.9: accuracy 0.5 (gap 0.4, weight 1/2); bin 0.6: accuracy 1.0 (gap 0.4, weight 1/2)
    conf = np.array([0.9, 0.9, 0.6, 0.6])
    correct = np.array([1, 0, 1, 1])
    assert ece(conf, correct, bins=10) == pytest.approx(0.4)
    assert ece(np.array([0.75, 0.75, 0.75, 0.75]), np.array([1, 1, 1, 0])) == pytest.approx(0.0)


def test_reliability_bins():
    table = reliability(np.array([0.05, 0.95, 0.97]), np.array([0, 1, 0]), bins=10)
    assert table["count"][0] == 1 and table["count"][9] == 2
    assert table["accuracy"][9] == pytest.approx(0.5)
    assert table["confidence"][9] == pytest.approx(0.96)
    assert np.isnan(table["accuracy"][5])


def _overconfident(n=3000, k=4, seed=0):
    """Logits whose true softmax temperature is 3: the model is three times too sure."""
    rng = np.random.default_rng(seed)
    true_logits = rng.normal(0, 1.5, size=(n, k))
    p = np.exp(true_logits) / np.exp(true_logits).sum(1, keepdims=True)
    y = np.array([rng.choice(k, p=row) for row in p])
    return true_logits * 3.0, y


def test_temperature_scaling_lowers_ece_on_overconfident_model():
    logits, y = _overconfident()
    assert fit_temperature(logits, y) == pytest.approx(3.0, rel=0.15)
    fit = fit_calibration(logits, y)
    assert fit.ece_before > 0.1
    assert fit.ece_after < fit.ece_before / 3
    assert fit.nll_after < fit.nll_before


def test_abstain_threshold_meets_target():
    conf = np.array([0.99, 0.95, 0.9, 0.8, 0.7, 0.6, 0.5])
    correct = np.array([1, 1, 1, 0, 1, 0, 0])
    t, coverage, acc = abstain_threshold(conf, correct, 0.8)
    # answering down to 0.7 gives 4/5 = 0.8; going to 0.6 would give 4/6
    assert (t, coverage, acc) == (0.7, pytest.approx(5 / 7), pytest.approx(0.8))
    assert abstain_threshold(conf, correct, 1.0)[0] == 0.9
    with pytest.raises(ConfigError, match="target-accuracy"):
        abstain_threshold(np.array([0.9]), np.array([0]), 0.95)


def test_coverage_curve_groups_ties():
    curve = coverage_curve(np.array([0.9, 0.9, 0.5]), np.array([1, 0, 1]))
    assert curve["coverage"].tolist() == pytest.approx([2 / 3, 1.0])
    assert curve["accuracy"].tolist() == pytest.approx([0.5, 2 / 3])


def test_bootstrap_interval_contains_value_and_shrinks_with_n():
    labels = ["a", "b", "c"]
    rng = np.random.default_rng(1)
    gold = list(rng.choice(labels, 600))
    pred = [g if rng.random() < 0.8 else "a" for g in gold]
    ci = bootstrap_metrics(gold, pred, labels, n_resamples=200)
    assert ci["accuracy"].value == pytest.approx(np.mean(np.array(gold) == np.array(pred)))
    for m in ci.values():
        assert m.low <= m.value <= m.high
    small = bootstrap_metrics(gold[:60], pred[:60], labels, n_resamples=200)
    width = ci["accuracy"].high - ci["accuracy"].low
    assert small["accuracy"].high - small["accuracy"].low > width


def test_mcnemar_known_values():
    gold = ["x"] * 20
    a = ["x"] * 15 + ["y"] * 5  # right on the first 15
    b = ["x"] * 5 + ["y"] * 15  # right on the first 5
    res = mcnemar(gold, a, b)
    assert (res.only_a, res.only_b, res.both, res.neither) == (10, 0, 5, 5)
    assert res.p_value == pytest.approx(2 * 0.5**10)  # exact two-sided binomial
    assert "A" in res.verdict
    assert mcnemar(gold, a, a).p_value == 1.0
