"""Open Inference Protocol v2 (KServe / Triton REST): health, model metadata, readiness, infer.

Input: one BYTES tensor of shape [n] holding the texts (JSON `data`); for an image model, the
encoded pictures (`image`: base64 strings in JSON, the KServe convention for BYTES, or raw
bytes with the binary tensor extension). Outputs are the model's
task's (`Task.v2_outputs`): text classification `label` (BYTES [n]) and `score` (FP32 [n]);
token classification `entities` (BYTES [n], each a JSON list of spans). `outputs` in the
request selects among them. Errors use the protocol's `{"error": "..."}` body.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from tuneforge import __version__
from tuneforge.serving.images import base64_uploads, decoder, reads_images
from tuneforge.serving.openapi import Error
from tuneforge.serving.protocols.common import run, run_images, served_or_404

router = APIRouter(tags=["v2"])


class InferInput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any] = Field(default_factory=list)


class RequestedOutput(BaseModel):
    name: str
    parameters: dict[str, Any] | None = None


class InferRequest(BaseModel):
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[InferInput] = Field(..., min_length=1)
    outputs: list[RequestedOutput] | None = None


class V2ErrorBody(BaseModel):
    """The protocol's error body."""

    error: str


class Readiness(BaseModel):
    ready: bool


# A model that is not served answers the shared `{"detail": ...}` 404 (as on every protocol);
# a version that is not the served one answers the protocol's `{"error": ...}`.
NOT_FOUND = {404: {"model": Error | V2ErrorBody, "description": "No such model or version."}}
INFER_ERRORS = {
    **NOT_FOUND,
    400: {"model": V2ErrorBody, "description": "Invalid request."},
    415: {"model": Error, "description": "An image in a format the server does not decode."},
}


class V2Error(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


async def v2_error_handler(request: Request, exc: V2Error) -> JSONResponse:
    return JSONResponse({"error": exc.message}, status_code=exc.status)


@router.get("/v2")
async def server_metadata() -> dict:
    return {"name": "tuneforge", "version": __version__, "extensions": []}


@router.get("/v2/health/live")
async def live() -> dict:
    return {"live": True}


@router.get(
    "/v2/health/ready",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "No model loaded, or draining."}},
)
async def ready(request: Request) -> JSONResponse:
    ok = bool(request.app.state.repository.models) and not request.app.state.draining
    return JSONResponse({"ready": ok}, status_code=200 if ok else 503)


@router.get("/v2/models/{name}", responses=NOT_FOUND)
@router.get("/v2/models/{name}/versions/{version}", responses=NOT_FOUND)
async def model_metadata(name: str, request: Request, version: str | None = None) -> dict:
    served = _served(request, name, version)
    return {
        "name": name,
        "versions": [served.version],
        "platform": f"tuneforge-{served.model.config.runtime}",
        "inputs": [{"name": _input_name(served), "datatype": "BYTES", "shape": [-1]}],
        "outputs": [
            {"name": n, "datatype": datatype, "shape": [-1]}
            for n, datatype in served.task.v2_outputs.items()
        ],
    }


@router.get("/v2/models/{name}/ready", responses=NOT_FOUND)
@router.get("/v2/models/{name}/versions/{version}/ready", responses=NOT_FOUND)
async def model_ready(name: str, request: Request, version: str | None = None) -> dict:
    _served(request, name, version)
    return {"name": name, "ready": True}


_TENSOR_SCHEMA = {
    "type": "object",
    "required": ["name", "shape", "datatype", "data"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}},
        "datatype": {"type": "string"},
        "parameters": {"type": "object"},
        "data": {"type": "array", "items": {}},
    },
}
_INFER_SCHEMA = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "parameters": {"type": "object"},
        "inputs": {"type": "array", "minItems": 1, "items": _TENSOR_SCHEMA},
        "outputs": {
            "type": "array",
            "items": {"type": "object", "required": ["name"], "properties": {
                "name": {"type": "string"}, "parameters": {"type": "object"}}},
        },
    },
}  # fmt: skip
_BODY = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": _INFER_SCHEMA}}}
}
_INFER = {"openapi_extra": _BODY, "responses": INFER_ERRORS}


