"""Native protocol: `POST /v1/models/{name}/predict` → labels, scores, optional explanation.

Text models take `{"texts": [...]}`. Image models take `multipart/form-data` (one part named
`file` per image) or `{"images": ["<base64>" or a data-URL, ...]}`: `ImageRouting` sends their
requests (and any multipart one) to `predict_images` before FastAPI parses a body, so the text
route and its validation stay exactly as they are. `document_images` declares both in the schema.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.json_schema import models_json_schema

from tuneforge.serving.images import (
    MEDIA_HELP,
    base64_uploads,
    decoder,
    image_model_at,
    is_json,
    media_type,
    read_multipart,
    reads_images,
)
from tuneforge.serving.openapi import Error
from tuneforge.serving.protocols.common import TEXTS_HELP, run, run_images, served_or_404

router = APIRouter(tags=["native"])
PREDICT = "/v1/models/{name}/predict"
IMAGES = "/_images/v1/models/{name}/predict"  # where ImageRouting sends image requests


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    texts: list[str] = Field(..., min_length=1, description="Texts to classify.")
    explain: bool = Field(False, description="Add token attributions (slower; few texts).")

    @model_validator(mode="before")
    @classmethod
    def _not_images(cls, data: Any) -> Any:
        if isinstance(data, dict) and "images" in data and "texts" not in data:
            raise ValueError('this model classifies texts, not images: send {"texts": [...]}')
        return data


class ImagesRequest(BaseModel):
    """Images for an image classification model, each base64 (or a base64 data-URL)."""

    model_config = ConfigDict(extra="forbid")
    images: list[str] = Field(
        ...,
        min_length=1,
        description="Encoded pictures (JPEG, PNG, WebP, BMP), each base64 or a data-URL "
        "`data:image/png;base64,...`.",
    )


class PredictionOut(BaseModel):
    """A text classification model's answer for one text."""

    label: str | list[str]
    score: float
    scores: dict[str, float]
    explanation: dict | None = None


class EntityOut(BaseModel):
    start: int = Field(..., description="Character offset in the text where the span starts.")
    end: int = Field(..., description="Offset just past its end: text[start:end] is the span.")
    label: str
    text: str
    score: float


class TaggedOut(BaseModel):
    """A token classification model's answer for one text: its spans."""

    text: str
    entities: list[EntityOut]


class PredictResponse(BaseModel):
    model: str
    version: str
    predictions: list[PredictionOut | TaggedOut]


class ImagePredictionOut(BaseModel):
    """An image classification model's answer for one image."""

    label: str | list[str]
    score: float
    scores: dict[str, float]
    file: str | None = Field(None, description="The part's filename (multipart uploads).")


class ImagePredictResponse(BaseModel):
    model: str
    version: str
    predictions: list[ImagePredictionOut]


