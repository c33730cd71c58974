"""Chat data: every format, the loss on exactly the assistant turns and their end-of-turn tokens
(with pad == EOS, the classic bug setting), and errors that name the line and the fix."""

from __future__ import annotations

import json

import pytest
from transformers import PreTrainedTokenizerFast

from chat_fakes import CHATML, chatml_tokenizer
from tuneforge.errors import ConfigError, DataError
from tuneforge.tasks.chat_data import IGNORE, chat_format, load_chats, tokenize_chats

MULTI_TURN = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris."},
    {"role": "user", "content": "And of Italy?"},
    {"role": "assistant", "content": "Rome is the capital of Italy."},
]


@pytest.fixture(scope="module")
def tokenizer():
    return chatml_tokenizer()


def jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def learned_runs(tokenizer, row) -> list[str]:
    """The loss-carrying tokens, decoded run by run (contiguous stretches of labels)."""
    runs, current = [], []
    for token, label in zip(row["input_ids"], row["labels"], strict=True):
        if label != IGNORE:
            assert label == token
            current.append(token)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return [tokenizer.decode(run, skip_special_tokens=False) for run in runs]


# ---- formats ------------------------------------------------------------------------------------
FORMATS = [
    ("messages", {"messages": MULTI_TURN[1:3]}, MULTI_TURN[1:3]),
    (
        "alpaca",
        {"instruction": "Translate into French.", "input": "hello", "output": "Bonjour."},
        [
            {"role": "user", "content": "Translate into French.\n\nhello"},
            {"role": "assistant", "content": "Bonjour."},
        ],
    ),
    (
        "alpaca",
        {"instruction": "Say hello in French.", "input": "", "output": "Bonjour."},
        [
            {"role": "user", "content": "Say hello in French."},
            {"role": "assistant", "content": "Bonjour."},
        ],
    ),
    (
        "prompt-completion",
        {"prompt": "Capital of Italy?", "completion": "Rome."},
        [
            {"role": "user", "content": "Capital of Italy?"},
            {"role": "assistant", "content": "Rome."},
        ],
    ),
    (
        "text",
        {"text": "Paris is the capital.", "id": 7},
        [{"role": "text", "content": "Paris is the capital."}],
    ),
]


@pytest.mark.parametrize("fmt,row,messages", FORMATS)
def test_every_format_is_detected_and_normalised(tmp_path, fmt, row, messages):
    path = jsonl(tmp_path / "train.jsonl", [row, row])
    assert chat_format(path) == fmt
    ds = load_chats(path)
    assert ds.format == fmt and len(ds) == 2 and ds.lines == [1, 2]
    assert ds.conversations[0] == messages
    assert ds.source == str(path)


def test_a_json_list_is_read_with_item_numbers(tmp_path):
    path = tmp_path / "train.json"
    path.write_text(json.dumps([{"prompt": "a", "completion": "b"}] * 3), encoding="utf-8")
    assert chat_format(path) == "prompt-completion"
    ds = load_chats(path)
    assert len(ds) == 3 and ds.unit == "item" and ds.where(2) == f"{path}, item 3"


@pytest.mark.parametrize(
    "row",
    [
        {"text": "great film", "label": "pos"},
        {"text": "Mary lives here", "spans": []},
        {"tokens": ["Mary"], "tags": ["B-PER"]},
        {"question": "why?"},
    ],
)
def test_other_data_is_not_chat_data(tmp_path, row):
    assert chat_format(jsonl(tmp_path / "data.jsonl", [row])) is None


