"""OpenAI-compatible generation for `chat` models: `POST /v1/chat/completions`, `/v1/completions`.

A thin translation: the request becomes a prompt (messages, rendered with the model's own chat
template by `tuneforge.generation`, or a string) and `GenerationOptions`. Non-streaming requests
are batched with others of the same options (`ServedModel.generate`); `stream: true` answers
server-sent events (`data: {chunk}` ..., `data: [DONE]`) from `ServedModel.stream`.

Differences from OpenAI: temperature defaults to 0 (greedy, as everywhere in tuneforge);
`top_k` and `repetition_penalty` are accepted too. Fields tuneforge does not implement (logprobs,
tools, penalties, ...) are refused by name when set; fields nobody knows are ignored, as OpenAI
does. Errors carry OpenAI's body (`{"error": {"message", "type", "param", "code"}}`, which the
official client shows) beside the server's usual `detail`; each 400 message starts with the
quoted field it is about, which is also its `param`.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field

from tuneforge.errors import ConfigError
from tuneforge.generation import Generation, GenerationOptions
from tuneforge.serving.batching import Overloaded
from tuneforge.serving.logs import server_log
from tuneforge.serving.openapi import Error
from tuneforge.serving.protocols.common import call, clean, overloaded, served_or_404


class OpenAIErrors(APIRoute):
    """This router's errors in OpenAI's shape too, so OpenAI clients show their message."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                issues = [
                    {"loc": list(e.get("loc", [])), "msg": e.get("msg", ""), "type": e["type"]}
                    for e in exc.errors()
                ]  # as app._validation_error: no input echoed back
                where = [".".join(str(p) for p in i["loc"] if p != "body") for i in issues]
                message = "; ".join(
                    f"'{w}': {i['msg']}" for w, i in zip(where, issues, strict=True)
                )
                return _error(422, message, where[0] if where else None, {"detail": issues})
            except HTTPException as exc:
                found = re.match(r"'([^']+)'", str(exc.detail))
                param = found.group(1) if found else None
                return _error(exc.status_code, str(exc.detail), param, headers=exc.headers)

        return answer


def _error(status: int, message: str, param, extra: dict | None = None, headers=None):
    kind = "invalid_request_error" if status < 500 else "server_error"
    code = {404: "model_not_found", 503: "overloaded"}.get(status)
    body = {"detail": message, **(extra or {})}
    body["error"] = {"message": message, "type": kind, "param": param, "code": code}
    return JSONResponse(body, status_code=status, headers=headers)


router = APIRouter(tags=["openai"], route_class=OpenAIErrors)

