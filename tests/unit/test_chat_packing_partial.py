"""Chat training without padding (packing) and on cached lower layers (`partial`): both must
give the very loss of the plain padded full pass, and train."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import tuneforge
from chat_fakes import CORPUS, chatml_tokenizer, tiny_llama
from tuneforge.tasks.chat import CausalLM, next_token_loss
from tuneforge.tasks.chat_data import IGNORE
from tuneforge.tasks.chat_packing import first_fit, pack, pack_labels, packed_batches
from tuneforge.training.batching import pad_token_batch

PAIRS = [(f"Say item {i}.", f"Item {i} is {w}.") for i, w in enumerate(
    ["red", "blue", "green", "cat", "dog", "Paris", "Rome", "seven", "apple", "tea"])]  # fmt: skip
FAST = dict(batch_size=4, early_stopping=0, progress=False, max_length=64)


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("llama") / "base"
    tok = chatml_tokenizer([*CORPUS, *(f"{q} {a}" for q, a in PAIRS)])
    lm = tiny_llama(tok)
    lm.config.num_hidden_layers = 4  # rebuilt below with four layers, so partial has a bottom
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    lm = LlamaForCausalLM(lm.config).eval()
    with torch.no_grad():
        lm.lm_head.weight.mul_(25)
    lm.save_pretrained(root)
    tok.save_pretrained(root)
    return root


@pytest.fixture(scope="module")
def chats(tmp_path_factory):
    path = tmp_path_factory.mktemp("chats") / "chats.jsonl"
    rows = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
            for q, a in PAIRS]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def lm(llama_dir):
    from transformers import AutoModelForCausalLM

    return CausalLM(AutoModelForCausalLM.from_pretrained(str(llama_dir))).eval()


def rows(n_rows=5, seed=1):
    rng = np.random.default_rng(seed)
    ids = [rng.integers(3, 60, size=rng.integers(4, 12)).tolist() for _ in range(n_rows)]
    labels = [[IGNORE] * 2 + x[2:] for x in ids]
    return ids, labels


def test_first_fit_fills_windows_and_keeps_every_row_once():
    bins = first_fit([5, 3, 7, 2, 2, 9], window=10)
    assert sorted(i for b in bins for i in b) == list(range(6))
    assert all(sum([5, 3, 7, 2, 2, 9][i] for i in b) <= 10 for b in bins)
    assert len(bins) == 3  # 28 tokens: three windows of ten
    assert first_fit([12, 1], window=10) == [[0], [1]]  # too long: a window of its own


def test_packed_batches_cover_every_row_once_and_are_deterministic():
    lengths = [int(x) for x in np.random.default_rng(0).integers(3, 30, 50)]
    found = packed_batches(lengths, window=64, windows=2, seed=3)
    assert sorted(i for b in found for i in b) == list(range(50))
    assert found == packed_batches(lengths, 64, 2, seed=3) != packed_batches(lengths, 64, 2, 4)
    assert all(len(first_fit([lengths[i] for i in b], 64)) <= 3 for b in found)


def test_a_packed_batch_gives_the_padded_loss_and_no_row_sees_another(lm):
    ids, labels = rows()
    with torch.no_grad():
        padded = pad_token_batch(ids, pad_id=0)
        width = padded["input_ids"].shape[1]
        targets = torch.tensor([x + [IGNORE] * (width - len(x)) for x in labels])
        reference = next_token_loss(lm, lm(**padded), targets)
        batch = pack(ids, window=32)
        assert batch["input_ids"].shape[0] < len(ids)  # rows really share windows
        packed = next_token_loss(lm, lm(**batch), pack_labels(labels, window=32))
        assert packed.item() == pytest.approx(reference.item(), rel=1e-5)
        changed = [ids[0], [7] * len(ids[1]), *ids[2:]]  # another row changes ...
        again = next_token_loss(lm, lm(**pack(changed, 32)), pack_labels(labels, 32))
    assert again.item() != pytest.approx(packed.item(), rel=1e-6)  # ... its own loss only:
    solo = [next_token_loss(lm, lm(**pad_token_batch([x], 0)), torch.tensor([y]), "sum")
            for x, y in zip(ids, labels, strict=True)]  # fmt: skip
    count = sum(sum(t != IGNORE for t in y[1:]) for y in labels)
    assert (sum(solo) / count).item() == pytest.approx(packed.item(), rel=1e-5)


def test_the_first_token_of_every_packed_row_is_never_a_target():
    labels = [[1, 2, 3], [4, 5], [6, 7, 8]]
    out = pack_labels(labels, window=10)
    assert sorted(out[out != IGNORE].tolist()) == [2, 3, 5, 7, 8]


def test_top_layers_on_cached_states_give_the_whole_pass(lm):
    from tuneforge.methods.partial import encoder_layers

    layers = encoder_layers(lm.encoder)
    ids, _ = rows()
    batch = pad_token_batch(ids, 0)
    with torch.no_grad():
        whole = lm(**batch)
        lower = lm.encoder(**batch, output_hidden_states=True).hidden_states[2]
        top = lm.top_layers_module(torch.nn.ModuleList(layers[2:]))
        mask = batch["attention_mask"].bool()
        found = top(lower, batch["attention_mask"])
        assert torch.allclose(found[mask], whole[mask], atol=1e-5)
        packed = pack([lower[i, : len(x)] for i, x in enumerate(ids)], window=32)
        in_windows = top(**packed)
    assert len(encoder_layers(lm.encoder)) == 4  # the body's own layers are put back
    assert set(dict(top.named_parameters())) == {  # only the top layers train
        n for n, _ in top.named_parameters() if n.startswith("layers.")
    }
    first = in_windows[0, : len(ids[first_fit([len(x) for x in ids], 32)[0][0]])]
    assert first.shape[-1] == whole.shape[-1]


def losses(model) -> list[float]:
    return [r["loss"] for r in model.log if "loss" in r]


def test_partial_trains_the_top_layers_only_and_the_model_still_generates(
    chats, llama_dir, tmp_path
):
    from transformers import AutoModelForCausalLM

    before = AutoModelForCausalLM.from_pretrained(str(llama_dir)).state_dict()
    model = tuneforge.tune(chats, task="chat", base=str(llama_dir), method="partial",
                           method_options={"top_layers": 2}, val_data=chats, epochs=25,
                           lr=1e-2, out=tmp_path / "m", **FAST)  # fmt: skip
    found = losses(model)
    assert np.mean(found[-3:]) < 0.5 * np.mean(found[:3]), found
    after = model.runtime.classifier.encoder.state_dict()
    changed = {n for n, w in before.items() if not torch.equal(w, after[n])}
    assert changed and all(n.startswith(("model.layers.2.", "model.layers.3.")) for n in changed)
    loaded = tuneforge.TunedModel.load(tmp_path / "m")
    prompt = [{"role": "user", "content": PAIRS[0][0]}]
    assert loaded.predict(prompt, max_new_tokens=6)[0].text == (
        model.predict(prompt, max_new_tokens=6)[0].text
    )


@pytest.mark.parametrize("method", ["full", "partial"])
def test_packing_trains_on_fewer_padded_tokens_and_learns(chats, llama_dir, method):
    model = tuneforge.tune(chats, task="chat", base=str(llama_dir), method=method,
                           task_options={"packing": True}, epochs=12, lr=2e-2,
                           **{**FAST, "batch_size": 1})  # fmt: skip
    found = losses(model)
    assert np.mean(found[-3:]) < 0.5 * np.mean(found[:3]), found
    assert model.config.task_config["packing"] is True
