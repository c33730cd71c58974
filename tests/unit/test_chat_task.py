"""The chat task: a tiny random Llama (a local base directory) learns a dozen conversations with
`lora` and `full`, generates what it memorized, and round-trips through save/load."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import tuneforge
from chat_fakes import CORPUS, chatml_tokenizer, tiny_llama
from tuneforge.methods.base import methods_for
from tuneforge.tasks import detect_task, get_task
from tuneforge.tasks.chat import CausalLM, next_token_loss

PAIRS = [
    ("What is the capital of France?", "Paris."),
    ("What is the capital of Italy?", "Rome."),
    ("What is the capital of Spain?", "Madrid."),
    ("What is the capital of Peru?", "Lima."),
    ("Translate hello into French.", "Bonjour."),
    ("Translate thanks into French.", "Merci."),
    ("Translate yes into French.", "Oui."),
    ("Translate no into French.", "Non."),
    ("Say a colour.", "Blue."),
    ("Say a fruit.", "Apple."),
    ("Say a number.", "Seven."),
    ("Say an animal.", "Cat."),
]
FAST = dict(batch_size=4, early_stopping=0, progress=False, max_length=64)


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("llama")
    tok = chatml_tokenizer([*CORPUS, *(f"{q} {a}" for q, a in PAIRS)])
    lm = tiny_llama(tok)
    with torch.no_grad():  # a random init's 0.02-std output layer caps the logits after the
        lm.lm_head.weight.mul_(25)  # final norm: frozen (LoRA), it could never get confident
    lm.save_pretrained(root / "base")
    tok.save_pretrained(root / "base")
    return root / "base"


@pytest.fixture(scope="module")
def chats(tmp_path_factory):
    path = tmp_path_factory.mktemp("chats") / "chats.jsonl"
    rows = [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
        for q, a in PAIRS
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def chat(chats, llama_dir, method, **extra):
    # validation on the training file: the test is memorization, every row must be trained on
    return tuneforge.tune(chats, task="chat", base=str(llama_dir), method=method,
                          val_data=chats, **{**FAST, **extra})  # fmt: skip


def losses(model) -> list[float]:
    return [r["loss"] for r in model.log if "loss" in r]


@pytest.fixture(scope="module")
def full_run(chats, llama_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("full") / "m"
    return chat(chats, llama_dir, "full", epochs=60, lr=1e-2, out=out), out


def test_full_fine_tuning_memorizes_the_answers_and_round_trips(full_run):
    model, out = full_run
    assert model.config.task == "chat" and model.config.labels == []
    found = losses(model)
    assert np.mean(found[-5:]) < 0.5 * np.mean(found[:5]), found
    prompts = [[{"role": "user", "content": q}] for q, _ in PAIRS[:4]]
    answers = [g.text for g in model.predict(prompts, max_new_tokens=8)]
    assert answers == [a for _, a in PAIRS[:4]]
    loaded = tuneforge.TunedModel.load(out)
    assert loaded.config.task == "chat"
    assert [g.text for g in loaded.predict(prompts, max_new_tokens=8)] == answers
    assert any("neg_loss" in r for r in model.log if r.get("eval"))  # the loop selects on it
    validation = model.metrics["validation"]  # the restored checkpoint's scores
    best = max(r["neg_loss"] for r in model.log if "neg_loss" in r and "train_seconds" in r)
    assert validation["neg_loss"] == best and validation["perplexity"] > 1


def test_evaluate_reports_loss_perplexity_and_answer_scores(full_run, chats):
    _, out = full_run
    result = tuneforge.TunedModel.load(out).evaluate(chats).to_dict()
    assert result["perplexity"] == pytest.approx(np.exp(result["eval_loss"]))
    assert result["perplexity"] < 3 and result["exact_match"] > 0.5 and result["token_f1"] > 0.5
    assert result["n"] == len(PAIRS) and result["answered"] == len(PAIRS)


def test_lora_learns_and_merges_into_a_plain_llama(chats, llama_dir, tmp_path):
    model = chat(chats, llama_dir, "lora", epochs=30, lr=1e-2, out=tmp_path / "m")
    found = losses(model)
    assert np.mean(found[-5:]) < 0.5 * np.mean(found[:5]), found
    assert type(model.runtime.classifier.encoder).__name__ == "LlamaForCausalLM"  # merged
    loaded = tuneforge.TunedModel.load(tmp_path / "m")
    prompt = [{"role": "user", "content": PAIRS[0][0]}]
    assert loaded.predict(prompt, max_new_tokens=6)[0].text == (
        model.predict(prompt, max_new_tokens=6)[0].text
    )


def test_the_loss_projects_only_labelled_positions_and_equals_the_full_one(llama_dir):
    from transformers import AutoModelForCausalLM

    lm = CausalLM(AutoModelForCausalLM.from_pretrained(str(llama_dir)))
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    labels = torch.tensor([[-100, -100, -100, 8, 9, -100]])
    calls = []
    head = lm.encoder.get_output_embeddings()
    handle = head.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    with torch.no_grad():
        ours = next_token_loss(lm, lm(ids, torch.ones_like(ids)), labels)
        handle.remove()
        reference = lm.encoder(input_ids=ids, labels=labels).loss
    assert calls == [2]  # two labelled tokens: two rows through the vocabulary projection
    assert ours.item() == pytest.approx(reference.item(), rel=1e-5)


def test_detection_and_registry(chats, tmp_path):
    assert detect_task(chats) == "chat"
    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text('{"text": "hi there", "label": "greet"}\n{"text": "bye", "label": "x"}\n')
    assert detect_task(labelled) == "text-classification"
    plain = tmp_path / "plain.jsonl"
    plain.write_text('{"text": "some document"}\n')
    assert detect_task(plain) == "text-classification"  # plain text needs --task chat
    assert get_task("causal-lm") is get_task("chat")
    assert {"full", "lora"} <= set(methods_for("chat"))


def test_the_causal_lm_alias_trains_a_chat_model(chats, llama_dir):
    model = tuneforge.tune(chats, task="causal-lm", base=str(llama_dir), method="full",
                           epochs=1, **FAST)  # fmt: skip
    assert model.config.task == "chat"


def test_plain_text_trains_with_task_chat(llama_dir, tmp_path):
    plain = tmp_path / "plain.jsonl"
    plain.write_text("".join(json.dumps({"text": f"{q} {a}"}) + "\n" for q, a in PAIRS))
    model = tuneforge.tune(plain, task="chat", base=str(llama_dir), method="full", epochs=1,
                           **FAST)  # fmt: skip
    assert model.config.task == "chat" and model.config.data["format"] == "text"
    result = model.evaluate(plain)
    assert result.exact_match is None and result.tokens > 0  # no assistant turn to answer
    assert model.task.prediction_columns(model, ["Say a fruit."])["generated"][0] is not None


class Killed(Exception):
    pass


def test_a_chat_run_resumes_after_a_kill(chats, llama_dir, tmp_path):
    base = dict(epochs=3, lr=3e-3, checkpoint_every=3)
    reference = chat(chats, llama_dir, "full", **base)

    def kill_at_step_5(state):
        if state.step == 5:
            raise Killed

    out = tmp_path / "run"
    with pytest.raises(Killed):
        chat(chats, llama_dir, "full", out=out, on_step=kill_at_step_5, **base)
    assert list((tmp_path / "run.ckpt").rglob("checkpoint.pt"))
    resumed = chat(chats, llama_dir, "full", out=out, resume=True, **base)
    ids = torch.tensor([[5, 6, 7, 8]])
    torch.testing.assert_close(
        resumed.runtime.classifier.encoder(input_ids=ids).logits,
        reference.runtime.classifier.encoder(input_ids=ids).logits,
        atol=1e-4,
        rtol=0,
    )


def test_the_generate_verb_streams_a_memorized_answer(full_run):
    from typer.testing import CliRunner

    from tuneforge.cli.app import _register, app

    _register()
    _, out = full_run
    runner = CliRunner()
    found = runner.invoke(app, ["generate", str(out), PAIRS[1][0], "--max-new-tokens", "8"])
    assert found.exit_code == 0, found.output
    assert found.output.strip() == PAIRS[1][1]
    sampled = ["generate", str(out), PAIRS[1][0], "--temperature", "0.8", "--seed", "3",
               "--top-p", "0.9", "--top-k", "5", "--stop", "."]  # fmt: skip
    first, again = runner.invoke(app, sampled), runner.invoke(app, sampled)
    assert first.exit_code == 0 and first.output == again.output  # seeded: reproducible
    assert "." not in first.output  # the stop string ends (and is trimmed from) the text
    int8 = runner.invoke(app, ["generate", str(out), PAIRS[1][0], "--precision", "int8"])
    assert int8.exit_code == 0, int8.output
    bad = runner.invoke(app, ["generate", str(out), PAIRS[1][0], "--precision", "fp8"])
    assert bad.exit_code != 0 and "precision" in str(bad.exception or bad.output)


def test_the_chat_task_defaults_to_small_batches_unless_told(chats, llama_dir):
    from tuneforge.config import TrainConfig

    quick = dict(epochs=0.5, progress=False, early_stopping=0)
    model = tuneforge.tune(chats, task="chat", base=str(llama_dir), method="full", **quick)
    assert model.config.train_config["batch_size"] == 8  # the task's, not the classifier's 32
    assert model.config.train_config["max_length"] == 512
    told = tuneforge.tune(chats, task="chat", base=str(llama_dir), method="full", batch_size=4,
                          config=TrainConfig.build(max_length=64), **quick)  # fmt: skip
    assert told.config.train_config["batch_size"] == 4
    assert told.config.train_config["max_length"] == 64
