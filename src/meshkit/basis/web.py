"""Helpers for handlers: JSON responses, validated bodies and queries, the caller.

Handlers raise :class:`~meshkit.basis.errors.MeshkitError` subclasses; the
runtime's error middleware turns them into the JSON error shape::

    async def create_item(request):
        body = await parse_body(request, NewItem)    # 400 bad JSON, 422 invalid
        who = identity(request)                      # Identity | None
        item = await use_cases.create(body, who)
        return json_response(item.model_dump(), status=201)
"""

from __future__ import annotations

import types
import typing
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from meshkit.basis import context
from meshkit.basis.context import Identity
from meshkit.basis.errors import BadRequest, Unauthorized, Unprocessable

M = TypeVar("M", bound=BaseModel)

_OPTIONS = orjson.OPT_NON_STR_KEYS


def _default(obj: Any) -> Any:
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    if isinstance(obj, frozenset | set):
        return sorted(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} as JSON")


def dumps(obj: Any) -> bytes:
    """JSON bytes via orjson; pydantic models and sets are understood."""
    return orjson.dumps(obj, default=_default, option=_OPTIONS)


class JSONResponse(Response):
    """A response whose body is ``orjson``-encoded."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content)


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """``obj`` as a JSON response (dataclasses, datetimes, UUIDs and pydantic models work)."""
    return JSONResponse(obj, status_code=status, headers=headers)


async def parse_body(request: Request, model: type[M]) -> M:
    """The request body validated as ``model``.

    400 ``invalid_json`` when the body is not JSON; 422 ``validation_failed``
    with one entry per bad field (``loc``, ``message``, ``type``) otherwise.
    """
    body = await request.body()
    if not body:
        raise BadRequest("the request body is empty; send a JSON object", reason="invalid_json")
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        if any(e["type"] == "json_invalid" for e in errors):
            raise BadRequest(
                f"the request body is not valid JSON: {errors[0]['msg']}",
                reason="invalid_json",
            ) from exc
        raise Unprocessable(
            f"the request body does not match {model.__name__}: fix the fields listed in details",
            details=_field_errors(errors),
        ) from exc


def parse_query(request: Request, model: type[M]) -> M:
    """The query string validated as ``model`` (422 with field details when invalid).

    A field annotated as a list takes every value of a repeated parameter
    (``?tag=a&tag=b``); any other field takes the last one.
    """
    params = request.query_params
    data: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        key = field.alias or name
        if key not in params:
            continue
        data[key] = params.getlist(key) if _is_list(field.annotation) else params[key]
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        raise Unprocessable(
            "the query parameters are invalid: fix the ones listed in details", details=_field_errors(errors)
        ) from exc


def identity(request: Request) -> Identity | None:
    """Who is calling (as the gateway injected it), or ``None`` for an anonymous call."""
    ctx = request.scope.get("meshkit.context") or context.current()
    return ctx.identity if ctx is not None else None


def require_identity(request: Request) -> Identity:
    """Like :func:`identity`, but 401 for an anonymous call."""
    who = identity(request)
    if who is None:
        raise Unauthorized("this endpoint needs an authenticated caller; call it through the gateway with a token")
    return who


def _field_errors(errors: list[Any]) -> list[dict[str, Any]]:
    return [
        {"loc": ".".join(str(p) for p in e["loc"]) or "(body)", "message": e["msg"], "type": e["type"]}
        for e in errors
    ]


def _is_list(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (list, set, frozenset, tuple):
        return True
    if origin in (typing.Union, types.UnionType):  # list[str] | None
        return any(_is_list(a) for a in typing.get_args(annotation))
    return False


__all__ = ["JSONResponse", "dumps", "identity", "json_response", "parse_body", "parse_query", "require_identity"]
