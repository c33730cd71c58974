"""Chat data for supervised fine-tuning of causal LMs: messages, Alpaca, prompt/completion, text.

Every format becomes a `ChatDataset` of conversations (lists of `{"role", "content"}`); plain
`text` rows become one pseudo-message of role "text". `tokenize_chats` renders conversations with
the tokenizer's own chat template and builds `input_ids` and `labels` (-100 where no loss): by
default the loss falls on what the model must generate, each assistant turn and the tokens that
close it (`<|im_end|>`), so the model learns to stop even where pad == EOS.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from tuneforge.data.dataset import LABEL_NAMES
from tuneforge.errors import ConfigError, DataError

JSON_SUFFIXES = (".jsonl", ".json", ".ndjson")
# "tool" turns need tool calls on the assistant side, which templates render very differently
ROLES = ("system", "user", "assistant")
SHAREGPT_ROLES = {"human": "user", "gpt": "assistant"}
LOSS_ON = ("assistant", "all", "text")
IGNORE = -100  # the label PyTorch's cross-entropy skips
# keys that make a `text` row another task's data (classification labels, token tags)
NOT_CHAT_KEYS = {*LABEL_NAMES, "spans", "tokens", "label_text"}
FORMAT_KEYS = {
    "messages": "'messages' [{role, content}, ...]",
    "alpaca": "'instruction' and 'output' (and optional 'input')",
    "prompt-completion": "'prompt' and 'completion'",
    "text": "'text'",
}


@dataclass
class ChatDataset:
    """Conversations as messages; `lines` hold each row's 1-based line (item, for a JSON list)."""

    conversations: list[list[dict[str, str]]]
    format: str  # messages, alpaca, prompt-completion or text
    source: str = "<memory>"
    lines: list[int] = field(default_factory=list)
    unit: str = "line"  # what `lines` count: JSONL lines or items of a JSON list
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.lines:
            self.lines = list(range(1, len(self.conversations) + 1))

    def __len__(self) -> int:
        return len(self.conversations)

    def where(self, index: int) -> str:
        return f"{self.source}, {self.unit} {self.lines[index]}"

    def subset(self, indices: list[int]) -> ChatDataset:
        return ChatDataset(
            [self.conversations[i] for i in indices],
            self.format,
            self.source,
            [self.lines[i] for i in indices],
            self.unit,
        )


class TokenizedChats(list):
    """The tokenized rows (dicts of `input_ids`, `labels`), plus what was cut, in `warnings`."""

    def __init__(self, rows=(), warnings: list[str] | None = None):
        super().__init__(rows)
        self.warnings = warnings or []


# ---- format detection ---------------------------------------------------------------------------
def chat_format(path: str | Path) -> str | None:
    """'messages', 'alpaca', 'prompt-completion' or 'text' from the first row, else None."""
    path = Path(path)
    if path.suffix.lower() not in JSON_SUFFIXES:
        return None
    try:
        first = next(json_rows(path), None)
    except (DataError, OSError):
        return None
    return None if first is None else _row_format(first[1])


def _row_format(row) -> str | None:
    if not isinstance(row, dict):
        return None
    if isinstance(row.get("messages"), list):
        return "messages"
    if "instruction" in row:  # 'output' and 'completion' may be missing in data to predict on
        return "alpaca"
    if "prompt" in row:
        return "prompt-completion"
    if isinstance(row.get("text"), str) and not NOT_CHAT_KEYS & set(row):
        return "text"
    return None


def json_rows(path: Path):
    """(number, object) per row of a JSONL file, or per item of a file holding one JSON list."""
    with path.open(encoding="utf-8") as f:
        text = f.read()
    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except ValueError as exc:
            raise DataError(f"{path}: not valid JSON ({exc}).") from None
        yield from enumerate(items, start=1)
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except ValueError as exc:
            raise DataError(
                f"{path}, line {number}: not valid JSON ({exc}). Put one JSON object per line."
            ) from None


