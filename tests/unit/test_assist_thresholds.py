"""The answer threshold rule (thresholds.py) on synthetic score arrays."""

from __future__ import annotations

import numpy as np
import pytest

from tuneforge.apps.assist.knowledge import AssistConfig
from tuneforge.apps.assist.thresholds import (
    Targets,
    choose_threshold,
    handoff_share,
    handoff_threshold,
)
from tuneforge.errors import ConfigError

IN_SCOPE = np.linspace(0.5, 1.0, 101)  # 101 validation questions, scores 0.5 .. 1.0


def test_accuracy_target_binds_when_the_low_scores_are_wrong():
    correct = IN_SCOPE >= 0.7  # the lowest 40% are wrong
    choice = choose_threshold(IN_SCOPE, correct, Targets(accuracy=0.95))
    assert choice.bound_by == "accuracy"
    assert choice.accuracy_of_answered >= 0.95 and choice.answered < 0.65


def test_recall_target_binds_when_the_model_is_always_right():
    """The issue's case: every validation answer right, so accuracy alone answers everything."""
    correct = np.ones_like(IN_SCOPE, dtype=bool)
    choice = choose_threshold(IN_SCOPE, correct, Targets(accuracy=0.95, in_scope_recall=0.95))
    assert choice.bound_by == "in_scope_recall"
    assert choice.answered == pytest.approx(96 / 101)  # the top ceil(0.95 * 101) = 96
    assert choice.answered >= 0.95 and choice.threshold > IN_SCOPE.min()
    assert choice.oos_handoff is None
    off = choose_threshold(IN_SCOPE, correct, Targets(in_scope_recall=1.0, min_in_scope_recall=1))
    assert (off.answered, off.bound_by) == (1.0, "accuracy")  # the old rule: a tie is accuracy's


def test_oos_examples_raise_the_threshold_to_their_target():
    correct = np.ones_like(IN_SCOPE, dtype=bool)
    oos = np.linspace(0.3, 0.6, 61)  # at the 95% recall threshold (~0.525) 75% are handed off
    assert handoff_share(oos, choose_threshold(IN_SCOPE, correct, Targets()).threshold) < 0.8
    choice = choose_threshold(IN_SCOPE, correct, Targets(oos_handoff=0.8), oos)
    assert choice.bound_by == "oos_handoff"
    assert choice.oos_handoff == pytest.approx(0.8, abs=0.02) and choice.oos_handoff >= 0.8
    assert choice.answered >= 0.9


def test_oos_raise_stops_at_the_in_scope_floor():
    correct = np.ones_like(IN_SCOPE, dtype=bool)
    oos = np.linspace(0.3, 0.95, 66)  # no threshold hands off 80% and answers 90% in scope
    choice = choose_threshold(IN_SCOPE, correct, Targets(min_in_scope_recall=0.9), oos)
    assert choice.bound_by == "min_in_scope_recall"
    assert choice.answered == pytest.approx(0.9, abs=0.01) and choice.answered >= 0.9
    assert 0.3 < choice.oos_handoff < 0.8  # reported, not reached


def test_oos_examples_never_lower_a_stricter_accuracy_threshold():
    correct = IN_SCOPE >= 0.8
    alone = choose_threshold(IN_SCOPE, correct, Targets())
    with_oos = choose_threshold(IN_SCOPE, correct, Targets(), np.linspace(0.3, 0.95, 66))
    assert with_oos.threshold == alone.threshold and with_oos.bound_by == "accuracy"
    assert with_oos.oos_handoff is not None


def test_unreachable_accuracy_raises():
    with pytest.raises(ConfigError, match="accuracy"):
        choose_threshold(IN_SCOPE, np.zeros_like(IN_SCOPE, dtype=bool), Targets())


def test_handoff_threshold_leaves_the_share_below_it():
    scores = np.array([0.5, 0.1, 0.4, 0.2, 0.3])
    t = handoff_threshold(scores, 0.4)
    assert 0.2 < t < 0.3 and handoff_share(scores, t) == pytest.approx(0.4)
    assert handoff_share(scores, handoff_threshold(scores, 0.5)) == pytest.approx(0.6)  # ceil
    assert handoff_threshold(scores, 0.0) == -np.inf
    assert handoff_share(scores, handoff_threshold(scores, 1.0)) == 1.0


def test_targets_come_from_the_config():
    cfg = AssistConfig(target_accuracy=0.9, target_in_scope_recall=0.97, target_oos_handoff=0.7)
    assert Targets.of(cfg) == Targets(0.9, 0.97, 0.7, 0.9)
    with pytest.raises(ValueError, match="target_in_scope_recall"):
        AssistConfig(target_in_scope_recall=0.9, min_in_scope_recall=0.95)
