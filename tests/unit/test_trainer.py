"""Trainer behaviour users rely on: resume after a kill, seeds, early stopping, time budget."""

from __future__ import annotations

import numpy as np
import pytest

import tuneforge
from tuneforge.training.batching import length_grouped_batches, sorted_batches

FAST = dict(batch_size=8, early_stopping=0, progress=False, lr=3e-3, method="full")


class Killed(Exception):
    pass


def test_same_seed_same_model_other_seed_differs(tiny_bert, tiny_data):
    runs = [
        tuneforge.tune(tiny_data["train"], base=str(tiny_bert), epochs=1, seed=s, **FAST)
        for s in (1, 1, 2)
    ]
    logits = [r.logits(["card refund bank"]) for r in runs]
    np.testing.assert_allclose(logits[0], logits[1], atol=1e-6)
    assert not np.allclose(logits[0], logits[2], atol=1e-4)


def test_early_stopping_and_best_checkpoint_restore(tiny_bert, tiny_data):
    model = tuneforge.tune(
        tiny_data["train"],
        base=str(tiny_bert),
        epochs=30,
        eval_every=0.5,
        **{**FAST, "early_stopping": 2, "lr": 5e-3},
    )
    evals = [r for r in model.log if r.get("eval")]
    assert len(evals) < 60  # stopped early
    best = max(e["accuracy"] for e in evals)
    assert model.metrics["validation"]["accuracy"] == pytest.approx(best)


def test_time_budget_stops_training(tiny_bert, tiny_data):
    model = tuneforge.tune(
        tiny_data["train"], base=str(tiny_bert), epochs=500, max_minutes=0.05, **FAST
    )
    steps = max(r["step"] for r in model.log if "loss" in r)
    assert steps < 500 * 12


def test_time_to_accuracy_counts_training_not_evaluations(tiny_bert, tiny_data, monkeypatch):
    """wall_time - eval_seconds_before - train_seconds is when training began, the same for
    every evaluation: so no evaluation's time (here a slow one) counts as training."""
    import time

    from tuneforge.training import loop

    slow = loop.predict_outputs

    def slow_outputs(*args, **kw):
        time.sleep(0.5)
        return slow(*args, **kw)

    monkeypatch.setattr(loop, "predict_outputs", slow_outputs)
    first_step = []
    model = tuneforge.tune(
        tiny_data["train"], base=str(tiny_bert), epochs=2, eval_every=0.5,
        on_step=lambda state: first_step.append(time.time()), **FAST,
    )  # fmt: skip
    evals = [e for e in model.log if "wall_time" in e]
    began = [e["wall_time"] - e["eval_seconds_before"] - e["train_seconds"] for e in evals]
    assert len(evals) >= 3 and max(began) - min(began) < 0.25, began
    assert max(began) < first_step[0], (began, first_step[0])


def test_length_grouped_batches_are_deterministic_and_complete():
    lengths = list(np.random.default_rng(0).integers(1, 100, 1000))
    a = length_grouped_batches(lengths, 16, seed=3)
    assert a == length_grouped_batches(lengths, 16, seed=3)
    assert a != length_grouped_batches(lengths, 16, seed=4)
    assert sorted(i for b in a for i in b) == list(range(1000))
    spread = np.mean([np.ptp([lengths[i] for i in b]) for b in a])
    assert spread < 20  # batches group similar lengths: little padding


def test_sorted_batches_keep_the_padded_token_budget():
    lengths = [3] * 40 + [50, 120, 7, 7]
    batches = sorted_batches(lengths, 16, max_tokens=64)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) <= 16
        # over budget only when one text alone is longer than the budget
        assert len(b) * max(lengths[i] for i in b) <= 64 or len(b) == 1
    assert [40] in batches and [41] in batches  # the 50- and 120-token texts ride alone
    assert sorted_batches(lengths, 16) == sorted_batches(lengths, 16, max_tokens=None)
    assert max(len(b) for b in sorted_batches(lengths, 16)) == 16


