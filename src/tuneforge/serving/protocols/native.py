"""Native protocol: `POST /v1/models/{name}/predict` → labels, scores, optional explanation."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from tuneforge.serving.protocols.common import run

router = APIRouter(tags=["native"])


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    texts: list[str] = Field(..., min_length=1, description="Texts to classify.")
    explain: bool = Field(False, description="Add token attributions (slower; few texts).")


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


@router.post("/v1/models/{name}/predict", response_model=PredictResponse)
async def predict(name: str, body: PredictRequest, request: Request) -> PredictResponse:
    """Labels with scores (top 5) for each text."""
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
