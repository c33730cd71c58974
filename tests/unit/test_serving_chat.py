"""OpenAI-compatible generation (/v1/chat/completions, /v1/completions) on a live server with a
tiny random chat model, through the official `openai` client: answers equal local generation,
streams equal answers, usage counts, stop, length, JSON Schema, errors naming the field, auth,
batching of concurrent requests, stream admission and cancellation, metrics and masked logs."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import threading
import time

import httpx
import jsonschema
import pytest
import torch

import tuneforge
from chat_fakes import CORPUS, chatml_tokenizer, tiny_llama
from tuneforge.generation import GenerationOptions, generate
from tuneforge.serving.app import build_app
from tuneforge.serving.limits import Limits
from tuneforge.serving.logs import setup_logging
from tuneforge.serving.models import BatchSettings
from tuneforge.serving.server import load_repository
from tuneforge.serving.testing import LiveServer
from tuneforge.tasks.chat import hf_model_of

openai = pytest.importorskip("openai")

KEY = "c" * 24 + "chat"
AUTH = {"Authorization": f"Bearer {KEY}"}
ASK = [{"role": "user", "content": "What is the capital of France?"}]
SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 6},
        "n": {"type": "integer", "minimum": 0, "maximum": 99},
    },
    "required": ["city", "n"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def chat_dir(tmp_path_factory):
    """A tiny random Llama trained one epoch as a `chat` artifact (what `tuneforge serve` loads)."""
    root = tmp_path_factory.mktemp("chat")
    tok = chatml_tokenizer(CORPUS)
    tiny_llama(tok).save_pretrained(root / "base")
    tok.save_pretrained(root / "base")
    rows = [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
        for q, a in [("Say hello.", "Bonjour."), ("Capital of Italy?", "Rome.")]
    ]
    data = root / "chats.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = root / "model"
    tuneforge.tune(
        data, task="chat", base=str(root / "base"), method="full", epochs=1, batch_size=2,
        early_stopping=0, progress=False, max_length=64, val_data=data, out=out,
    )  # fmt: skip
    return out


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory, tiny_bert, tiny_data):
    out = tmp_path_factory.mktemp("clf") / "clf"
    tuneforge.tune(
        tiny_data["train"], base=str(tiny_bert), method="full", epochs=1, batch_size=8,
        early_stopping=0, progress=False, out=out,
    )  # fmt: skip
    return out


@pytest.fixture(scope="module")
def live(chat_dir, classifier_dir):
    logs = io.StringIO()
    setup_logging(level=logging.DEBUG, stream=logs)
    specs = [("chat", chat_dir), ("clf", classifier_dir)]
    repo = load_repository(specs, BatchSettings(max_batch=16, max_wait_ms=100, max_streams=2))
    app = build_app(repo, api_keys=[KEY], limits=Limits(rate_per_second=0, max_text_chars=2000))
    with LiveServer(app) as server:
        server.logs, server.repo = logs, repo
        yield server
    setup_logging()  # back to INFO on stderr for the tests after these


@pytest.fixture(scope="module")
def client(live):
    return openai.OpenAI(base_url=f"{live.url}/v1", api_key=KEY, max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def local(chat_dir):
    """The model's own LM and tokenizer: what the server's answers must equal."""
    model = tuneforge.TunedModel.load(chat_dir)
    return hf_model_of(model), model.tokenizer


def expected(local, prompt, **options):
    lm, tok = local
    return generate(lm, tok, prompt, GenerationOptions(**options))[0]


def rendered_tokens(tok, messages) -> int:
    text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return len(tok.encode(text, add_special_tokens=False))


def ascii_stop(text: str) -> str:
    """A stop string from the middle of `text` (some word piece of it)."""
    words = [w for w in re.findall(r"[A-Za-z]{2,}", text) if text.find(w) > 0]
    assert words, f"no stop string to take from {text!r}"
    return words[len(words) // 2]


# ---- answers ------------------------------------------------------------------------------------
def test_models_lists_the_chat_model(client):
    assert {"chat", "clf"} <= {m.id for m in client.models.list()}


def test_chat_completion_equals_local_generation_with_usage(client, local):
    res = client.chat.completions.create(model="chat", messages=ASK, max_tokens=12)
    want = expected(local, ASK, max_new_tokens=12)
    (choice,) = res.choices
    assert res.object == "chat.completion" and res.model == "chat"
    assert choice.message.role == "assistant" and choice.message.content == want.text
    assert choice.finish_reason == want.finish_reason
    prompt_tokens = rendered_tokens(local[1], ASK)
    assert res.usage.prompt_tokens == prompt_tokens == want.prompt_tokens
    assert res.usage.completion_tokens == want.tokens
    assert res.usage.total_tokens == prompt_tokens + want.tokens


def test_max_tokens_ends_with_length_and_counts_them(client, local):
    for tokens in (1, 7):
        res = client.chat.completions.create(
            model="chat", messages=ASK, max_completion_tokens=tokens
        )
        assert res.choices[0].finish_reason == "length"
        assert res.usage.completion_tokens == tokens
        lm, tok = local
        ids = tok.encode(
            tok.apply_chat_template(ASK, add_generation_prompt=True, tokenize=False),
            add_special_tokens=False,
        )
        with torch.no_grad():
            out = lm.generate(torch.tensor([ids]), max_new_tokens=tokens, do_sample=False)
        assert res.choices[0].message.content == tok.decode(out[0, len(ids) :])


def test_system_and_assistant_turns_use_the_chat_template(client, local):
    messages = [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "Say hello."},
        {"role": "assistant", "content": "Bonjour."},
        {"role": "user", "content": [{"type": "text", "text": "Again?"}]},
    ]
    res = client.chat.completions.create(model="chat", messages=messages, max_tokens=6)
    flat = [*messages[:3], {"role": "user", "content": "Again?"}]
    assert res.usage.prompt_tokens == rendered_tokens(local[1], flat)
    assert res.choices[0].message.content == expected(local, flat, max_new_tokens=6).text


def test_completions_take_a_prompt_or_a_list(client, local):
    prompts = ["The capital of France", "Translate hello into French."]
    res = client.completions.create(model="chat", prompt=prompts, max_tokens=8)
    assert res.object == "text_completion"
    want = [expected(local, p, max_new_tokens=8) for p in prompts]
    assert [c.text for c in res.choices] == [g.text for g in want]
    assert [c.index for c in res.choices] == [0, 1]
    assert res.usage.prompt_tokens == sum(len(local[1].encode(p)) for p in prompts)
    assert res.usage.completion_tokens == sum(g.tokens for g in want)
    one = client.completions.create(model="chat", prompt=prompts[0], max_tokens=8)
    assert one.choices[0].text == want[0].text


def test_stop_strings_cut_the_text(client, local):
    full = expected(local, ASK, max_new_tokens=24).text
    stop = ascii_stop(full)
    res = client.chat.completions.create(model="chat", messages=ASK, max_tokens=24, stop=stop)
    assert res.choices[0].message.content == full[: full.find(stop)]
    assert res.choices[0].finish_reason == "stop"
    want = expected(local, ASK, max_new_tokens=24, stop=[stop, "zzzz"])
    listed = client.chat.completions.create(
        model="chat", messages=ASK, max_tokens=24, stop=[stop, "zzzz"]
    )
    assert listed.usage.completion_tokens == want.tokens < 24
    streamed = client.chat.completions.create(
        model="chat", messages=ASK, max_tokens=24, stop=stop, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in streamed) == full[: full.find(stop)]


def test_streaming_chat_role_pieces_finish_usage(client, local):
    plain = client.chat.completions.create(model="chat", messages=ASK, max_tokens=16)
    chunks = list(
        client.chat.completions.create(
            model="chat",
            messages=ASK,
            max_tokens=16,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert len([p for p in pieces if p]) > 1  # piece by piece, not one block
    assert "".join(pieces) == plain.choices[0].message.content
    finishing = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishing[-1] == plain.choices[0].finish_reason and not any(finishing[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage == plain.usage


def test_streaming_completion_and_raw_sse_ends_with_done(live, local):
    body = {"model": "chat", "prompt": "The capital of France", "max_tokens": 10, "stream": True}
    with httpx.stream("POST", f"{live.url}/v1/completions", json=body, headers=AUTH) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line]
    assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    text = "".join(c["choices"][0]["text"] for c in chunks)
    assert text == expected(local, "The capital of France", max_new_tokens=10).text
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert "usage" not in chunks[0]  # only with stream_options.include_usage


def test_json_schema_and_json_object_response_formats(client):
    fmt = {"type": "json_schema", "json_schema": {"name": "place", "schema": SCHEMA}}
    for temperature, seed in [(0, None), (1.0, 1), (1.0, 2)]:
        res = client.chat.completions.create(
            model="chat", messages=ASK, max_tokens=60, response_format=fmt,
            temperature=temperature, seed=seed,
        )  # fmt: skip
        assert res.choices[0].finish_reason == "stop"
        jsonschema.validate(json.loads(res.choices[0].message.content), SCHEMA)
    res = client.chat.completions.create(
        model="chat", messages=ASK, max_tokens=60, response_format={"type": "json_object"}
    )
    if res.choices[0].finish_reason == "stop":  # free-form JSON may run past max_tokens
        assert isinstance(json.loads(res.choices[0].message.content), dict)
    else:
        assert res.choices[0].message.content.startswith("{")


def test_sampling_with_a_seed_is_reproducible_and_n_gives_choices(client):
    def sample(seed, n=1):
        res = client.chat.completions.create(
            model="chat", messages=ASK, max_tokens=12, temperature=1.0, seed=seed, n=n
        )
        return [c.message.content for c in res.choices]

    assert sample(3) == sample(3)
    assert len({*sample(3), *sample(4), *sample(5)}) > 1
    three = sample(6, n=3)
    assert len(three) == 3 and len(set(three)) > 1


# ---- errors -------------------------------------------------------------------------------------
BAD = [
    ("/v1/chat/completions", {"messages": []}, 422, "messages"),
    ("/v1/chat/completions", {"messages": [{"role": "robot", "content": "x"}]}, 422, "role"),
    ("/v1/chat/completions", {"messages": [{"role": "user"}]}, 400, "content"),
    ("/v1/chat/completions", {"messages": ASK, "max_tokens": 0}, 422, "max_tokens"),
    ("/v1/chat/completions", {"messages": ASK, "max_tokens": 10**6}, 400, "max_tokens"),
    ("/v1/chat/completions", {"messages": ASK, "max_completion_tokens": 10**6}, 400,
     "max_completion_tokens"),
    ("/v1/chat/completions", {"messages": ASK, "temperature": 3}, 422, "temperature"),
    ("/v1/chat/completions", {"messages": ASK, "stop": ""}, 422, "stop"),
    ("/v1/chat/completions", {"messages": ASK, "n": 2, "stream": True}, 400, "'n'"),
    ("/v1/chat/completions", {"messages": ASK, "n": 100}, 422, "n"),
    ("/v1/chat/completions", {"messages": ASK, "logprobs": True}, 400, "logprobs"),
    ("/v1/chat/completions", {"messages": ASK, "presence_penalty": 1}, 400, "presence_penalty"),
    ("/v1/chat/completions", {"messages": ASK, "response_format": {"type": "json_schema"}}, 400,
     "response_format.json_schema"),
    ("/v1/chat/completions", {"messages": ASK, "response_format": {"type": "json_schema",
     "json_schema": {"schema": {"type": "bogus"}}}}, 400, "response_format.json_schema.schema"),
    ("/v1/chat/completions", {"messages": ASK, "response_format": {"type": "json_schema",
     "json_schema": {"schema": {"type": "string", "pattern": "(?<=x)a"}}}}, 400,
     "response_format.json_schema.schema"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x" * 2001}]}, 422,
     "characters"),
    ("/v1/completions", {"prompt": []}, 400, "prompt"),
    ("/v1/completions", {"prompt": [[1, 2, 3]]}, 422, "prompt"),
    ("/v1/completions", {"prompt": ["a", "b"], "stream": True}, 400, "prompt"),
    ("/v1/completions", {"prompt": "a", "echo": True}, 400, "echo"),
    ("/v1/completions", {"prompt": ["a"] * 40, "n": 8}, 413, "Too many texts"),  # 320 > 256
]  # fmt: skip


@pytest.mark.parametrize(("path", "body", "status", "field"), BAD, ids=[b[3] for b in BAD])
def test_bad_requests_name_the_field_and_the_server_answers_after(live, path, body, status, field):
    r = httpx.post(live.url + path, json={"model": "chat", **body}, headers=AUTH, timeout=30)
    assert r.status_code == status, r.text
    assert field in r.text
    ok = httpx.post(
        f"{live.url}/v1/completions", json={"model": "chat", "prompt": "Hi", "max_tokens": 2},
        headers=AUTH, timeout=30,
    )  # fmt: skip
    assert ok.status_code == 200


def test_unknown_fields_are_ignored(live):
    body = {"model": "chat", "messages": ASK, "max_tokens": 2, "metadata": {"a": 1}, "foo": 2}
    body |= {"logprobs": False, "frequency_penalty": 0, "tools": []}  # set, but harmless
    r = httpx.post(f"{live.url}/v1/chat/completions", json=body, headers=AUTH, timeout=30)
    assert r.status_code == 200, r.text


def test_errors_have_openai_bodies_the_client_shows(client, live):
    with pytest.raises(openai.NotFoundError, match="Served models"):
        client.chat.completions.create(model="nope", messages=ASK)
    with pytest.raises(openai.BadRequestError, match="window") as bad:
        client.chat.completions.create(model="chat", messages=ASK, max_tokens=10**6)
    assert bad.value.param == "max_tokens" and bad.value.type == "invalid_request_error"
    with pytest.raises(openai.UnprocessableEntityError, match="temperature") as invalid:
        client.chat.completions.create(model="chat", messages=ASK, temperature=5)
    assert invalid.value.param == "temperature"
    with pytest.raises(openai.BadRequestError, match="need a chat model"):
        client.chat.completions.create(model="clf", messages=ASK)
    with pytest.raises(openai.BadRequestError, match="need a chat model"):
        client.completions.create(model="clf", prompt="x")
    bad_key = openai.OpenAI(base_url=f"{live.url}/v1", api_key="wrong" * 4, max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad_key.chat.completions.create(model="chat", messages=ASK)
    r = httpx.post(f"{live.url}/v1/completions", json={"model": "chat", "prompt": "x"})
    assert r.status_code == 401
    assert client.completions.create(model="chat", prompt="Hi", max_tokens=2).choices


# ---- batching, admission, cancellation ----------------------------------------------------------
def counter(live, name: str) -> float:
    text = httpx.get(f"{live.url}/metrics", headers=AUTH).text
    found = re.search(rf'^{name}{{model="chat"}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def test_concurrent_requests_are_answered_and_batched(client, live, local):
    prompts = [f"Translate word {i} into French." for i in range(8)]
    calls_before = counter(live, "tuneforge_generate_calls_total")
    lm = hf_model_of(live.repo.get("chat").model)
    hf_calls, hf_generate = [], lm.generate

    def counted(*args, **kwargs):
        hf_calls.append(kwargs["input_ids"].shape[0])
        return hf_generate(*args, **kwargs)

    lm.generate = counted
    answers, barrier = {}, threading.Barrier(len(prompts))

    def ask(i):
        barrier.wait()
        res = client.completions.create(model="chat", prompt=prompts[i], max_tokens=8)
        answers[i] = res.choices[0].text

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(prompts))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        del lm.generate  # the instance attribute: back to the class's method
    assert sorted(answers) == list(range(len(prompts)))
    assert [answers[i] for i in range(8)] == [expected(local, p, max_new_tokens=8).text
                                              for p in prompts]  # fmt: skip
    calls = counter(live, "tuneforge_generate_calls_total") - calls_before
    assert 1 <= calls < len(prompts) and len(hf_calls) < len(prompts), (calls, hf_calls)
    assert max(hf_calls) > 1  # some model.generate decoded several requests at once


def test_only_requests_with_options_alike_are_batched_together(live, local):
    served = live.repo.get("chat")
    greedy = [GenerationOptions(max_new_tokens=3), GenerationOptions(max_new_tokens=5)]
    out = served._generate_batch([("Hi", greedy[0]), ("Hi", greedy[1]), ("Yo", greedy[0])])
    assert [g.tokens for g in out] == [3, 5, 3]
    # a seeded sample is the same whoever else was queued with it
    seeded = GenerationOptions(max_new_tokens=8, temperature=1.0, seed=7)
    alone = served._generate_batch([("Hi", seeded)])
    crowded = served._generate_batch(
        [("Yo", GenerationOptions(**seeded.model_dump())), ("Hi", seeded)]
    )
    assert crowded[1] == alone[0] == expected(local, "Hi", **seeded.model_dump())


def test_admission_predicts_generation_per_forward_batch_not_per_prompt():
    from tuneforge.serving.batching import MicroBatcher

    def fn(items):  # a pass costs the same for up to 8 prompts
        time.sleep(0.05)
        return list(items)

    async def expected_after_one_pass(cost_unit: int) -> list[float]:
        batcher = MicroBatcher(fn, max_wait_ms=0, cost_unit=cost_unit)
        await batcher.submit(["a"])
        try:
            return [batcher.expected_latency(n) for n in (1, 8, 9)]
        finally:
            await batcher.close()

    one, eight, nine = asyncio.run(expected_after_one_pass(1))
    assert (eight, nine) == (pytest.approx(8 * one), pytest.approx(9 * one))
    one, eight, nine = asyncio.run(expected_after_one_pass(8))
    assert (eight, nine) == (pytest.approx(one), pytest.approx(2 * one))  # 9 prompts: 2 passes
    assert 0.04 < one < 0.2


@pytest.fixture
def slow_tokens(live):
    """Each decoding step of the served LM takes 10 ms more (a forward pre-hook); yields the
    list of steps run."""
    lm = hf_model_of(live.repo.get("chat").model)
    steps = []

    def slow(module, args, kwargs):
        steps.append(1)
        time.sleep(0.01)

    handle = lm.register_forward_pre_hook(slow, with_kwargs=True)
    yield steps
    handle.remove()


def test_a_client_leaving_mid_stream_stops_the_generation(live, slow_tokens):
    body = {"model": "chat", "messages": ASK, "max_tokens": 400, "stream": True}
    with httpx.stream("POST", f"{live.url}/v1/chat/completions", json=body, headers=AUTH) as r:
        lines = r.iter_lines()
        for line in lines:
            if '"content": "' in line and '"content": ""' not in line:
                break  # a first piece of text: leave
    time.sleep(0.5)
    left_at = len(slow_tokens)
    time.sleep(0.3)
    assert len(slow_tokens) == left_at < 150  # stopped, far before 400 tokens
    ok = httpx.post(f"{live.url}/v1/chat/completions", json={**body, "stream": False,
                    "max_tokens": 3}, headers=AUTH, timeout=30)  # fmt: skip
    assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] == 3


def test_streams_beyond_the_slots_are_refused_with_503(live, slow_tokens):
    streams = live.repo.get("chat").streams
    waiting, streams.waiting = streams.waiting, 0  # no queue: refuse as soon as slots are full
    body = {"model": "chat", "prompt": "Hi", "max_tokens": 60, "stream": True}
    opened, results = threading.Event(), []

    def hold():
        with httpx.stream("POST", f"{live.url}/v1/completions", json=body, headers=AUTH) as r:
            opened.set()
            results.append(sum(1 for _ in r.iter_lines()))

    holders = [threading.Thread(target=hold) for _ in range(streams.running)]
    try:
        for t in holders:
            t.start()
        opened.wait(10)
        deadline = time.monotonic() + 5
        while not streams._semaphore.locked() and time.monotonic() < deadline:
            time.sleep(0.01)
        r = httpx.post(f"{live.url}/v1/completions", json=body, headers=AUTH)
        assert r.status_code == 503 and r.headers["retry-after"]
        for t in holders:
            t.join(30)
    finally:
        streams.waiting = waiting
    assert len(results) == streams.running and min(results) > 2  # the others were served
    assert counter(live, "tuneforge_shed_total") >= 1


# ---- metrics and logs ---------------------------------------------------------------------------
def test_metrics_count_generation(client, live):
    before = counter(live, "tuneforge_generated_tokens_total")
    client.chat.completions.create(model="chat", messages=ASK, max_tokens=4)
    list(client.chat.completions.create(model="chat", messages=ASK, max_tokens=4, stream=True))
    assert counter(live, "tuneforge_generated_tokens_total") - before >= 2
    text = httpx.get(f"{live.url}/metrics", headers=AUTH).text
    assert re.search(r'tuneforge_time_to_first_token_seconds_count\{model="chat"\} [1-9]', text)
    assert 'route="/v1/chat/completions"' in text and 'route="/v1/completions"' in text
    assert 'tuneforge_generation_requests_total{kind="chat",model="chat",stream="true"}' in text


def test_logged_prompts_are_masked(client, live):
    email = "jane.doe@example.com"
    ask = [{"role": "user", "content": f"Write to {email} please."}]
    client.chat.completions.create(model="chat", messages=ask, max_tokens=2)
    text = live.logs.getvalue()
    lines = [json.loads(x) for x in text.splitlines() if x.strip()]
    assert any(r["message"] == "generation" and r.get("kind") == "chat" for r in lines)
    assert any("[EMAIL] please" in r["message"] for r in lines)  # the debug prompt line
    assert email not in text
