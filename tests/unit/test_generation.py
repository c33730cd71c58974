"""Generation on a tiny random Llama: greedy, batched == one by one, seeded sampling, stop strings,
streaming, and constraints that tame random weights (one of the choices; JSON for a schema)."""

from __future__ import annotations

import json
import math

import jsonschema
import pytest
from transformers import PreTrainedTokenizerFast

from chat_fakes import chatml_tokenizer, tiny_llama
from tuneforge.errors import ConfigError
from tuneforge.generation import GenerationOptions, generate, score_choices, stream
from tuneforge.generation.streaming import StopTrimmer

PROMPTS = [
    "The capital of France",
    "Hi",
    [{"role": "user", "content": "What is the capital of Italy?"}],
    "Translate hello into French. Bonjour and more words here",
]
SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 8},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "ok": {"type": "boolean"},
        "color": {"enum": ["red", "green", "blue"]},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 4}, "maxItems": 2},
        "where": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 6}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
    "required": ["name", "age", "ok", "color", "tags", "where"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def tok():
    return chatml_tokenizer()


@pytest.fixture(scope="module")
def model(tok):
    return tiny_llama(tok)


def greedy(n: int = 16, **extra) -> GenerationOptions:
    return GenerationOptions(max_new_tokens=n, **extra)


# ---- greedy and batching ------------------------------------------------------------------------
def test_greedy_is_deterministic_and_batched_equals_one_by_one(model, tok):
    one_by_one = [generate(model, tok, p, greedy())[0] for p in PROMPTS]
    assert generate(model, tok, PROMPTS, greedy(), batch_size=4) == one_by_one
    assert generate(model, tok, PROMPTS, greedy(), batch_size=3) == one_by_one
    assert len({g.text for g in one_by_one}) == len(PROMPTS)  # the prompts do matter
    chat = one_by_one[2]
    rendered = tok.apply_chat_template(PROMPTS[2], add_generation_prompt=True, tokenize=False)
    assert chat.prompt_tokens == len(tok.encode(rendered))


def test_max_new_tokens_ends_with_length(model, tok):
    (g,) = generate(model, tok, PROMPTS[0], greedy(5))
    assert (g.tokens, g.finish_reason, g.prompt_tokens) == (
        5,
        "length",
        len(tok.encode(PROMPTS[0])),
    )


def test_messages_need_a_chat_template(model, tok):
    bare = PreTrainedTokenizerFast(tokenizer_object=tok.backend_tokenizer, eos_token="<|im_end|>")
    with pytest.raises(ConfigError, match="no chat template"):
        generate(model, bare, PROMPTS[2], greedy())


# ---- sampling -----------------------------------------------------------------------------------
def test_sampling_with_a_seed_is_reproducible_and_differs_across_seeds(model, tok):
    def sample(seed):
        options = GenerationOptions(max_new_tokens=12, temperature=1.0, top_p=0.95, seed=seed)
        return [g.text for g in generate(model, tok, PROMPTS, options)]

    assert sample(1) == sample(1)
    assert sample(1) != sample(2)
    assert sample(1) != [g.text for g in generate(model, tok, PROMPTS, greedy(12))]


def test_top_k_1_sampling_equals_greedy(model, tok):
    options = GenerationOptions(max_new_tokens=12, temperature=1.5, top_k=1, seed=3)
    assert generate(model, tok, PROMPTS, options) == generate(model, tok, PROMPTS, greedy(12))


def test_repetition_penalty_changes_greedy_output(model, tok):
    plain = generate(model, tok, PROMPTS[1], greedy(24))[0].text
    assert generate(model, tok, PROMPTS[1], greedy(24, repetition_penalty=3.0))[0].text != plain


# ---- stop strings and streaming -----------------------------------------------------------------
def ascii_stop(text: str) -> str:
    """Two ASCII letters from the middle of `text`, as a stop string."""
    for i in range(3, len(text) - 1):
        if text[i : i + 2].isascii() and text[i : i + 2].isalpha():
            return text[i : i + 2]
    raise AssertionError(f"no ASCII letters in {text!r}")


def test_a_stop_string_cuts_the_text_and_ends_with_stop(model, tok):
    (full,) = generate(model, tok, PROMPTS[0], greedy(24))
    stop = ascii_stop(full.text)
    (cut,) = generate(model, tok, PROMPTS[0], greedy(24, stop=["never-there", stop]))
    assert cut.text == full.text[: full.text.find(stop)]
    assert cut.finish_reason == "stop"
    assert cut.tokens < full.tokens
    # in a batch, rows that stop early are padded after: those pads are not counted
    batched = generate(model, tok, [PROMPTS[0], PROMPTS[3]], greedy(24, stop=stop))
    assert batched[0] == cut


def test_stream_concatenation_equals_generate(model, tok):
    for prompt in PROMPTS[:3]:
        pieces = list(stream(model, tok, prompt, greedy(20)))
        assert len(pieces) > 1
        assert "".join(pieces) == generate(model, tok, prompt, greedy(20))[0].text
    full = generate(model, tok, PROMPTS[0], greedy(24))[0].text
    options = greedy(24, stop=ascii_stop(full))
    streamed = "".join(stream(model, tok, PROMPTS[0], options))
    assert streamed == generate(model, tok, PROMPTS[0], options)[0].text
    sampled = GenerationOptions(max_new_tokens=16, temperature=1.0, seed=5)
    assert (
        "".join(stream(model, tok, PROMPTS[1], sampled))
        == generate(model, tok, PROMPTS[1], sampled)[0].text
    )


def test_leaving_a_stream_early_stops_it(model, tok):
    pieces = stream(model, tok, PROMPTS[0], greedy(200))
    first = next(pieces)
    pieces.close()  # runs the generator's finally: cancels and joins the thread
    assert first


def test_stop_trimmer_holds_back_what_may_start_a_stop_string():
    trimmer = StopTrimmer(["END", "xy"])
    out = [trimmer.push(p) for p in ["abc E", "N", "d E", "ND tail"]]
    assert out == ["abc ", "", "ENd ", ""] and trimmer.done
    assert "".join(out) + trimmer.flush() == "abc ENd "
    trimmer = StopTrimmer(["END"])
    assert trimmer.push("no E") == "no " and trimmer.flush() == "E"


# ---- constraints --------------------------------------------------------------------------------
def test_choice_constraint_always_returns_one_of_the_choices(model, tok):
    choices = ["Paris", "Paris, France", "Rome", "Bonjour"]
    seen = set()
    for seed in range(12):
        options = GenerationOptions(choices=choices, temperature=1.5, seed=seed)
        for g in generate(model, tok, PROMPTS, options):
            assert g.text in choices and g.value == g.text and g.finish_reason == "stop"
            seen.add(g.value)
    assert len(seen) > 1  # sampling does explore the choices
    (g,) = generate(model, tok, PROMPTS[0], GenerationOptions(choices=choices))
    assert g.value in choices


def test_score_choices_ranks_whole_choices(model, tok):
    scores = score_choices(model, tok, PROMPTS[0], ["Paris", "Rome", "Paris, France"])
    assert set(scores) == {"Paris", "Rome", "Paris, France"}
    assert list(scores.values()) == sorted(scores.values(), reverse=True)
    assert sum(math.exp(v) for v in scores.values()) <= 1


def test_json_schema_output_always_parses_and_validates(model, tok):
    for seed in range(6):
        options = GenerationOptions(
            json_schema=SCHEMA, max_new_tokens=200, temperature=1.0, seed=seed
        )
        for g in generate(model, tok, PROMPTS, options):
            assert g.finish_reason == "stop", g.text
            jsonschema.validate(json.loads(g.text), SCHEMA)
            assert g.value == json.loads(g.text)
            # json.dumps's layout, what fine-tuning targets are written in
            assert g.text == json.dumps(g.value, ensure_ascii=False)
    (g,) = generate(model, tok, PROMPTS[2], GenerationOptions(json_schema=SCHEMA))
    jsonschema.validate(g.value, SCHEMA)


def test_a_schema_that_cannot_be_compiled_says_why(model, tok):
    schema = {"type": "string", "pattern": "(?<=x)a"}
    with pytest.raises(ConfigError, match="look-around"):
        generate(model, tok, "Hi", GenerationOptions(json_schema=schema))


# ---- options ------------------------------------------------------------------------------------
def test_options_default_to_greedy_and_round_trip():
    assert not GenerationOptions().do_sample
    options = GenerationOptions.build(temperature=0.7, top_p=0.9, stop="###", seed=None)
    assert options.do_sample and options.stop == ["###"] and options.seed is None
    assert GenerationOptions.from_yaml(options.to_yaml()) == options
    assert GenerationOptions.from_dict(options.to_dict()) == options


@pytest.mark.parametrize(
    "values,message",
    [
        ({"temperature": -1}, r"'temperature': Input should be greater than or equal to 0"),
        ({"top_p": 0}, r"'top_p': Input should be greater than 0 \(got 0\)"),
        ({"top_k": -1}, r"'top_k': Input should be greater than or equal to 0"),
        ({"max_new_tokens": 0}, r"'max_new_tokens': Input should be greater than or equal to 1"),
        ({"repetition_penalty": 0}, r"'repetition_penalty': Input should be greater than 0"),
        ({"stop": ["ok", ""]}, r"'stop': stop strings must be non-empty"),
        ({"choices": ["a", "b", "a"]}, r"choices must be distinct; repeated: \['a'\]"),
        ({"choices": []}, r"choices must be a non-empty list"),
        ({"json_schema": {"type": "strin"}}, r"json_schema is not a valid JSON Schema"),
        ({"choices": ["a"], "json_schema": {}}, r"either choices or json_schema, not both"),
        ({"temprature": 1}, r"'temprature': Extra inputs are not permitted"),
    ],
)
def test_bad_options_say_what_is_wrong(values, message):
    with pytest.raises(ConfigError, match=message):
        GenerationOptions.build(**values)
