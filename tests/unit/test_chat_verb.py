"""`tuneforge chat` on a tiny random Llama: each reply is the greedy generation for the whole
conversation so far; /reset, --system, the window (oldest exchanges dropped), EOF and Ctrl-C."""

from __future__ import annotations

import builtins

import pytest
from typer.testing import CliRunner

import tuneforge
from chat_fakes import tiny_chat_run
from tuneforge.cli.app import _register, app
from tuneforge.errors import ConfigError

PAIRS = [("What is the capital of France?", "Paris."), ("Say a colour.", "Blue.")] * 2
N = 4  # tokens per reply: a random model rarely ends a reply by itself
Q1, Q2 = "What is the capital of France?", "Say a colour."


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    _register()
    return tiny_chat_run(tmp_path_factory.mktemp("chatverb"), PAIRS)


@pytest.fixture(scope="module")
def expected(run_dir):
    """The greedy reply to a conversation, as `generate` writes it."""
    model = tuneforge.TunedModel.load(run_dir)

    def reply(*turns: tuple[str, str], note: bool = True) -> str:
        messages = [{"role": role, "content": text} for role, text in turns]
        found = model.predict(messages, max_new_tokens=N)[0]
        cut = note and found.finish_reason == "length"
        return found.text + (f"\n(cut at --max-new-tokens {N})" if cut else "")

    return reply


def chat(run_dir, lines: list[str], *options: str):
    found = CliRunner().invoke(
        app, ["chat", str(run_dir), "--max-new-tokens", str(N), *options], input="\n".join(lines)
    )
    assert found.exit_code == 0, (found.output, found.exception)
    return found.output


def replies(output: str) -> list[str]:
    """What followed each '> ' prompt, notes included, one entry per message sent."""
    return [part.rstrip("\n") for part in output.split("> ")[1:] if part.strip()]


def test_replies_see_the_whole_conversation(run_dir, expected):
    out = chat(run_dir, [Q1, Q2, "/exit"])
    first = expected(("user", Q1), note=False)
    second = expected(("user", Q1), ("assistant", first), ("user", Q2))
    assert replies(out) == [expected(("user", Q1)), second]
    assert "(cut at --max-new-tokens 4)" in out  # a random model does not stop by itself
    assert out.startswith(f"Chatting with {run_dir} (512-token window)")


def test_reset_and_system_prompt(run_dir, expected):
    out = chat(run_dir, [Q1, "/reset", Q2, "/nope", "/exit"], "--system", "Be brief.")
    assert replies(out) == [
        expected(("system", "Be brief."), ("user", Q1)),
        "(conversation cleared)",
        expected(("system", "Be brief."), ("user", Q2)),
        "Unknown command /nope: /reset clears the conversation, /exit leaves (so do Ctrl-D and "
        "Ctrl-C).",
    ]


def test_the_oldest_exchange_is_dropped_to_fit_the_window(run_dir, expected):
    from tuneforge.generation.generate import encode_prompt

    tok = tuneforge.TunedModel.load(run_dir).tokenizer
    first = expected(("user", Q1), note=False)
    size = lambda *turns: len(encode_prompt(tok, [{"role": r, "content": c} for r, c in turns]))  # noqa: E731
    # room for either message alone and its reply, not for the exchange before the second
    budget = max(size(("user", Q1)), size(("user", Q2))) + 2
    assert size(("user", Q1), ("assistant", first), ("user", Q2)) > budget
    out = chat(run_dir, [Q1, Q2], "--context", str(budget + N))
    assert replies(out) == [
        expected(("user", Q1)),
        "(dropped the oldest exchange to fit the window)\n" + expected(("user", Q2)),
    ]  # the second is answered as if the first was never asked
    too_long = replies(chat(run_dir, [" ".join([Q1] * 20), Q2], "--context", str(budget + N)))
    assert "that message is too long" in too_long[0]
    assert too_long[1] == expected(("user", Q2))  # the long one was not kept


def test_eof_and_ctrl_c_leave_cleanly(run_dir, expected, monkeypatch):
    out = chat(run_dir, [Q1])  # no /exit: the input just ends
    assert replies(out) == [expected(("user", Q1))]

    def interrupted(prompt=""):
        raise KeyboardInterrupt

    monkeypatch.setattr(builtins, "input", interrupted)
    assert replies(chat(run_dir, [])) == []


def test_ctrl_c_during_a_reply_stops_only_that_reply(run_dir, expected, monkeypatch):
    from tuneforge import generation

    real_stream = generation.stream
    calls = []

    def stream(*args, **kwargs):
        calls.append(1)
        for piece in real_stream(*args, **kwargs):
            yield piece
            if len(calls) == 1:  # Ctrl-C after the first reply's first piece
                raise KeyboardInterrupt

    monkeypatch.setattr(generation, "stream", stream)
    out = chat(run_dir, [Q1, Q2, "/exit"])
    first, second = replies(out)
    assert first.endswith(" (stopped)")
    partial = first[: -len(" (stopped)")]
    assert partial and expected(("user", Q1), note=False).startswith(partial)
    assert second == expected(("user", Q1), ("assistant", partial), ("user", Q2))


def test_a_non_chat_model_or_no_room_is_refused(run_dir, tiny_model_dir):
    found = CliRunner().invoke(app, ["chat", str(tiny_model_dir)], input="hi\n")
    assert isinstance(found.exception, ConfigError) and "needs a chat model" in str(found.exception)
    found = CliRunner().invoke(app, ["chat", str(run_dir), "--max-new-tokens", "600"], input="")
    assert isinstance(found.exception, ConfigError) and "no room" in str(found.exception)
