"""The token-classification task trains with every method that declares it, predicts spans with
character offsets, evaluates with strict span scores, and survives save/load."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys

import numpy as np
import pytest
import yaml

import tuneforge
from tuneforge.artifact import CONFIG_FILE
from tuneforge.methods.base import methods_for
from tuneforge.tasks.token_classification import TokenClassificationConfig as Options
from tuneforge.tasks.token_classification import align_targets, sentence_windows

FAST = dict(epochs=8, batch_size=8, early_stopping=0, progress=False)
LR = {"full": 3e-3, "lora": 1e-2, "partial": 1e-2, "head": 3e-2}


def tag(tiny_bert, tiny_tokens, method, out=None, **extra):
    return tuneforge.tune(
        tiny_tokens["train"],
        tiny_tokens["test"],
        base=str(tiny_bert),
        method=method,
        out=out,
        **{**FAST, "lr": LR[method], **extra},
    )


def test_the_token_methods_are_the_ones_declared():
    assert set(methods_for("token-classification")) == {"full", "lora", "partial", "head"}


@pytest.mark.parametrize("method", ["full", "lora", "partial", "head"])
def test_each_method_trains_a_tagger_that_round_trips(method, tiny_bert, tiny_tokens, tmp_path):
    model = tag(tiny_bert, tiny_tokens, method, out=tmp_path / "m")
    assert model.config.task == "token-classification"  # detected from the data's shape
    assert model.metrics["eval"]["f1"] > {"head": 0.2}.get(method, 0.5), model.metrics["eval"]
    losses = [r["loss"] for r in model.log if "loss" in r]
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    assert any("f1" in r for r in model.log if r.get("eval"))  # the loop selects on span F1
    loaded = tuneforge.TunedModel.load(tmp_path / "m")
    text = ["my card pin is lost please refund money now"]
    assert [p.to_dict() for p in loaded.predict(text)] == [p.to_dict() for p in model.predict(text)]


@pytest.fixture(scope="module")
def tagger(tiny_bert, tiny_tokens, tmp_path_factory):
    out = tmp_path_factory.mktemp("tagger") / "m"
    tag(tiny_bert, tiny_tokens, "full", out=out)
    return out


def test_the_artifact_records_task_types_and_layer(tagger):
    raw = yaml.safe_load((tagger / CONFIG_FILE).read_text())
    assert raw["task"] == "token-classification"
    assert raw["labels"] == ["O", "B-CARD", "I-CARD", "B-MONEY", "I-MONEY"]
    assert raw["task_config"]["entity_types"] == ["CARD", "MONEY"]
    assert raw["task_config"]["layer"] == "tags"
    assert raw["train_config"]["metric"] == "f1"


def test_spans_point_into_the_users_own_text(tagger):
    model = tuneforge.TunedModel.load(tagger)
    texts = ["  My CARD  pin, is lost!  Refund money.", "the bank is a wire"]
    for text, pred in zip(texts, model.predict(texts), strict=True):
        for span in pred.entities:
            assert text[span.start : span.end] == span.text
            assert 0 < span.score <= 1 and span.label in ("CARD", "MONEY")
    assert model.predict("my card pin is lost")[0].entities  # a single string works too


def test_a_sentence_longer_than_the_window_is_split_never_truncated(tagger, tiny_bert):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_bert))
    words = [["my", "card", "pin", "is", "lost"] * 12]  # 60 words, 62 tokens with specials
    windows = sentence_windows(tokenizer, words, 16, 0.25)[0]
    assert len(windows) > 4 and windows[0][0] == 0 and windows[-1][1] == 60
    assert all(e - s <= 14 for s, e in windows)  # 16 less [CLS] and [SEP]
    assert all(b[0] < a[1] for a, b in itertools.pairwise(windows))  # they overlap
    model = tuneforge.TunedModel.load(tagger)
    model.config.max_length = 16
    long = " ".join(words[0])
    found = model.predict(long)[0]
    assert len(found.tags) == 60  # every word got a tag
    assert {e.text for e in found.entities} >= {"card pin"} or found.entities[-1].end > 200


def test_training_warns_about_long_sentences_and_splits_them(tiny_bert, tmp_path, capsys):
    rows = [{"tokens": ["my", "card", "pin"] * 20, "tags": ["O", "B-CARD", "I-CARD"] * 20}] * 8
    path = tmp_path / "long.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    model = tuneforge.tune(path, base=str(tiny_bert), method="head", max_length=16, **FAST)
    said = " ".join(capsys.readouterr().err.split())  # the console wraps long lines
    assert "longer than the model's window of 16 tokens" in said and "nothing is truncated" in said
    assert model.config.data["sentences"] == 8


def test_first_or_every_sub_token_is_labelled():
    word_ids = [None, 0, 1, 1, 1, 2, None]  # word 1 is three sub-tokens
    tags = [0, 1, 0]  # O, B-X, O
    first, positions = align_targets(word_ids, tags, Options())
    assert first == [-100, 0, 1, -100, -100, 0, -100]
    assert positions == [(0, 1), (1, 2), (2, 5)]
    every, _ = align_targets(word_ids, tags, Options(label_all_subtokens=True))
    assert every == [-100, 0, 1, 2, 2, 0, -100]  # the later pieces of a B- word take I-


def test_eval_writes_span_metrics_at_the_top_level(tagger, tiny_tokens, tmp_path):
    result = tuneforge.TunedModel.load(tagger).evaluate(tiny_tokens["test"])
    out = json.loads(result.save(tmp_path / "metrics.json").read_text())
    assert {"f1", "precision", "recall", "macro_f1", "per_type"} <= set(out)
    assert set(out["per_type"]) == {"CARD", "MONEY"}
    assert out["f1"] == pytest.approx(result.f1) and 0 < out["f1"] <= 1


def test_the_cli_prints_each_span_and_streams_files(tagger, tiny_tokens, tmp_path):
    cli = [sys.executable, "-m", "tuneforge"]
    shown = subprocess.run(
        [*cli, "predict", str(tagger), "my card pin is lost"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines = shown.splitlines()
    assert lines[0] == "my card pin is lost"  # plain text when not a terminal
    assert all(" [" in line and line.startswith("  ") for line in lines[1:])
    texts = tmp_path / "texts.csv"
    texts.write_text("text\nmy card pin is lost\nrefund money please\n")
    subprocess.run([*cli, "predict", str(tagger), "--file", str(texts)], check=True)
    scored = (tmp_path / "texts.scored.csv").read_text()
    assert "entities" in scored.splitlines()[0] and '""label"": ""' in scored


def test_the_task_option_errors_list_the_options(tiny_bert, tiny_tokens):
    from tuneforge.errors import ConfigError

    with pytest.raises(ConfigError, match=r"token-classification task.*Options: scheme"):
        tuneforge.tune(
            tiny_tokens["train"], base=str(tiny_bert), method="head", task_options={"nope": 1}
        )


def test_serve_returns_entities_on_native_and_v2(tagger):
    import asyncio

    import httpx

    from tuneforge.serving.app import build_app
    from tuneforge.serving.limits import Limits
    from tuneforge.serving.models import BatchSettings, ModelRepository

    key = "k" * 32
    repo = ModelRepository(BatchSettings())
    repo.add("skills", tagger)
    app = build_app(repo, api_keys=[key], limits=Limits())
    text = "my card pin is lost please refund money"

    async def calls():
        transport = httpx.ASGITransport(app=app)
        auth = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=auth) as c:
            native = await c.post("/v1/models/skills/predict", json={"texts": [text]})
            tensor = {"name": "text", "shape": [1], "datatype": "BYTES", "data": [text]}
            v2 = await c.post("/v2/models/skills/infer", json={"inputs": [tensor]})
            meta = await c.get("/v2/models/skills")
            wrong = await c.post(
                "/v2/models/skills/infer",
                json={"inputs": [tensor], "outputs": [{"name": "label"}]},
            )  # fmt: skip
            explain = await c.post(
                "/v1/models/skills/predict", json={"texts": [text], "explain": True}
            )
            return native, v2, meta, wrong, explain

    native, v2, meta, wrong, explain = asyncio.run(calls())
    assert native.status_code == 200, native.text
    spans = native.json()["predictions"][0]["entities"]
    assert spans and all(text[e["start"] : e["end"]] == e["text"] for e in spans)
    assert v2.status_code == 200 and v2.json()["outputs"][0]["name"] == "entities"
    assert json.loads(v2.json()["outputs"][0]["data"][0]) == spans
    assert [o["name"] for o in meta.json()["outputs"]] == ["entities"]
    assert wrong.status_code == 400 and "entities" in wrong.json()["error"]
    assert explain.status_code == 422


@pytest.mark.parametrize("quantize", [None, "int8"])
def test_a_tagger_exports_to_onnx_behind_the_span_f1_gate(tagger, tiny_tokens, tmp_path, quantize):
    from tuneforge.export import export_model

    report = export_model(
        tagger, tmp_path / "onnx", quantize=quantize, val=tiny_tokens["test"], max_loss=5.0
    )
    assert report.gate["metric"] == "f1" and report.gate["passed"], report.gate
    assert report.parity["tag_agreement"] > 0.95
    exported, source = (
        tuneforge.TunedModel.load(tmp_path / "onnx"),
        tuneforge.TunedModel.load(tagger),
    )
    assert exported.config.runtime == "onnx" and exported.config.task == "token-classification"
    text = "my card pin is lost please refund money"
    got, want = exported.predict(text)[0], source.predict(text)[0]
    if quantize is None:  # fp32 ONNX: the same spans with the same scores
        assert [(e.start, e.end, e.label) for e in got.entities] == [
            (e.start, e.end, e.label) for e in want.entities
        ]
    strict = tmp_path / "strict"
    with pytest.raises(Exception, match="prune"):
        export_model(
            tagger, strict, prune_layers=1, distil_data=tiny_tokens["train"], skip_gate=True
        )


def test_the_report_has_the_token_section(tagger, tiny_tokens, tmp_path):
    out = tmp_path / "report.html"
    subprocess.run(
        [sys.executable, "-m", "tuneforge", "report", str(tagger), str(tiny_tokens["test"]),
         "--out", str(out), "--json", str(tmp_path / "f.json")],
        check=True, capture_output=True,
    )  # fmt: skip
    page = out.read_text()
    for part in ("Spans", "Per type", "Missed spans", "Spurious spans", "Type confusions", "CARD"):
        assert part in page
    assert json.loads((tmp_path / "f.json").read_text())["f1"] > 0