MAX_N = 8
DEFAULT_MAX_TOKENS = 256
# Set to anything but these harmless values, the field asks for what tuneforge cannot do.
UNSUPPORTED = {
    "logprobs": "token log-probabilities",
    "top_logprobs": "token log-probabilities",
    "logit_bias": "logit biases",
    "tools": "tool calls",
    "functions": "function calls",
    "echo": "echoing the prompt",
    "suffix": "insertion (a suffix)",
    "frequency_penalty": "frequency penalties (use repetition_penalty)",
    "presence_penalty": "presence penalties (use repetition_penalty)",
    "best_of": "best_of (use n)",
}
HARMLESS = (None, False, 0, "", "none", "auto", [], {})


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    name: str | None = None
    json_schema: dict[str, Any] = Field(..., alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


StopString = Annotated[str, Field(min_length=1)]


class GenerationRequest(BaseModel):
    # extra fields are kept only to refuse the UNSUPPORTED ones by name; others are ignored
    model_config = ConfigDict(extra="allow")
    model: str
    max_tokens: int | None = Field(None, ge=1, description="Tokens generated at most.")
    temperature: float | None = Field(None, ge=0, le=2, description="0 (default) is greedy.")
    top_p: float | None = Field(None, ge=0, le=1)
    top_k: int | None = Field(None, ge=0, description="tuneforge extension; 0 = off.")
    repetition_penalty: float | None = Field(None, gt=0, le=10, description="Extension; 1 = off.")
    stop: StopString | Annotated[list[StopString], Field(max_length=16)] | None = None
    seed: int | None = None
    n: int = Field(1, ge=1, le=MAX_N, description="Choices per prompt (1 when streaming).")
    stream: bool = False
    stream_options: StreamOptions | None = None
    response_format: ResponseFormat | None = None
    user: str | None = None


class ChatCompletionRequest(GenerationRequest):
    messages: list[Message] = Field(..., min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1, description="Alias of max_tokens.")


class CompletionRequest(GenerationRequest):
    prompt: str | list[str] = Field(..., description="A prompt string, or a list of them.")


ERRORS = {
    400: {"model": Error, "description": "A field is invalid for this model (named)."},
    404: {"model": Error, "description": "No such model."},
}


@router.post("/v1/chat/completions", responses=ERRORS)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
    """The assistant's reply to a conversation (JSON, or server-sent events with stream)."""
    prompt = [_message(i, m) for i, m in enumerate(body.messages)]
    max_tokens, field = body.max_tokens, "max_tokens"
    if body.max_completion_tokens is not None:
        max_tokens, field = body.max_completion_tokens, "max_completion_tokens"
    return await _answer(request, body, "chat", [prompt], max_tokens, field)


@router.post("/v1/completions", responses=ERRORS)
async def completions(body: CompletionRequest, request: Request) -> Any:
    """The continuation of a prompt string, or of each of a list of them."""
    prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
    if not prompts:
        raise HTTPException(400, "'prompt' is an empty list: send at least one prompt.")
    if body.stream and len(prompts) > 1:
        raise HTTPException(400, "'prompt': stream=true takes one prompt, not a list.")
    return await _answer(request, body, "completion", clean(prompts), body.max_tokens, "max_tokens")


# ---- request → prompts and options ----------------------------------------------------------
def _message(i: int, m: Message) -> dict[str, str]:
    if m.content is None:
        raise HTTPException(400, f"'messages[{i}].content' is missing: send the message's text.")
    text = m.content if isinstance(m.content, str) else "\n".join(p.text for p in m.content)
    role = "system" if m.role == "developer" else m.role  # OpenAI's newer name for it
    return {"role": role, "content": clean([text])[0]}


def _refuse_unsupported(body: GenerationRequest) -> None:
    for name, value in (body.model_extra or {}).items():
        harmless = value in HARMLESS or (name == "best_of" and value == 1)
        if name in UNSUPPORTED and not harmless:
            raise HTTPException(
                400, f"'{name}' is not supported by this server ({UNSUPPORTED[name]}); omit it."
            )


def _schema(fmt: ResponseFormat | None) -> dict | None:
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return {"type": "object"}
    if fmt.json_schema is None:
        raise HTTPException(
            400, "'response_format.json_schema' is missing: send {\"schema\": {...}} with it."
        )
    return fmt.json_schema.json_schema


def _options(body: GenerationRequest, max_tokens: int) -> GenerationOptions:
    temperature = body.temperature or 0.0
    if body.top_p == 0:  # only the likeliest token: greedy
        temperature = 0.0
    try:
        return GenerationOptions.build(
            max_new_tokens=max_tokens,
            temperature=temperature,
            top_p=body.top_p or None,
            top_k=body.top_k,
            repetition_penalty=body.repetition_penalty,
            stop=body.stop,
            seed=body.seed,
            json_schema=_schema(body.response_format),
        )
    except ConfigError as exc:  # e.g. a json_schema that is no JSON Schema
        message = str(exc).replace("generation option", "field")
        message = message.replace("'json_schema'", "'response_format.json_schema.schema'")
        raise HTTPException(400, message) from None


async def _compile_schema(served, options: GenerationOptions) -> None:
    """A schema llguidance cannot decode with is the request's fault: a 400 before queueing
    (the grammar compiler is cached per tokenizer, so this is cheap after the first time)."""
    if options.json_schema is None:
        return
    import asyncio

    from tuneforge.generation.constrained import JsonSchemaConstraint, end_token_ids
    from tuneforge.tasks.chat import hf_model_of

    tokenizer = served.model.tokenizer
    eos = end_token_ids(hf_model_of(served.model), tokenizer)
    try:
        await asyncio.get_running_loop().run_in_executor(
            None, JsonSchemaConstraint, tokenizer, options.json_schema, eos
        )
    except ConfigError as exc:
        raise HTTPException(400, f"'response_format.json_schema.schema': {exc}") from None


def _window(model) -> int:
    from tuneforge.tasks.chat import hf_model_of

    config = hf_model_of(model).config
    return int(getattr(config, "max_position_embeddings", None) or 2048)


async def _budget(served, prompts: list, max_tokens: int | None, field: str, what: str) -> int:
    """max_tokens checked against the model's window (default: 256, or what the window allows)."""
    import asyncio

    from tuneforge.generation.generate import encode_prompt

    def longest_prompt() -> int:  # off the event loop: up to max_texts long texts
        return max(len(encode_prompt(served.model.tokenizer, p)) for p in prompts)

    window = _window(served.model)
    try:
        longest = await asyncio.get_running_loop().run_in_executor(None, longest_prompt)
    except ConfigError as exc:  # no chat template, an empty prompt
        raise HTTPException(400, f"'{what}': {exc}") from None
    room = window - longest
    if room < 1:
        raise HTTPException(
            400, f"'{what}' has {longest} tokens; the model's window is {window}: shorten it."
        )
    if max_tokens is None:
        return min(DEFAULT_MAX_TOKENS, room)
    if max_tokens > room:
        raise HTTPException(
            400,
            f"'{field}' is {max_tokens}, but the prompt has {longest} tokens and the model's "
            f"window is {window}: at most {room}.",
        )
    return max_tokens


def _check(request: Request, body: GenerationRequest, kind: str, texts: list[str]):
    served = served_or_404(request, body.model)
    if served.task.name != "chat":
        endpoint = "chat completions" if kind == "chat" else "completions"
        raise HTTPException(
            400,
            f"'model': {body.model} is a {served.task.name} model; {endpoint} need a chat model "
            f"(task chat). Use /v1/models/{body.model}/predict for it.",
        )
    _refuse_unsupported(body)
    if body.stream and body.n > 1:
        raise HTTPException(400, "'n' must be 1 with stream=true (one choice per stream).")
    # each of the n choices of each prompt is one generation: the texts limit counts them all
    problem = request.app.state.limits.check_texts(texts * (1 if kind == "chat" else body.n))
    if problem:
        raise HTTPException(*problem)
    return served


# ---- answers --------------------------------------------------------------------------------
async def _answer(request, body, kind: str, prompts: list, max_tokens, field: str) -> Any:
    start = time.perf_counter()
    texts = [m["content"] for m in prompts[0]] if kind == "chat" else prompts
    served = _check(request, body, kind, texts)
    what = "messages" if kind == "chat" else "prompt"
    options = _options(body, await _budget(served, prompts, max_tokens, field, what))
    await _compile_schema(served, options)
    if body.stream:
        try:
            served.streams.check()
        except Overloaded as exc:
            raise overloaded(request, body.model, exc) from None
        events = _events(request, served, body, kind, prompts[0], options, start)
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(events, media_type="text/event-stream", headers=headers)
    items = [(p, options) for p in prompts for _ in range(body.n)]
    try:
        served, generations = await call(request, body.model, "generate", items)
    except ConfigError as exc:  # the options cannot decode with this model
        raise HTTPException(400, str(exc)) from None
    _observe(request, served.name, kind, False, generations, start, prompts)
    choices = [_choice(kind, i, g) for i, g in enumerate(generations)]
    prompt_tokens = sum(g.prompt_tokens for g in generations[:: body.n])  # once per prompt
    return {
        **_head(kind, served, chunk=False),
        "choices": choices,
        "usage": _usage(prompt_tokens, sum(g.tokens for g in generations)),
    }


def _head(kind: str, served, chunk: bool, rid: str | None = None) -> dict:
    prefix = "chatcmpl" if kind == "chat" else "cmpl"
    objects = {"chat": "chat.completion", "completion": "text_completion"}
    obj = objects[kind] + (".chunk" if chunk and kind == "chat" else "")
    return {
        "id": rid or f"{prefix}-{uuid.uuid4().hex}",
        "object": obj,
        "created": int(time.time()),
        "model": served.name,
        "system_fingerprint": served.version,
    }


def _choice(kind: str, index: int, g: Generation) -> dict:
    out: dict[str, Any] = {"index": index}
    if kind == "chat":
        out["message"] = {"role": "assistant", "content": g.text}
    else:
        out["text"] = g.text
    return {**out, "logprobs": None, "finish_reason": g.finish_reason}


def _usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


async def _events(request, served, body, kind: str, prompt, options, start: float):
    """Server-sent events: the role, the text pieces, the finish_reason, usage, [DONE]."""
    head = _head(kind, served, chunk=True)
    usage_too = bool(body.stream_options and body.stream_options.include_usage)

    def event(delta: str | None, finish: str | None = None, role: bool = False) -> str:
        if kind == "chat":
            d = {"role": "assistant", "content": ""} if role else {}
            if delta:
                d["content"] = delta
            choice = {"index": 0, "delta": d, "logprobs": None, "finish_reason": finish}
        else:
            choice = {"index": 0, "text": delta or "", "logprobs": None, "finish_reason": finish}
        chunk = {**head, "choices": [choice]}
        if usage_too:
            chunk["usage"] = None
        return _sse(chunk)

    if kind == "chat":
        yield event(None, role=True)
    final: Generation | None = None
    try:
        async with served.streams.slot():
            first = True
            async for piece in served.stream(prompt, options):
                if isinstance(piece, Generation):  # the last item: the counts
                    final = piece
                    continue
                if first:
                    request.app.state.metrics.time_to_first_token.labels(served.name).observe(
                        time.perf_counter() - start
                    )
                    first = False
                yield event(piece)
    except Exception as exc:  # the status is sent already: the error is an event
        server_log.error("stream of %s failed: %r", served.name, exc, exc_info=exc)
        yield _sse({"error": {"message": "Internal error (logged on the server).",
                              "type": "server_error"}})  # fmt: skip
        yield "data: [DONE]\n\n"
        return
    if final is None:  # cannot happen: the stream ends with its Generation
        final = Generation("", 0, 0, "stop")
    _observe(request, served.name, kind, True, [final], start, [prompt])
    yield event(None, finish=final.finish_reason)
    if usage_too:
        yield _sse({**head, "choices": [], "usage": _usage(final.prompt_tokens, final.tokens)})
    yield "data: [DONE]\n\n"


def _sse(data: dict) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


def _observe(request, name, kind, streamed, generations, start, prompts) -> None:
    m = request.app.state.metrics
    m.generation_requests.labels(name, kind, str(streamed).lower()).inc()
    m.generated_tokens.labels(name).inc(sum(g.tokens for g in generations))
    m.prompt_tokens.labels(name).inc(sum(g.prompt_tokens for g in generations))
    fields = {
        "model": name,
        "kind": kind,
        "stream": streamed,
        "choices": len(generations),
        "completion_tokens": sum(g.tokens for g in generations),
        "finish_reasons": sorted({g.finish_reason for g in generations}),
        "ms": round((time.perf_counter() - start) * 1000, 1),
    }
    server_log.info("generation", extra={"json_fields": fields})
    # the prompt only at debug level, and (like every serving log line) with personal data masked
    server_log.debug("prompt: %s", _excerpt(prompts[0]), extra={"json_fields": {"model": name}})


def _excerpt(prompt, limit: int = 200) -> str:
    text = prompt if isinstance(prompt, str) else prompt[-1]["content"]
    return text[:limit]
