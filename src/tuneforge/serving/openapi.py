"""The responses FastAPI's OpenAPI generator cannot see, added to the schema so that it tells
the truth and a client generated from it handles every answer the server gives.

FastAPI documents what route functions return. The middlewares answer before any route runs
(auth 401, rate limit 429, body size 413, admission 503); Starlette's router answers 404/405
when a path parameter holding a '/' routes elsewhere; FastAPI answers 400 to a body it cannot
parse; the app's handlers reshape 422 and answer 500. `declare_responses` adds these to every
operation by the rules the middlewares themselves follow (`OPEN_PATHS` skip auth, rate limit
and admission; the body limit applies everywhere). What a route declares itself wins: the v2
protocol's `{"error": ...}` bodies, the readiness probe's 503, the reload's 403.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from tuneforge.serving.auth import OPEN_PATHS


class Error(BaseModel):
    """An error: what went wrong and what to do about it."""

    detail: str


class ValidationIssue(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


# Docstrings of these models are the schema's descriptions: written for the API's users.
class ValidationFailure(BaseModel):
    """Where and what is wrong in the request, or one message when a text breaks a limit."""

    # A list from request validation (`app._validation_error`: no input echoed back), a
    # string from a limit check (`Limits.check_texts`) or a protocol's own 422.
    detail: list[ValidationIssue] | str


_REF = "#/components/schemas/{model}"
_RETRY_AFTER = {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}


def _json(model: type[BaseModel], description: str, **headers: dict) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": _REF.format(model=model.__name__)}}},
    }
    if headers:
        response["headers"] = {name.replace("_", "-"): h for name, h in headers.items()}
    return response


# Every operation (the body limit and the error handler see every request).
EVERYWHERE = {
    "413": _json(Error, "Request too large: a body over the limit, or too many texts."),
    "500": _json(Error, "Unexpected error (logged on the server)."),
}
# Operations behind auth, rate limit and admission (all but OPEN_PATHS).
GUARDED = {
    "401": _json(
        Error,
        "Missing or invalid API key: send 'Authorization: Bearer KEY'.",
        WWW_Authenticate={"description": "Bearer", "schema": {"type": "string"}},
    ),
    "429": _json(Error, "Rate limit of this API key exceeded.", Retry_After=_RETRY_AFTER),
    "503": _json(
        Error, "Server at capacity or shutting down; not queued.", Retry_After=_RETRY_AFTER
    ),
}
# Operations with path parameters: a model that is not served, or a parameter holding a '/'
# (or empty) that routes to no path (404) or to another operation's path (405).
WITH_PATH_PARAMETERS = {
    "404": _json(Error, "No such model, or no such path."),
    "405": _json(Error, "A path parameter holding '/' led to another operation's path."),
}
# Operations with a request body FastAPI parses.
WITH_BODY = {"400": _json(Error, "The body could not be parsed (e.g. JSON nested too deeply).")}
VALIDATION = _json(ValidationFailure, "The request does not match the schema or a limit.")


def declare_responses(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` (FastAPI's, modified in place) with the responses it cannot see."""
    _, definitions = models_json_schema(
        [(m, "serialization") for m in (Error, ValidationFailure)], ref_template=_REF
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(definitions["$defs"])
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            if _is_fastapi_422(responses.get("422")):
                # FastAPI's HTTPValidationError requires a list, but a limit check's 422
                # (`Limits.check_texts`) carries one message.
                responses["422"] = copy.deepcopy(VALIDATION)
            added = dict(EVERYWHERE)
            if path not in OPEN_PATHS:
                added |= GUARDED
            if any(p.get("in") == "path" for p in operation.get("parameters", [])):
                added |= WITH_PATH_PARAMETERS
            if "requestBody" in operation:
                added |= WITH_BODY
            for status, response in added.items():  # copies: each operation owns its dicts
                responses.setdefault(status, copy.deepcopy(response))  # a route's own wins
            operation["responses"] = dict(sorted(responses.items()))
    for unused in ("HTTPValidationError", "ValidationError"):  # replaced by ValidationFailure
        components.pop(unused, None)
    return schema


def _is_fastapi_422(response: dict | None) -> bool:
    """Whether `response` is the 422 FastAPI declares for every operation with parameters."""
    content = (response or {}).get("content", {}).get("application/json", {})
    return content.get("schema") == {"$ref": _REF.format(model="HTTPValidationError")}


def install(app: FastAPI, *patches: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """Make `app.openapi()` (and /openapi.json) return the completed schema. `patches` (a
    protocol's own additions, e.g. the image bodies of native predict) run first."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            for patch in patches:
                schema = patch(schema)
            app.openapi_schema = declare_responses(schema)
        return app.openapi_schema

    app.openapi = openapi
