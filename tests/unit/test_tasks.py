"""The task registry: tasks are plug-ins at right angles to methods; old artifacts still load."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import yaml

import tuneforge
from tuneforge.artifact import CONFIG_FILE, FORMAT_VERSION, ArtifactConfig
from tuneforge.errors import ArtifactError, ConfigError
from tuneforge.methods import METHODS
from tuneforge.methods.base import get_method, methods_for
from tuneforge.tasks import TASKS, detect_task, get_task

TEXTS = ["my card has not arrived", "refund my money please", "send a bank transfer"]


def test_text_classification_is_registered_and_every_method_trains_it():
    assert "text-classification" in TASKS
    assert set(methods_for("text-classification")) == set(METHODS)


def test_unknown_task_and_a_method_outside_its_tasks_are_clear_errors():
    with pytest.raises(ConfigError, match=r"Unknown task 'nope'.*text-classification"):
        get_task("nope")

    METHODS["fake-method"] = type("FakeMethod", (METHODS["full"],), {"tasks": frozenset()})
    try:
        with pytest.raises(ConfigError, match="does not train the text-classification task"):
            get_method("fake-method", task="text-classification")
    finally:
        del METHODS["fake-method"]


def test_a_plain_csv_is_text_classification(tiny_data):
    assert detect_task(tiny_data["train"]) == "text-classification"
    assert detect_task(None) == "text-classification"


def test_the_artifact_records_its_task_and_the_task_config(tiny_model_dir):
    raw = yaml.safe_load((tiny_model_dir / CONFIG_FILE).read_text())
    assert raw["format_version"] == FORMAT_VERSION == 2
    assert raw["task"] == "text-classification"
    assert set(raw["task_config"]) == {"multi_label", "pooling", "normalize", "head", "head_hidden"}
    assert "multi_label" not in raw and "pooling" not in raw  # no longer at the top level
    assert raw["train_config"]["task"] == "text-classification"
    assert raw["train_config"]["metric"] == "accuracy"  # the task's default, written down


def test_an_artifact_of_format_1_still_loads_and_predicts_the_same(tiny_model_dir, tmp_path):
    old = tmp_path / "v1"
    shutil.copytree(tiny_model_dir, old)
    raw = yaml.safe_load((old / CONFIG_FILE).read_text())
    v1 = {k: v for k, v in raw.items() if k != "task_config"}
    v1.update(raw["task_config"], format_version=1)  # the fields at the top level, as format 1
    (old / CONFIG_FILE).write_text(yaml.safe_dump(v1, sort_keys=False))
    now, then = tuneforge.TunedModel.load(tiny_model_dir), tuneforge.TunedModel.load(old)
    assert then.config.task_config == now.config.task_config
    np.testing.assert_allclose(then.predict_proba(TEXTS), now.predict_proba(TEXTS), atol=1e-6)
    assert [p.label for p in then.predict(TEXTS)] == [p.label for p in now.predict(TEXTS)]


def test_a_bad_task_config_names_the_file(tiny_model_dir, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(tiny_model_dir, bad)
    raw = yaml.safe_load((bad / CONFIG_FILE).read_text())
    raw["task_config"]["pooling"] = "max"
    (bad / CONFIG_FILE).write_text(yaml.safe_dump(raw))
    with pytest.raises(ArtifactError, match=r"tuneforge.yaml: invalid task_config.*pooling"):
        ArtifactConfig.load(bad)
    raw["task"] = "no-such-task"
    (bad / CONFIG_FILE).write_text(yaml.safe_dump(raw))
    with pytest.raises(ArtifactError, match="Unknown task 'no-such-task'"):
        ArtifactConfig.load(bad)


def test_a_metric_the_task_does_not_compute_is_refused(tiny_bert, tiny_data):
    with pytest.raises(ConfigError, match="Metric 'f1' is not one of the text-classification"):
        tuneforge.tune(tiny_data["train"], base=str(tiny_bert), method="head", metric="f1")
