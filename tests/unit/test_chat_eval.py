"""The chat task's evaluation end to end on a tiny Llama that memorized JSON answers:
`tuneforge eval` writes the generative metrics at the top level and prints its summary once,
`tuneforge report` has a Generation section with the worst answers escaped, and batched
generation equals one by one."""

from __future__ import annotations

import html
import json

import pytest
import torch
from typer.testing import CliRunner

import tuneforge
from chat_fakes import CORPUS, chatml_tokenizer, tiny_llama
from tuneforge.cli.app import _register, app

_register()
runner = CliRunner()

# JSON extraction: the references are objects, and the prompts hold HTML to be escaped
TRAINED = [
    ("<b>SQL</b> & Python wanted", {"skills": ["SQL", "Python"], "knowledge": []}),
    ("statistics and R", {"skills": ["R"], "knowledge": ["statistics"]}),
    ("Excel, accounting", {"skills": ["Excel"], "knowledge": ["accounting"]}),
    ("Java and cloud", {"skills": ["Java"], "knowledge": ["cloud"]}),
]
UNSEEN = [
    ("Go <script>alert(1)</script> ops", {"skills": ["Go"], "knowledge": ["ops"]}),
    ("Rust, <i>compilers</i>", {"skills": ["Rust"], "knowledge": ["compilers"]}),
]


def write_chats(path, pairs):
    rows = [
        {"messages": [{"role": "user", "content": f"Extract: {p}"},
                      {"role": "assistant", "content": json.dumps(a)}]}
        for p, a in pairs
    ]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def chat_run(tmp_path_factory):
    """A chat model that memorized four JSON answers, and a test file of those and two unseen
    postings (answered with a memorized, so valid but wrong, object)."""
    root = tmp_path_factory.mktemp("chat_eval")
    texts = [f"Extract: {p} {json.dumps(a)}" for p, a in TRAINED + UNSEEN]
    tok = chatml_tokenizer([*CORPUS, *texts])
    lm = tiny_llama(tok)
    with torch.no_grad():  # as in test_chat_task: a random init's output layer is too flat
        lm.lm_head.weight.mul_(25)
    lm.save_pretrained(root / "base")
    tok.save_pretrained(root / "base")
    train = write_chats(root / "train.jsonl", TRAINED)
    tuneforge.tune(train, task="chat", base=str(root / "base"), method="full", epochs=60,
                   lr=1e-2, batch_size=4, early_stopping=0, progress=False, max_length=96,
                   val_data=train, out=root / "model")  # fmt: skip
    return root / "model", write_chats(root / "test.jsonl", TRAINED + UNSEEN)


def test_eval_writes_the_generative_metrics_at_the_top_level_and_prints_once(chat_run, tmp_path):
    from tuneforge.evaluation.generative import rouge_l, token_f1

    model_dir, data = chat_run
    out = tmp_path / "metrics.json"
    found = runner.invoke(app, ["eval", str(model_dir), str(data), "--out", str(out)])
    assert found.exit_code == 0, found.output
    metrics = json.loads(out.read_text())
    for key in ("exact_match", "token_f1", "rouge_l", "loss", "perplexity", "json_valid",
                "field_f1"):  # fmt: skip
        assert isinstance(metrics[key], float), key
    answered = len(TRAINED + UNSEEN)
    assert metrics["answered"] == answered and metrics["loss"] == metrics["eval_loss"]
    # the memorized answers are right; the unseen postings get a memorized, wrong, object
    assert metrics["exact_match"] >= 0.5 and metrics["json_valid"] >= 4 / 6
    assert 0 < metrics["field_f1"] < 1
    fields = metrics["field_scores"]
    assert set(fields) == {"skills", "knowledge"}
    assert (fields["skills"]["support"], fields["knowledge"]["support"]) == (7, 5)
    # every miss is listed (fewer than 20), worst first, its scores those of its texts
    worst = metrics["examples"]
    hits = round(metrics["exact_match"] * answered)
    assert len(worst) == answered - hits >= len(UNSEEN)
    assert [e["rouge_l"] for e in worst] == sorted(e["rouge_l"] for e in worst)
    for e in worst:
        assert e["rouge_l"] == rouge_l(e["generated"], e["expected"]) < 1
        assert e["token_f1"] == token_f1(e["generated"], e["expected"])
        assert e["prompt"].startswith("user: Extract: ")
    assert metrics["rouge_l"] == pytest.approx((hits + sum(e["rouge_l"] for e in worst)) / answered)
    assert found.output.count("perplexity") == 1, found.output  # the summary line, once
    assert f"ROUGE-L {metrics['rouge_l']:.4f}" in found.output


def test_plain_answers_get_no_json_metrics(chat_run, tmp_path):
    model_dir, _ = chat_run
    plain = tmp_path / "plain.jsonl"
    row = {"messages": [{"role": "user", "content": "Say hi."},
                        {"role": "assistant", "content": "Hi."}]}  # fmt: skip
    plain.write_text(json.dumps(row) + "\n")
    result = tuneforge.TunedModel.load(model_dir).evaluate(plain)
    assert result.rouge_l is not None and result.json_valid is None
    assert "json_valid" not in result.to_dict() and "field_f1" not in result.summary()


def test_the_report_has_a_generation_section_with_escaped_worst_answers(chat_run, tmp_path):
    model_dir, data = chat_run
    html_path, figures = tmp_path / "report.html", tmp_path / "figures.json"
    found = runner.invoke(
        app, ["report", str(model_dir), str(data), "--out", str(html_path), "--json", str(figures)]
    )
    assert found.exit_code == 0, found.output
    page = html_path.read_text()
    assert '<section id="generative"><h2>Generation</h2>' in page
    assert "ROUGE-L" in page and "field F1 (micro)" in page and "Per JSON field" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert" not in page
    assert "&lt;i&gt;compilers&lt;/i&gt;" in page
    # the references, escaped: {"skills": [...]} has quotes
    assert html.escape(json.dumps(UNSEEN[0][1])) in page
    assert set(json.loads(figures.read_text())) >= {"rouge_l", "json_valid", "field_f1"}
    assert found.output.count("perplexity") == 1


def test_batched_generation_equals_one_by_one_in_input_order():
    from tuneforge.generation import GenerationOptions, generate
    from tuneforge.tasks.chat_eval import generate_all

    tok = chatml_tokenizer()
    lm = tiny_llama(tok)
    prompts = [[{"role": "user", "content": "x " * n + "France?"}] for n in (5, 0, 9, 2, 7)]
    opts = GenerationOptions(max_new_tokens=6)
    batched = generate_all(lm, tok, prompts, opts, batch_size=2, progress=True)
    alone = [generate(lm, tok, p, opts)[0] for p in prompts]
    assert [g.text for g in batched] == [g.text for g in alone]
    assert [g.prompt_tokens for g in batched] == [g.prompt_tokens for g in alone]
