"""The CLI: train → eval → predict (texts and streamed files), and clean error messages."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
from typer.testing import CliRunner

from tuneforge.cli.app import _register, app

_register()
runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tiny_bert, tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "model"
    result = runner.invoke(
        app,
        [
            "train",
            str(tiny_data["train"]),
            "--eval",
            str(tiny_data["test"]),
            "--out",
            str(out),
            "--method",
            "full",
            "--base",
            str(tiny_bert),
            "--epochs",
            "6",
            "--lr",
            "0.003",
            "--batch-size",
            "8",
            "--early-stopping",
            "0",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "Saved model" in result.output and "accuracy" in result.output
    return out


def test_eval_writes_metrics_with_confusion(trained, tiny_data, tmp_path):
    result = runner.invoke(
        app, ["eval", str(trained), str(tiny_data["test"]), "--out", str(tmp_path / "m.json")]
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["accuracy"] > 0.6 and len(metrics["confusion"]) == 3
    assert "macro-F1" in result.output


def test_predict_texts_and_json(trained):
    result = runner.invoke(app, ["predict", str(trained), "card arrived post", "--json"])
    assert result.exit_code == 0, result.output
    line = json.loads(result.output.strip().splitlines()[-1])
    assert line["label"] in ("card", "refund", "transfer") and 0 <= line["score"] <= 1


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_predict_file_streams_in_chunks(trained, tmp_path, suffix):
    frame = pd.DataFrame({"id": range(25), "text": ["refund money back"] * 25})
    src = tmp_path / f"in{suffix}"
    {
        ".csv": lambda: frame.to_csv(src, index=False),
        ".jsonl": lambda: frame.to_json(src, orient="records", lines=True),
        ".parquet": lambda: frame.to_parquet(src),
    }[suffix]()
    out = tmp_path / f"out{suffix}"
    result = runner.invoke(
        app, ["predict", str(trained), "--file", str(src), "--out", str(out), "--chunk-rows", "7"]
    )
    assert result.exit_code == 0, result.output
    scored = {
        ".csv": pd.read_csv,
        ".parquet": pd.read_parquet,
        ".jsonl": lambda p: pd.read_json(p, lines=True),
    }[suffix](out)
    assert len(scored) == 25 and list(scored["id"]) == list(range(25))
    assert {"label", "score"} <= set(scored.columns)


def test_errors_are_one_line_without_traceback(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\nhello,a\n,b\n")
    proc = subprocess.run(
        [sys.executable, "-m", "tuneforge", "train", str(bad), "--out", str(tmp_path / "m")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "Error:" in proc.stderr and "line(s) 3" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_help_is_fast_and_lists_verbs():
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "tuneforge", "--help"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and "train" in proc.stdout and "predict" in proc.stdout
    assert "torch" not in {line.split("|")[-1].strip() for line in proc.stderr.splitlines()}


def test_invalid_config_value(tiny_data, tmp_path):
    result = runner.invoke(
        app, ["train", str(tiny_data["train"]), "--epochs", "-1", "--out", str(tmp_path / "x")]
    )
    assert result.exit_code != 0
    assert "epochs" in str(result.exception) + result.output
