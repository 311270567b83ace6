"""The HTTP contract: request/response models and how bad input is answered.

Every bad request gets a 4xx whose ``error`` names the field (``query.k``, ``path.user_id``,
``body.user_ids``...), never a 5xx: validation (422), malformed JSON (400), a body over
``serving.max_body_bytes`` (413), a body that is not JSON (415). Request models forbid unknown fields
and take user IDs as the served user entity types them: strict int64 for an Int64 join key (no
strings, floats or booleans coerced into an ID), strings for a String join key (a JSON number is
refused: ``7`` cannot say whether it was ``"7"`` or ``"007"``). IDs come back exactly as given.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr
from starlette.exceptions import HTTPException

from serving.recall import PATHS

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_ID_CHARS = 256
UserId = Annotated[StrictInt, Field(ge=INT64_MIN, le=INT64_MAX, description="int64 user ID")]
StringUserId = Annotated[StrictStr, Field(min_length=1, max_length=MAX_ID_CHARS, description="user ID (string)")]


def user_id_type(id_type: str):
    """The request type of a user ID for the served entity's ID type."""
    return StringUserId if id_type == "string" else UserId


class Item(BaseModel):
    item_id: int | str
    score: float = Field(description="cosine(a, b); for the popular fallback: share of the day's clicks")


class RecallResponse(BaseModel):
    user_id: int | str
    generation: str = Field(description="the generation whose user tower, embeddings and index served this")
    channel: str
    path: Literal[PATHS] = Field(description="embedding | oov_profile (no embedding of this generation) | popular (no profile)")  # type: ignore[valid-type]
    degraded: str | None = Field(
        None, description="present only when the online store could not be read: why (path is then popular)"
    )
    items: list[Item]


class BatchResponse(BaseModel):
    generation: str
    channel: str
    degraded: str | None = Field(None, description="present only when the online store could not be read: why")
    results: list[RecallResponse]


class Error(BaseModel):
    error: str
    detail: list[dict] = Field(default_factory=list)


def batch_request_model(max_batch: int, max_k: int, default_k: int, id_type: str = "int") -> type[BaseModel]:
    """The POST /recall body, with the configured caps and the served ID type in its schema."""
    Id = user_id_type(id_type)

    class RecallBatchRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        user_ids: list[Id] = Field(min_length=1, max_length=max_batch, description=f"1..{max_batch} user IDs")
        k: StrictInt = Field(default_k, ge=1, le=max_k, description=f"items per user, 1..{max_k}")
        exclude_seen: StrictBool | None = Field(None, description="leave out each user's recently clicked items")

    return RecallBatchRequest


def known_query(*names: str):
    """Route dependency: a query parameter the route does not take is a 422 naming it.

    As with the POST body's unknown fields: ``?generation=...`` or ``?file=...`` must not look
    as if it did something (no endpoint takes a generation or a path; see test_security.py).
    """
    allowed = frozenset(names)
    takes = ", ".join(sorted(allowed)) or "no query parameters"

    async def check(request: Request) -> None:
        unknown = sorted(set(request.query_params.keys()) - allowed)
        if unknown:
            raise RequestValidationError(
                [{"type": "extra_forbidden", "loc": ("query", name), "msg": f"unknown query parameter (this route takes {takes})"}
                 for name in unknown]  # fmt: skip
            )

    return Depends(check)


# Size limits that come from the configuration: the 422 names the setting to change.
_LIMIT_SETTINGS = {
    ("body.user_ids", "too_long"): "serving.max_batch",
    ("body.k", "less_than_equal"): "serving.max_k",
    ("query.k", "less_than_equal"): "serving.max_k",
}


def _with_setting(error: dict) -> str:
    setting = _LIMIT_SETTINGS.get((_field(error["loc"]), error["type"]))
    return f"{error['msg']} ({setting})" if setting else error["msg"]


def _field(loc) -> str:
    return ".".join(str(p) for p in loc) or "request"


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        reason = next((e.get("ctx", {}).get("error") for e in errors if e.get("type") == "json_invalid"), None)
        return JSONResponse({"error": f"body: malformed JSON ({reason or 'cannot parse'})", "detail": []}, status_code=400)
    content_type = request.headers.get("content-type", "")
    if request.method == "POST" and "json" not in content_type.lower() and await request.body():
        # FastAPI hands a body without a JSON content type to the model as bytes; say what is wrong.
        message = f"body: expected JSON with content-type application/json, got content-type {content_type or 'none'!r}"
        return JSONResponse({"error": message, "detail": []}, status_code=415)
    detail = [{"field": _field(e["loc"]), "message": _with_setting(e), "type": e["type"]} for e in errors]
    message = "; ".join(f"{d['field']}: {d['message']}" for d in detail)
    return JSONResponse({"error": message, "detail": detail}, status_code=422)


async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
    return JSONResponse({"error": str(exc.detail), "detail": []}, status_code=exc.status_code, headers=exc.headers)


async def user_error(request: Request, exc: Exception) -> JSONResponse:
    """A request the served generation cannot answer as asked (e.g. exclude_seen without a history view)."""
    return JSONResponse({"error": str(exc), "detail": []}, status_code=400)


async def internal_error(request: Request, exc: Exception) -> JSONResponse:
    """A fault on our side (e.g. the online store is unreachable): JSON, named, logged by uvicorn."""
    return JSONResponse({"error": f"internal error: {type(exc).__name__}: {exc}", "detail": []}, status_code=500)


def error_responses() -> dict:
    """OpenAPI: the error shapes of the recall routes."""
    return {
        400: {"model": Error, "description": "malformed JSON"},
        413: {"model": Error, "description": "body larger than serving.max_body_bytes"},
        415: {"model": Error, "description": "body is not JSON"},
        422: {"model": Error, "description": "invalid field (named in `error`)"},
    }