def test_class_weights_for_imbalanced_data():
    import torch

    from tuneforge.training.job import balanced_class_weights

    targets = torch.tensor([0] * 90 + [1] * 10)
    w = balanced_class_weights(targets, 2, "auto")
    assert w[1] > 5 * w[0]
    assert balanced_class_weights(torch.tensor([0, 1] * 10), 2, "auto") is None


def test_resume_with_other_settings_is_refused(tiny_bert, tiny_data, tmp_path):
    from tuneforge.errors import ConfigError

    base = dict(base=str(tiny_bert), epochs=1, checkpoint_every=2, **FAST)

    def kill(state):
        if state.step == 3:
            raise Killed

    with pytest.raises(Killed):
        tuneforge.tune(tiny_data["train"], out=tmp_path / "r", on_step=kill, **base)
    with pytest.raises(ConfigError, match="other training settings"):
        tuneforge.tune(
            tiny_data["train"], out=tmp_path / "r", resume=True, **{**base, "batch_size": 4}
        )


@pytest.mark.slow
def test_compiled_training_matches_eager_quality(tiny_bert, tiny_data):
    model = tuneforge.tune(
        tiny_data["train"], tiny_data["test"], base=str(tiny_bert), epochs=6, compile=True, **FAST
    )
    assert model.metrics["eval"]["accuracy"] > 0.6


# every method that trains weights runs on the one Trainer: each resumes after a kill to the
# weights an uninterrupted run reaches
RESUMABLE = {
    "full": ("full", {}, 3e-3),
    "lora": ("lora", {"r": 4, "alpha": 8}, 1e-2),
    "partial": ("partial", {"top_layers": 1}, 3e-3),
    "head-mlp": ("head", {"classifier": "mlp", "hidden": 32}, 1e-2),
    "prompt": ("prompt", {"num_virtual_tokens": 4}, 3e-2),
    "fewshot": ("fewshot", {"classes_per_batch": 3, "per_class": 4, "min_steps": 14}, 3e-3),
    "fewshot-top": (
        "fewshot",
        {"classes_per_batch": 3, "per_class": 4, "top_layers": 1, "min_steps": 14},
        3e-3,
    ),
}


@pytest.mark.parametrize("case", RESUMABLE)
def test_every_trained_method_resumes_after_a_kill(case, tiny_bert, tiny_data, tmp_path):
    method, options, lr = RESUMABLE[case]
    base = dict(
        base=str(tiny_bert), epochs=2, checkpoint_every=4, method_options=options,
        **{**FAST, "method": method, "lr": lr},
    )  # fmt: skip
    reference = tuneforge.tune(tiny_data["train"], **base)

    def kill_at_step_10(state):
        if state.step == 10:
            raise Killed

    out = tmp_path / "run"
    with pytest.raises(Killed):
        tuneforge.tune(tiny_data["train"], out=out, on_step=kill_at_step_10, **base)
    assert list((tmp_path / "run.ckpt").rglob("checkpoint.pt")) and not out.exists()
    resumed = tuneforge.tune(tiny_data["train"], out=out, resume=True, **base)
    texts = ["card arrived", "refund money", "bank transfer"]
    np.testing.assert_allclose(resumed.logits(texts), reference.logits(texts), atol=1e-4)
    assert not (tmp_path / "run.ckpt").exists()  # spent checkpoints are removed on success


def test_a_token_tagger_resumes_after_a_kill(tiny_bert, tiny_tokens, tmp_path):
    base = dict(base=str(tiny_bert), epochs=2, checkpoint_every=4, **{**FAST, "method": "partial"})
    reference = tuneforge.tune(tiny_tokens["train"], **base)

    def kill_at_step_10(state):
        if state.step == 10:
            raise Killed

    with pytest.raises(Killed):
        tuneforge.tune(tiny_tokens["train"], out=tmp_path / "t", on_step=kill_at_step_10, **base)
    resumed = tuneforge.tune(tiny_tokens["train"], out=tmp_path / "t", resume=True, **base)
    text = ["my card pin is lost please refund money"]
    np.testing.assert_allclose(
        resumed.task.word_probabilities(resumed, [text[0].split()])[0],
        reference.task.word_probabilities(reference, [text[0].split()])[0],
        atol=1e-4,
    )