def test_a_csv_is_not_chat_data(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("text\nhello\n", encoding="utf-8")
    assert chat_format(path) is None


def test_without_target_a_conversation_may_end_with_the_user(tmp_path):
    path = jsonl(tmp_path / "ask.jsonl", [{"messages": MULTI_TURN[:4]}])
    assert load_chats(path, require_target=False).conversations == [MULTI_TURN[:4]]
    path = jsonl(tmp_path / "ask.jsonl", [{"prompt": "Hi"}])
    ds = load_chats(path, require_target=False)
    assert ds.conversations == [[{"role": "user", "content": "Hi"}]]
    with pytest.raises(DataError, match="line 1: 'completion' is missing"):
        load_chats(path)


# ---- loss ---------------------------------------------------------------------------------------
def test_loss_is_on_exactly_the_assistant_turns_and_their_end_of_turn(tmp_path, tokenizer):
    ds = load_chats(jsonl(tmp_path / "train.jsonl", [{"messages": MULTI_TURN}]))
    (row,) = tokenize_chats(tokenizer, ds, max_length=256)
    assert tokenizer.pad_token_id == tokenizer.eos_token_id  # the classic bug setting
    assert learned_runs(tokenizer, row) == [
        "Paris.<|im_end|>",
        "Rome is the capital of Italy.<|im_end|>",
    ]
    # the input is exactly what the template renders, and the last end-of-turn carries loss
    rendered = tokenizer.apply_chat_template(MULTI_TURN, tokenize=False)
    assert tokenizer.decode(row["input_ids"], skip_special_tokens=False) == rendered
    end = row["input_ids"].index(tokenizer.eos_token_id, len(row["input_ids"]) - 3)
    assert row["labels"][end] == tokenizer.eos_token_id


def test_the_default_system_turn_of_the_template_carries_no_loss(tmp_path, tokenizer):
    ds = load_chats(jsonl(tmp_path / "train.jsonl", [{"prompt": "Hi", "completion": "Bonjour."}]))
    (row,) = tokenize_chats(tokenizer, ds, max_length=256)
    assert "SmolLM" in tokenizer.decode(row["input_ids"])
    assert learned_runs(tokenizer, row) == ["Bonjour.<|im_end|>"]


def test_loss_on_all_covers_every_token(tmp_path, tokenizer):
    ds = load_chats(jsonl(tmp_path / "train.jsonl", [{"messages": MULTI_TURN}]))
    (row,) = tokenize_chats(tokenizer, ds, max_length=256, loss_on="all")
    assert row["labels"] == row["input_ids"]


def test_loss_on_text_joins_the_turns_without_template_and_ends_with_eos(tmp_path, tokenizer):
    rows = [{"prompt": "Capital of Italy? ", "completion": "Rome."}]
    ds = load_chats(jsonl(tmp_path / "train.jsonl", rows))
    (row,) = tokenize_chats(tokenizer, ds, max_length=256, loss_on="text")
    assert row["labels"] == row["input_ids"]
    assert tokenizer.decode(row["input_ids"]) == "Capital of Italy? Rome.<|im_end|>"


def test_plain_text_rows_are_the_text_plus_eos(tmp_path, tokenizer):
    ds = load_chats(jsonl(tmp_path / "corpus.jsonl", [{"text": "Paris is the capital."}]))
    (row,) = tokenize_chats(tokenizer, ds, max_length=256)
    assert tokenizer.decode(row["input_ids"]) == "Paris is the capital.<|im_end|>"
    assert row["labels"] == row["input_ids"]


def test_a_template_without_end_of_turn_token_gets_a_learned_eos(tmp_path, tokenizer):
    plain = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer.backend_tokenizer, eos_token="<|im_end|>"
    )
    plain.chat_template = (
        "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ 'assistant:' }}{% endif %}"
    )
    ds = load_chats(jsonl(tmp_path / "train.jsonl", [{"messages": MULTI_TURN}]))
    (row,) = tokenize_chats(plain, ds, max_length=256)
    assert learned_runs(plain, row) == [" Paris.", " Rome is the capital of Italy.<|im_end|>"]


def test_a_template_that_rewrites_earlier_turns_is_an_error(tmp_path, tokenizer):
    forgetful = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer.backend_tokenizer, eos_token="<|im_end|>"
    )
    # like templates that drop the reasoning of earlier answers: a turn changes once others follow
    forgetful.chat_template = CHATML.replace(
        "message['content']", "(message['content'] if loop.last else '...')"
    )
    ds = load_chats(jsonl(tmp_path / "train.jsonl", [{"messages": MULTI_TURN}]))
    with pytest.raises(DataError, match=r"line 1: the chat template writes turn 3 differently"):
        tokenize_chats(forgetful, ds, max_length=256)
    assert tokenize_chats(forgetful, ds, max_length=256, loss_on="all")


def test_a_tokenizer_without_chat_template_says_how_to_fix(tmp_path, tokenizer):
    ds = load_chats(jsonl(tmp_path / "train.jsonl", [{"messages": MULTI_TURN}]))
    bare = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer.backend_tokenizer, eos_token="<|im_end|>"
    )
    with pytest.raises(ConfigError, match=r"no chat template.*loss_on='text'"):
        tokenize_chats(bare, ds, max_length=256)
    assert tokenize_chats(bare, ds, max_length=256, loss_on="text")


def test_unknown_loss_on(tmp_path, tokenizer):
    ds = load_chats(jsonl(tmp_path / "train.jsonl", [{"messages": MULTI_TURN}]))
    with pytest.raises(ConfigError, match="assistant, all, text"):
        tokenize_chats(tokenizer, ds, max_length=256, loss_on="user")


