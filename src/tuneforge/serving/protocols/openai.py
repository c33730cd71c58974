"""OpenAI-compatible embeddings: `POST /v1/embeddings` (float or base64) and `GET /v1/models`.

base64 is the little-endian float32 buffer, which the official client decodes with numpy (and
requests by default).
"""

from __future__ import annotations

import base64
from typing import Literal

import numpy as np
from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from tuneforge.serving.openapi import Error
from tuneforge.serving.protocols.common import run

router = APIRouter(tags=["openai"])


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    input: str | list[str] = Field(..., description="A text or a list of texts.")
    model: str
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None


@router.post("/v1/embeddings", responses={404: {"model": Error, "description": "No such model."}})
async def embeddings(body: EmbeddingRequest, request: Request) -> dict:
    """Sentence embeddings of the model's encoder (the pooled vector its head reads)."""
    texts = [body.input] if isinstance(body.input, str) else body.input
    served, vectors = await run(request, body.model, "embed", texts)
    if body.dimensions is not None and body.dimensions != vectors.shape[1]:
        raise HTTPException(
            422, f"This model's embeddings have {vectors.shape[1]} dimensions; omit 'dimensions'."
        )
    tokens = sum(len(ids) for ids in served.model.tokenizer(texts, truncation=True)["input_ids"])
    data = [
        {"object": "embedding", "index": i, "embedding": _encode(v, body.encoding_format)}
        for i, v in enumerate(vectors)
    ]
    return {
        "object": "list",
        "data": data,
        "model": body.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _encode(vector: np.ndarray, fmt: str):
    if fmt == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return [float(x) for x in vector]


@router.get("/v1/models")
async def list_models(request: Request) -> dict:
    models = request.app.state.repository.models
    return {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": m.loaded_at, "owned_by": "tuneforge"}
            for name, m in sorted(models.items())
        ],
    }