# ---- reading ------------------------------------------------------------------------------------
def load_chats(path: str | Path, require_target: bool = True) -> ChatDataset:
    """Read chat data in any supported format, every row checked; `require_target` (training)
    wants each conversation to end with an assistant turn, the text to learn."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found. Check the path (cwd: {Path.cwd()}).")
    unit = "item" if path.suffix.lower() == ".json" and _is_json_list(path) else "line"
    conversations, lines, fmt = [], [], None
    for number, row in json_rows(path):
        where = f"{path}, {unit} {number}"
        if not isinstance(row, dict):
            raise DataError(f"{where}: each row must be a JSON object.")
        found = _row_format(row)
        if fmt is None:
            fmt = found or _unknown_format(where, row)
        elif found != fmt:
            raise DataError(_format_mismatch(where, fmt, found, lines[0], unit))
        conversations.append(_normalise(where, fmt, row, require_target))
        lines.append(number)
    if not conversations:
        raise DataError(f"{path}: no rows. Put one JSON object per line, e.g. {_EXAMPLE}.")
    return ChatDataset(conversations, fmt, str(path), lines, unit)


_EXAMPLE = (
    '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": ...}]}'
)


def _is_json_list(path: Path) -> bool:
    with path.open(encoding="utf-8") as f:
        return f.read(4096).lstrip().startswith("[")


def _unknown_format(where: str, row: dict) -> str:
    keys = ", ".join(sorted(row)) or "none"
    formats = "; ".join(FORMAT_KEYS.values())
    raise DataError(f"{where}: not chat data (keys: {keys}). Give one of: {formats}.")


def _format_mismatch(where, fmt, found, first_line, unit) -> str:
    if found is None:
        return f"{where}: missing keys; this file's rows (format '{fmt}') need {FORMAT_KEYS[fmt]}."
    return (
        f"{where}: a '{found}' row, but the file starts with '{fmt}' rows ({unit} {first_line}). "
        "Use one format per file (convert the rows, or split the file)."
    )


def _normalise(where, fmt, row, require_target) -> list[dict[str, str]]:
    if fmt == "text":
        return [{"role": "text", "content": _string(where, row, "text", allow_empty=False)}]
    if fmt == "alpaca":
        prompt = _string(where, row, "instruction", allow_empty=False)
        extra = _string(where, row, "input") if row.get("input") is not None else ""
        user = f"{prompt}\n\n{extra}" if extra.strip() else prompt
        messages = [{"role": "user", "content": user}]
        answer = row.get("output")
    elif fmt == "prompt-completion":
        messages = [{"role": "user", "content": _string(where, row, "prompt")}]
        answer = row.get("completion")
    else:
        messages = [_message(where, i, m) for i, m in enumerate(row["messages"], start=1)]
        answer = None  # the assistant turns are among the messages
    if fmt != "messages" and (answer is not None or require_target):
        key = "output" if fmt == "alpaca" else "completion"
        messages.append({"role": "assistant", "content": _string(where, row, key)})
    _check_turns(where, messages, require_target)
    return messages


def _string(where: str, row: dict, key: str, allow_empty: bool = True) -> str:
    value = row.get(key)
    if value is None:
        raise DataError(f"{where}: '{key}' is missing. Add it or drop the row.")
    if not isinstance(value, str):
        raise DataError(f"{where}: '{key}' must be a string (got {type(value).__name__}).")
    if not allow_empty and not value.strip():
        raise DataError(f"{where}: '{key}' is empty. Fill it in or drop the row.")
    return value


def _message(where: str, number: int, message) -> dict[str, str]:
    at = f"{where}, message {number}"
    if not isinstance(message, dict) or "role" not in message or "content" not in message:
        raise DataError(f"{at}: each message needs 'role' and 'content'.")
    role = message["role"]
    if role not in ROLES:
        hint = ""
        if isinstance(role, str) and role in SHAREGPT_ROLES:
            hint = f" It looks like ShareGPT: write '{SHAREGPT_ROLES[role]}' for '{role}'."
        elif role == "tool":
            hint = " Tool turns (and tool calls) are not supported yet."
        raise DataError(f"{at}: unknown role '{role}' (allowed: {', '.join(ROLES)}).{hint}")
    if not isinstance(message["content"], str):
        raise DataError(f"{at}: 'content' must be a string (text only; no parts or images).")
    return {"role": role, "content": message["content"]}


def _check_turns(where: str, messages: list[dict[str, str]], require_target: bool) -> None:
    if not messages:
        raise DataError(f"{where}: 'messages' is empty. Give the turns, ending with the assistant.")
    for number, m in enumerate(messages, start=1):
        if m["role"] == "assistant" and not m["content"].strip():
            raise DataError(
                f"{where}, message {number}: empty assistant turn. Write the answer or drop "
                "the row (an empty answer teaches the model to say nothing)."
            )
    first = next((m["role"] for m in messages if m["role"] != "system"), None)
    if first == "assistant":
        raise DataError(
            f"{where}: the conversation opens with the assistant. Put a user turn first."
        )
    if require_target and messages[-1]["role"] != "assistant":
        raise DataError(
            f"{where}: the conversation ends with a '{messages[-1]['role']}' turn, not the "
            "assistant's. End it with the assistant answer to learn, or drop the last turn."
        )


# ---- tokenizing ---------------------------------------------------------------------------------
def tokenize_chats(
    tokenizer, ds: ChatDataset, max_length: int, loss_on: str = "assistant", truncate: bool = False
) -> TokenizedChats:
    """`input_ids` and `labels` per row (labels not shifted; -100 = no loss). `loss_on`:
    'assistant' (each assistant turn and its end-of-turn tokens), 'all' (every token of the
    templated conversation) or 'text' (no template: the turns' texts joined, + EOS, loss on all).
    Rows over `max_length` tokens raise a DataError, unless `truncate` cuts them (with a warning).
    """
    if loss_on not in LOSS_ON:
        raise ConfigError(f"loss_on '{loss_on}': use one of {', '.join(LOSS_ON)}.")
    if ds.format == "text" or loss_on == "text":
        rows = [_text_row(tokenizer, ds, conv) for conv in ds.conversations]
    else:
        _check_tokenizer(tokenizer)
        rows = [_chat_row(tokenizer, ds, i, loss_on) for i in range(len(ds))]
    return _fit_window(ds, rows, max_length, truncate)


def _check_tokenizer(tokenizer) -> None:
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(
            "The tokenizer has no chat template, so the turns cannot be written the way the "
            "model reads them. Use a base with one (an -Instruct/-chat model), or train on the "
            "rows as plain text with loss_on='text' (the turns joined, loss on all of it)."
        )
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(
            "Chat training needs a fast tokenizer (its character offsets locate the assistant "
            "turns); load it with AutoTokenizer.from_pretrained(..., use_fast=True)."
        )


def _text_row(tokenizer, ds: ChatDataset, conversation) -> dict[str, list[int]]:
    """Continued pre-training: the text, then EOS so the model learns where a document ends."""
    if tokenizer.eos_token_id is None:
        raise ConfigError("The tokenizer has no EOS token; set tokenizer.eos_token first.")
    joiner = "" if ds.format == "prompt-completion" else "\n\n"  # prompts carry their separator
    text = joiner.join(m["content"] for m in conversation)
    ids = list(tokenizer(text, add_special_tokens=True)["input_ids"])
    if not ids or ids[-1] != tokenizer.eos_token_id:
        ids.append(tokenizer.eos_token_id)
    return {"input_ids": ids, "labels": list(ids)}


def _chat_row(tokenizer, ds: ChatDataset, index: int, loss_on: str) -> dict[str, list[int]]:
    messages = ds.conversations[index]
    text = _render(tokenizer, messages)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(encoded["input_ids"])
    if loss_on == "all":
        return {"input_ids": ids, "labels": list(ids)}
    spans = _assistant_spans(tokenizer, ds, index, text)
    labels = [
        token if any(s < end and e > start for start, end in spans) else IGNORE
        for token, (s, e) in zip(ids, encoded["offset_mapping"], strict=True)
    ]
    closed = {*tokenizer.all_special_ids, tokenizer.eos_token_id}
    learned = [at for at, label in enumerate(labels) if label != IGNORE]
    if not learned:
        raise DataError(f"{ds.where(index)}: no assistant tokens to learn from in this row.")
    last = learned[-1]
    if messages[-1]["role"] == "assistant" and labels[last] not in closed:
        # the template closes the last turn with no special token: EOS right after the answer
        ids, labels = ids[: last + 1], labels[: last + 1]
        ids.append(tokenizer.eos_token_id)
        labels.append(tokenizer.eos_token_id)
    return {"input_ids": ids, "labels": labels}


def _render(tokenizer, messages, add_generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt
    )


def _assistant_spans(tokenizer, ds: ChatDataset, index: int, text: str) -> list[tuple[int, int]]:
    """Character spans of what the model must write: for each assistant turn, the text between
    the conversation rendered up to it with the generation prompt, and rendered through it
    (trailing whitespace, like ChatML's newline after <|im_end|>, is never generated)."""
    messages = ds.conversations[index]
    spans = []
    for turn, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = _render(tokenizer, messages[:turn], add_generation_prompt=True)
        through = _render(tokenizer, messages[: turn + 1]).rstrip()
        if not (through.startswith(before) and text.startswith(through)):
            raise DataError(
                f"{ds.where(index)}: the chat template writes turn {turn + 1} differently "
                "once later turns follow, so the assistant's text cannot be located. Use "
                "loss_on='all', or a template whose rendering only grows turn by turn."
            )
        spans.append((len(before), len(through)))
    return spans


def _fit_window(ds: ChatDataset, rows, max_length: int, truncate: bool) -> TokenizedChats:
    """Too-long rows are an error naming them and the --max-length that keeps them all; silent
    truncation would drop exactly the answers (and the end-of-turn) the model must learn."""
    long = [
        (i, len(row["input_ids"]))
        for i, row in enumerate(rows)
        if len(row["input_ids"]) > max_length
    ]
    if not long:
        return TokenizedChats(rows)
    shown = ", ".join(f"{ds.unit} {ds.lines[i]} ({n} tokens)" for i, n in long[:5])
    shown += " ..." if len(long) > 5 else ""
    longest = max(n for _, n in long)
    if not truncate:
        raise DataError(
            f"{ds.source}: {len(long)} of {len(rows)} rows are longer than --max-length "
            f"{max_length} tokens: {shown}. Pass --max-length {longest} to keep them all, or "
            "shorten those rows."
        )
    for i, _ in long:
        rows[i] = {key: values[:max_length] for key, values in rows[i].items()}
    lost = sum(all(label == IGNORE for label in rows[i]["labels"]) for i, _ in long)
    warning = f"{ds.source}: {len(long)} rows cut to {max_length} tokens ({shown})"
    if lost:
        warning += f"; {lost} of them kept no token to learn from"
    return TokenizedChats(rows, [warning])