@router.post("/v2/models/{name}/infer", **_INFER)
@router.post("/v2/models/{name}/versions/{version}/infer", **_INFER)
async def infer(name: str, request: Request, version: str | None = None):
    """JSON body, or the binary tensor extension (`Inference-Header-Content-Length`)."""
    served = _served(request, name, version)
    task, images = served.task, reads_images(served)
    raw, header = await request.body(), request.headers.get("inference-header-content-length")
    if images:  # up to tens of megabytes of base64: parsed off the event loop
        loop = asyncio.get_running_loop()
        body = await loop.run_in_executor(decoder(request.app), _parse, raw, header, True)
    else:
        body = _parse(raw, header)
    texts = _texts(body, images)
    names = list(task.v2_outputs)  # the model's task says what it outputs
    wanted = [o.name for o in body.outputs] if body.outputs else names
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        raise V2Error(400, f"Unknown output(s) {unknown}; this model has {names}.")
    if images:
        uploads = base64_uploads(texts, request.app.state.limits)
        served, preds = await run_images(request, name, uploads)
    else:
        served, preds = await run(request, name, "predict", texts)
    columns = task.v2_columns(preds)
    outputs = [
        {"name": n, "datatype": task.v2_outputs[n], "shape": [len(preds)], "data": columns[n]}
        for n in wanted
    ]
    response = {"model_name": name, "model_version": served.version, "outputs": outputs}
    if body.id is not None:
        response["id"] = body.id
    return response


def _parse(raw: bytes, header_length: str | None, keep_bytes: bool = False) -> InferRequest:
    import json

    from pydantic import ValidationError

    try:
        size = int(header_length) if header_length else len(raw)
        if not 0 < size <= len(raw):
            raise ValueError("Inference-Header-Content-Length outside the body")
        body = InferRequest.model_validate(json.loads(raw[:size]))
    except (ValueError, UnicodeDecodeError, ValidationError, RecursionError) as exc:
        raise V2Error(400, f"Invalid inference request: {str(exc)[:300]}") from None
    binary = memoryview(raw)[size:]
    for tensor in body.inputs:
        nbytes = (tensor.parameters or {}).get("binary_data_size")
        if nbytes is not None:
            if not isinstance(nbytes, int) or not 0 <= nbytes <= len(binary):
                raise V2Error(400, "binary_data_size does not match the body.")
            tensor.data = _bytes_elements(binary[:nbytes], keep_bytes)
            binary = binary[nbytes:]
    return body


def _bytes_elements(buf: memoryview, keep_bytes: bool = False) -> list[str] | list[bytes]:
    """The binary BYTES layout: each element is a 4-byte little-endian length, then the bytes."""
    out, i = [], 0
    while i < len(buf):
        if i + 4 > len(buf):
            raise V2Error(400, "Truncated BYTES tensor.")
        n = int.from_bytes(buf[i : i + 4], "little")
        if i + 4 + n > len(buf):
            raise V2Error(400, "Truncated BYTES tensor.")
        element = bytes(buf[i + 4 : i + 4 + n])
        out.append(element if keep_bytes else element.decode("utf-8", "replace"))
        i += 4 + n
    return out


def _served(request: Request, name: str, version: str | None):
    if request.app.state.repository.get(name) is None:
        served_or_404(request, name)  # raises the 404 with the list of models
    served = request.app.state.repository.get(name)
    if version not in (None, "", served.version):
        raise V2Error(404, f"Model '{name}' has version {served.version}, not {version}.")
    return served


def _input_name(served) -> str:
    return "image" if reads_images(served) else "text"


def _texts(body: InferRequest, images: bool = False) -> list:
    """The elements of the one BYTES input: strings (texts, or base64 images), or for
    images the raw bytes of the binary extension."""
    what = "images (each base64 in JSON)" if images else "texts"
    if len(body.inputs) != 1:
        raise V2Error(400, f"Send exactly one input: a BYTES tensor of {what}.")
    tensor = body.inputs[0]
    if tensor.datatype != "BYTES":
        raise V2Error(400, f"Input '{tensor.name}' must be BYTES, got {tensor.datatype}.")
    flat = _flatten(tensor.data)
    kinds = (str, bytes) if images else str
    if any(not isinstance(x, kinds) for x in flat):
        raise V2Error(400, "BYTES data must be strings (JSON encoding of the tensor).")
    n = 1
    for dim in tensor.shape:
        n *= dim
    if n != len(flat) or any(d < 0 for d in tensor.shape):
        raise V2Error(400, f"shape {tensor.shape} does not match {len(flat)} data elements.")
    return flat


def _flatten(data: list, depth: int = 0) -> list:
    if depth > 4:
        raise V2Error(400, "Tensor data nested too deeply; send a flat list of strings.")
    out: list = []
    for x in data:
        out.extend(_flatten(x, depth + 1) if isinstance(x, list) else [x])
    return out
