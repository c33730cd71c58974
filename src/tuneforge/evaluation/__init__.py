"""Metrics, calibration, explanations and reports."""

from tuneforge.evaluation.metrics import EvalResult, evaluate_predictions

__all__ = ["EvalResult", "evaluate_predictions"]