class ImageRouting:
    """Innermost ASGI wrapper: an image model's predict requests (and multipart ones to any
    model, which only image models read) go to `predict_images`. The outer middlewares (log,
    auth, limits) saw the public path; only the router sees the internal one."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST":
            parts = scope["path"].split("/")
            if len(parts) == 5 and parts[:3] == ["", "v1", "models"] and parts[4] == "predict":
                multipart = any(
                    k == b"content-type" and v.lower().startswith(b"multipart/")
                    for k, v in scope["headers"]
                )
                if multipart or image_model_at(scope):
                    path = IMAGES.replace("{name}", parts[3])
                    scope = {**scope, "path": path, "raw_path": path.encode()}
        return await self.app(scope, receive, send)


@router.post(IMAGES, response_model=ImagePredictResponse, include_in_schema=False)
async def predict_images(name: str, request: Request) -> ImagePredictResponse:
    """Labels with scores (top 5) for each image."""
    limits = request.app.state.limits
    if not reads_images(served_or_404(request, name)):  # before reading the body
        raise HTTPException(415, f"Model '{name}' classifies texts: {TEXTS_HELP}.")
    media = media_type(request)
    if media == "multipart/form-data":
        uploads = await read_multipart(request, limits)
    elif is_json(media):
        body = await _images_body(request, name)
        uploads = base64_uploads(body.images, limits)
    else:
        raise HTTPException(
            415,
            f"Unsupported content type {media[:100]!r}: model '{name}' classifies images; "
            f"{MEDIA_HELP}.",
        )
    served, preds = await run_images(request, name, uploads)
    out = [
        ImagePredictionOut(**p.to_dict(), file=u.filename)
        for p, u in zip(preds, uploads, strict=True)
    ]
    return ImagePredictResponse(model=name, version=served.version, predictions=out)


async def _images_body(request: Request, name: str) -> ImagesRequest:
    """The JSON body, parsed and validated in a decoding thread (tens of megabytes)."""
    raw = await request.body()
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(decoder(request.app), _parse_images, raw, name)


def _parse_images(raw: bytes, name: str) -> ImagesRequest:
    try:
        payload = json.loads(raw)
    except ValueError as exc:  # as FastAPI reports a body that is not JSON
        position = getattr(exc, "pos", 0)
        raise RequestValidationError(
            [{"type": "json_invalid", "loc": ("body", position), "msg": "JSON decode error"}]
        ) from None
    if isinstance(payload, dict) and "texts" in payload and "images" not in payload:
        raise HTTPException(
            422, f"Model '{name}' classifies images, not texts: it expects images; {MEDIA_HELP}."
        )
    try:
        return ImagesRequest.model_validate(payload)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from None


@router.post(PREDICT, response_model=PredictResponse)
async def predict(name: str, body: PredictRequest, request: Request) -> PredictResponse:
    """Labels with scores (top 5) for each text, or for each image of an image model
    (multipart parts named `file`, or `{"images": [base64, ...]}`)."""
    limit = request.app.state.limits.max_explain_texts
    if body.explain and len(body.texts) > limit:
        raise HTTPException(413, f"explain=true accepts at most {limit} texts per request.")
    known = request.app.state.repository.get(name)
    if body.explain and known is not None and known.task.name != "text-classification":
        raise HTTPException(
            422, f"explain=true is for text classification; {name} is {known.task.name}."
        )
    served, preds = await run(request, name, "predict", body.texts)
    shape = PredictionOut if served.task.name == "text-classification" else TaggedOut
    out = [shape(**p.to_dict()) for p in preds]
    if body.explain:
        _, explanations = await run(request, name, "explain", body.texts)
        for row, exp in zip(out, explanations, strict=True):
            row.explanation = exp
    return PredictResponse(model=name, version=served.version, predictions=out)


_REF = "#/components/schemas/{model}"
_MULTIPART = {
    "type": "object",
    "required": ["file"],
    "properties": {
        "file": {
            "type": "array",
            "minItems": 1,
            "items": {"type": "string", "format": "binary"},
            "description": "One part named 'file' per picture (JPEG, PNG, WebP, BMP).",
        }
    },
}


def document_images(schema: dict) -> dict:
    """Declare on the predict operation what `predict_images` reads and answers."""
    operation = schema["paths"].get(PREDICT, {}).get("post")
    if operation is None:
        return schema
    models = (ImagesRequest, ImagePredictResponse, ImagePredictionOut)
    _, definitions = models_json_schema([(m, "validation") for m in models], ref_template=_REF)
    schema.setdefault("components", {}).setdefault("schemas", {}).update(definitions["$defs"])
    content = operation["requestBody"]["content"]
    text_body = content["application/json"]["schema"]
    images_body = {"$ref": _REF.format(model="ImagesRequest")}
    content["application/json"]["schema"] = {"anyOf": [text_body, images_body]}
    content["multipart/form-data"] = {"schema": _MULTIPART}
    ok = operation["responses"]["200"]["content"]["application/json"]
    ok["schema"] = {"anyOf": [ok["schema"], {"$ref": _REF.format(model="ImagePredictResponse")}]}
    operation["responses"]["415"] = {
        "description": "A content type the model does not read, or an image format the "
        "server does not decode.",
        "content": {"application/json": {"schema": {"$ref": _REF.format(model=Error.__name__)}}},
    }
    return schema
