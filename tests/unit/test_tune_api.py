"""`tune` keyword overrides go through the CLI's validation; ignored run flags are said."""

from __future__ import annotations

import pytest

import tuneforge
from tuneforge.config import TrainConfig
from tuneforge.errors import ConfigError

FAST = dict(batch_size=8, progress=False)


def test_falsy_overrides_over_a_config_are_applied(tiny_bert, tiny_data):
    config = TrainConfig(base=str(tiny_bert), method="full", epochs=1, early_stopping=3)
    model = tuneforge.tune(
        tiny_data["train"], config=config, early_stopping=0, label_smoothing=0.0, seed=0, **FAST
    )
    used = model.config.train_config
    assert (used["early_stopping"], used["label_smoothing"], used["seed"]) == (0, 0.0, 0)
    assert used["epochs"] == 1 and used["method"] == "full"  # the config's own values stay


@pytest.mark.parametrize(
    ("override", "field"),
    [({"lr": -1}, "lr"), ({"epochs": 0}, "epochs"), ({"batch_size": 0}, "batch_size"),
     ({"no_such_option": 1}, "no_such_option")],
)  # fmt: skip
def test_overrides_over_a_config_are_validated(tiny_bert, tiny_data, override, field):
    config = TrainConfig(base=str(tiny_bert), method="full", epochs=1)
    with pytest.raises(ConfigError, match=f"'{field}'"):
        tuneforge.tune(tiny_data["train"], config=config, progress=False, **override)
    with pytest.raises(ConfigError, match=f"'{field}'"):  # the same without a config
        tuneforge.tune(tiny_data["train"], base=str(tiny_bert), progress=False, **override)


@pytest.mark.parametrize(
    ("method", "options", "flags"),
    [
        ("head", {}, ["--resume", "--compile", "--max-minutes"]),
        ("fewshot", {}, []),  # its contrastive tuning runs on the Trainer: it applies every flag
    ],
)
def test_run_flags_a_method_does_not_apply_are_warned_about(
    tiny_bert, tiny_data, tmp_path, capsys, method, options, flags
):
    tuneforge.tune(
        tiny_data["train"], base=str(tiny_bert), method=method, method_options=options,
        epochs=1, resume=True, compile=True, max_minutes=30, out=tmp_path / "m", **FAST,
    )  # fmt: skip
    out = " ".join(capsys.readouterr().err.split())  # the console writes to stderr
    for flag in flags:
        assert f"{flag} is ignored by method '{method}'" in out
    for flag in {"--resume", "--compile", "--max-minutes"} - set(flags):
        assert f"{flag} is ignored" not in out


def test_trainer_methods_apply_every_run_flag_silently(tiny_bert, tiny_data, capsys):
    mlp = {"classifier": "mlp"}
    tuneforge.tune(
        tiny_data["train"], base=str(tiny_bert), method="head", method_options=mlp, epochs=1,
        max_minutes=30, **FAST,
    )  # fmt: skip
    assert "is ignored by method" not in capsys.readouterr().err