# ---- window -------------------------------------------------------------------------------------
def window_data(tmp_path, tokenizer):
    short = {"prompt": "Hi", "completion": "Paris."}
    long = {"prompt": "What is the capital of France? " * 6, "completion": "Paris."}
    ds = load_chats(jsonl(tmp_path / "train.jsonl", [short, long, short, long]))
    lengths = [len(r["input_ids"]) for r in tokenize_chats(tokenizer, ds, max_length=10_000)]
    return ds, lengths


def test_rows_longer_than_the_window_are_an_error_with_the_max_length_to_keep_them(
    tmp_path, tokenizer
):
    ds, lengths = window_data(tmp_path, tokenizer)
    window = lengths[0] + 1
    expected = rf"2 of 4 rows are longer than --max-length {window} tokens: line 2 \({lengths[1]} "
    with pytest.raises(DataError, match=expected) as err:
        tokenize_chats(tokenizer, ds, max_length=window)
    assert "line 4" in str(err.value)
    assert f"Pass --max-length {max(lengths)} to keep them all" in str(err.value)
    assert len(tokenize_chats(tokenizer, ds, max_length=max(lengths))) == 4


def test_truncate_cuts_and_warns(tmp_path, tokenizer):
    ds, lengths = window_data(tmp_path, tokenizer)
    window = lengths[0] + 1
    rows = tokenize_chats(tokenizer, ds, max_length=window, truncate=True)
    assert [len(r["input_ids"]) for r in rows] == [lengths[0], window, lengths[0], window]
    assert all(len(r["labels"]) == len(r["input_ids"]) for r in rows)
    (warning,) = rows.warnings
    assert f"2 rows cut to {window} tokens" in warning
    assert "2 of them kept no token to learn from" in warning  # the answer came last


# ---- errors -------------------------------------------------------------------------------------
def chat(*turns):
    return {"messages": [{"role": r, "content": c} for r, c in turns]}


GOOD = chat(("user", "Hi"), ("assistant", "Hello."))
ERRORS = [
    ('{"messages": [', r"line 2: not valid JSON"),
    (
        chat(("user", "Hi"), ("bot", "Hello.")),
        r"line 2, message 2: unknown role 'bot' \(allowed: "
        r"system, user, assistant\)",
    ),
    (chat(("human", "Hi"), ("gpt", "Hello.")), r"line 2, message 1: .*write 'user' for 'human'"),
    (chat(("user", "Hi"), ("tool", "42")), r"unknown role 'tool'.*Tool turns .* not supported"),
    (chat(("user", "Hi"), ("assistant", "  ")), r"line 2, message 2: empty assistant turn"),
    (
        chat(("user", "Hi"), ("assistant", "Hello."), ("user", "Bye")),
        r"line 2: the conversation ends with a 'user' turn",
    ),
    (chat(("system", "Be brief."), ("assistant", "Hello.")), r"line 2: .*opens with the assistant"),
    ({"messages": []}, r"line 2: 'messages' is empty"),
    (
        {"messages": [{"role": "user"}]},
        r"line 2, message 1: each message needs 'role' and 'content'",
    ),
    (
        {"messages": [{"role": "user", "content": [{"type": "text"}]}]},
        r"'content' must be a string",
    ),
    (
        {"prompt": "Hi", "completion": "Hello."},
        r"line 2: a 'prompt-completion' row, but the file "
        r"starts with 'messages' rows \(line 1\)",
    ),
    ({"id": 3}, r"line 2: missing keys; .* need 'messages'"),
]


@pytest.mark.parametrize("bad,message", ERRORS)
def test_bad_rows_name_the_line_and_the_fix(tmp_path, bad, message):
    path = tmp_path / "train.jsonl"
    bad_line = bad if isinstance(bad, str) else json.dumps(bad)
    path.write_text(json.dumps(GOOD) + "\n" + bad_line + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=message) as err:
        load_chats(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    "row,message",
    [
        ({"instruction": "Say hi.", "output": ""}, r"line 1, message 2: empty assistant turn"),
        ({"instruction": "", "output": "Hi."}, r"line 1: 'instruction' is empty"),
        ({"instruction": "Say hi."}, r"line 1: 'output' is missing"),
        ({"question": "Hi"}, r"line 1: not chat data \(keys: question\)"),
        ({"text": "   "}, r"line 1: 'text' is empty"),
    ],
)
def test_bad_rows_of_the_other_formats(tmp_path, row, message):
    with pytest.raises(DataError, match=message):
        load_chats(jsonl(tmp_path / "train.jsonl", [row]))


def test_an_empty_file_or_a_missing_one(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"empty\.jsonl: no rows"):
        load_chats(empty)
    with pytest.raises(DataError, match="file not found"):
        load_chats(tmp_path / "nope.jsonl")
